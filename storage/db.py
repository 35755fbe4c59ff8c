"""SQLite access for the single-node appliance.

``open_database("sqlite:////var/lib/callvault/callvault.db")`` returns a
:class:`Database`. Four slashes give an absolute path, three a path relative to the
current directory. In-memory databases are not supported: the ledger must survive a
restart.

Threading model
---------------
The product is asyncio; database work runs in threads (``asyncio.to_thread``). A
``Database`` owns:

* one **writer** connection, used only inside :meth:`Database.write`, which holds a
  process-wide lock and wraps the block in ``BEGIN IMMEDIATE ... COMMIT``. Writes are
  therefore serialised in this process, and ``BEGIN IMMEDIATE`` (with
  ``busy_timeout``) serialises them against other processes on the same file (the
  CLI, a second service instance) before anything is read, so a read-then-write
  sequence such as "read the ledger head, append after it" cannot interleave.
* a pool of **reader** connections, lent out by :meth:`Database.read`, one thread at
  a time. WAL mode lets readers run while the writer commits; each statement sees a
  committed snapshot. Readers are ``query_only``.

* a **group-commit writer** (:meth:`Database.write_async`, :meth:`Database.submit`;
  :class:`storage.groupcommit.GroupCommitWriter`): one thread that takes queued
  write operations from many concurrent callers and runs them back to back inside ONE ``BEGIN IMMEDIATE ... COMMIT`` (through
  :meth:`Database.write`, so under the same lock), i.e. one fsync for the whole
  batch. Each operation runs in its own ``SAVEPOINT``: one that raises is rolled
  back alone and its caller gets the exception, the others still commit. Every
  caller is told its result only after the COMMIT has returned, so "returned"
  still means "on disk". Operations run in submission order, so a ledger append
  submitted before another gets the lower ``seq``.

Connections are opened with ``check_same_thread=False`` because they move between
worker threads; the lock (writer) and the pool (readers) guarantee that only one
thread uses a connection at a time. :meth:`Database.close` closes every connection;
a reader that is lent out while ``close()`` runs is closed when it is returned.

Durability
----------
``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode ``NORMAL`` cannot corrupt
the database, but a transaction that was reported committed can be lost on power
failure or an OS crash, because the WAL is only synced at checkpoints. The ledger
records consent: once ``append()`` returns, the PBX acts on it (starts MixMonitor,
sets ``CALLVAULT_CONSENT``), so the entry must survive a power cut. ``FULL`` syncs the
WAL on every commit; the cost is one fsync per write transaction, which the
group-commit writer shares between every operation of a batch (a batch forms while
the previous one is being committed, so under load hundreds of appends share one
fsync and with a single caller there is no added wait).

Migrations
----------
Each module that owns tables keeps an ordered list of SQL scripts and calls
``db.migrate("ledger", MIGRATIONS)`` explicitly (nothing registers at import time).
Table ``schema_version(module, version, updated_at)`` stores how many scripts of
that module have been applied; each script runs in its own transaction together
with the version bump. Scripts are append-only: never edit one that has shipped,
add a new one.
"""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from . import private
from .errors import PermanentError, sqlite_error
from .groupcommit import GroupCommitWriter

__all__ = ["Database", "open_database", "parse_sqlite_url", "split_sql"]

T = TypeVar("T")

_URL_PREFIX = "sqlite:///"
_IDLE_READERS = 8

_SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    module     TEXT PRIMARY KEY,
    version    INTEGER NOT NULL CHECK (version >= 0),
    updated_at TEXT NOT NULL
)
"""


def parse_sqlite_url(url: str) -> Path:
    """``sqlite:////abs/path.db`` -> ``/abs/path.db``; ``sqlite:///rel.db`` -> ``rel.db``."""
    if not isinstance(url, str) or not url.startswith(_URL_PREFIX):
        raise ValueError(
            f"database URL {url!r}: expected sqlite:////absolute/path.db "
            "or sqlite:///relative/path.db"
        )
    rest = url[len(_URL_PREFIX):]
    if not rest or rest.endswith("/") or "?" in rest or rest == ":memory:":
        raise ValueError(f"database URL {url!r}: needs a file path (no query string, no :memory:)")
    return Path(rest)


def open_database(url: str, *, busy_timeout: float = 5.0) -> Database:
    """Open the SQLite database named by ``url`` (see :func:`parse_sqlite_url`)."""
    return Database(parse_sqlite_url(url), busy_timeout=busy_timeout)


def split_sql(script: str) -> list[str]:
    """Split a script into complete statements (``CREATE TRIGGER ... END;`` stays whole).

    ``Connection.executescript`` would commit any open transaction first, so
    migrations run their statements one by one inside ``BEGIN IMMEDIATE`` instead.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.rstrip(";").strip():
        raise ValueError(f"incomplete SQL statement at end of script: {buffer.strip()[:80]!r}")
    return statements


def _check_location(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise PermanentError(f"database {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise PermanentError(f"database {path}: {parent} is not a directory")
    # WAL needs to create path-wal and path-shm next to the database file.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermanentError(f"database {path}: directory {parent} is not writable")
    if path.exists() and (not path.is_file() or not os.access(path, os.R_OK | os.W_OK)):
        raise PermanentError(f"database {path}: not a readable and writable file")


class Database:
    """One SQLite file: a locked writer connection plus pooled readers."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._write_lock = threading.Lock()
        self._writer_owner: int | None = None
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._lent: set[sqlite3.Connection] = set()
        self._closed = False
        self._group_lock = threading.Lock()
        self._group: GroupCommitWriter | None = None
        _check_location(self.path)
        # Created 0600 before SQLite opens it: SQLite gives -wal and -shm the same mode.
        try:
            private.touch(self.path)
        except OSError as exc:
            raise PermanentError(f"database {self.path}: cannot create: {exc}") from exc
        self._writer = self._connect(reader=False)

    # -- connections -------------------------------------------------------------

    def _connect(self, *, reader: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000
            )
        except sqlite3.Error as exc:
            raise PermanentError(f"database {self.path}: cannot open: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            if not reader:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise PermanentError(
                        f"database {self.path}: cannot enable WAL (journal_mode={mode})"
                    )
            else:
                conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise PermanentError(f"database {self.path}: cannot set up: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_open(self) -> None:
        if self._closed:
            raise PermanentError(f"database {self.path} is closed")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """Serialised write transaction: ``BEGIN IMMEDIATE``, commit on success.

        Any exception rolls back. SQLite errors leave as :class:`RetryableError`
        (locked / busy) or :class:`PermanentError`; others propagate unchanged.
        Not re-entrant: nesting on one thread raises ``RuntimeError``.
        """
        me = threading.get_ident()
        if self._writer_owner == me:
            raise RuntimeError("Database.write() is not re-entrant")
        with self._write_lock:
            self._ensure_open()
            self._writer_owner = me
            conn = self._writer
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise sqlite_error(exc, self.path) from exc
                try:
                    yield conn
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback(conn)
                    raise sqlite_error(exc, self.path) from exc
                except BaseException:
                    self._rollback(conn)
                    raise
            finally:
                self._writer_owner = None

    def _group_writer(self) -> GroupCommitWriter:
        group = self._group
        if group is None:
            with self._group_lock:
                self._ensure_open()
                if self._group is None:
                    self._group = GroupCommitWriter(self)
                group = self._group
        return group

    def submit(self, op: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Queue ``op(conn)`` for the group-commit writer; the future resolves once committed.

        ``op`` runs in the writer thread inside a write transaction shared with other
        operations (its own ``SAVEPOINT``); it must not call :meth:`write` and must not
        keep ``conn``. The future holds its return value after the COMMIT (fsync), or
        its exception (SQLite errors translated as in :meth:`write`), or the COMMIT's
        error. Raises :class:`PermanentError` once the database is closing.
        """
        return self._group_writer().submit(op)

    async def write_async(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`submit` for asyncio: await ``op``'s result, returned once durable.

        Cancelling the awaiting task does not withdraw ``op``: it may still commit.
        """
        return await self._group_writer().submit_async(op)

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after SQLITE_FULL); nothing to undo

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Lend a read-only connection to the calling thread for the block."""
        with self._pool_lock:
            self._ensure_open()
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect(reader=True)
        with self._pool_lock:
            self._lent.add(conn)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path) from exc
        finally:
            if conn.in_transaction:
                self._rollback(conn)
            with self._pool_lock:
                self._lent.discard(conn)
                keep = not self._closed and len(self._idle) < _IDLE_READERS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    # -- migrations --------------------------------------------------------------

    def schema_version(self, module: str) -> int:
        """Number of migrations applied for ``module`` (0 if none)."""
        with self.read() as conn:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not exists:
                return 0
            row = conn.execute(
                "SELECT version FROM schema_version WHERE module = ?", (module,)
            ).fetchone()
        return row[0] if row else 0

    def migrate(self, module: str, migrations: Sequence[str]) -> int:
        """Apply ``migrations[current:]`` for ``module``, each in its own transaction.

        Returns the resulting version (``len(migrations)``). Raises
        :class:`PermanentError` if the file was migrated by newer code.
        """
        if not module:
            raise ValueError("migration module name must not be empty")
        statements = [split_sql(script) for script in migrations]
        with self.write() as conn:
            conn.execute(_SCHEMA_VERSION_DDL)
        version = 0
        for target in range(1, len(statements) + 1):
            with self.write() as conn:
                # Re-read inside the transaction: another process may have migrated.
                row = conn.execute(
                    "SELECT version FROM schema_version WHERE module = ?", (module,)
                ).fetchone()
                version = row[0] if row else 0
                if version >= target:
                    continue
                for statement in statements[target - 1]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (module, version, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(module) DO UPDATE SET version = excluded.version, "
                    "updated_at = excluded.updated_at",
                    (module, target, datetime.now(UTC).isoformat(timespec="seconds")),
                )
                version = target
        version = self.schema_version(module)
        if version > len(statements):
            raise PermanentError(
                f"database {self.path}: schema of {module!r} is at version {version}, "
                f"this code knows {len(statements)}; refusing to run against a newer schema"
            )
        return version

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Idempotent. Waits for a running write to finish."""
        if self._writer_owner == threading.get_ident():
            raise RuntimeError("Database.close() called inside write()")
        with self._group_lock:
            group = self._group
        if group is not None:
            group.close()  # runs every write queued so far, then stops its thread
        with self._write_lock:
            with self._pool_lock:
                if self._closed:
                    return
                self._closed = True
                idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
            self._writer.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Database {str(self.path)!r} {state}>"
