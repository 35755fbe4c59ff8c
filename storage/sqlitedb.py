"""The SQLite backend of :class:`storage.db.Database`: the embedded default, one node.

``open_database("sqlite:////var/lib/callvault/callvault.db")`` returns a
:class:`SqliteDatabase`. Four slashes give an absolute path, three a path relative to
the current directory. In-memory databases are not supported: the ledger must survive
a restart.

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
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import private
from .db import Database
from .errors import PermanentError, sqlite_error

__all__ = ["SqliteDatabase", "split_sql"]

_IDLE_READERS = 8


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


class SqliteDatabase(Database):
    """One SQLite file: a locked writer connection plus pooled readers."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(self.path)
        self._busy_ms = int(busy_timeout * 1000)
        self._write_lock = threading.Lock()
        self._writer_owner: int | None = None
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._lent: set[sqlite3.Connection] = set()
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

    # -- the rest of the protocol ------------------------------------------------------

    def lock(self, conn: sqlite3.Connection, name: str) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` holds the file's write lock already."""

    def translate(self, exc: BaseException) -> BaseException:
        return sqlite_error(exc, self.path) if isinstance(exc, sqlite3.Error) else exc

    def _run_script(self, conn: sqlite3.Connection, script: str) -> None:
        for statement in split_sql(script):
            conn.execute(statement)

    def _table_exists(self, conn: sqlite3.Connection, table: str) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (table,)).fetchone() is not None

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Idempotent. Waits for a running write to finish."""
        if self._writer_owner == threading.get_ident():
            raise RuntimeError("Database.close() called inside write()")
        super().close()

    def _close_connections(self) -> None:
        with self._write_lock:
            with self._pool_lock:
                if self._closed:
                    return
                self._closed = True
                idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
            self._writer.close()
