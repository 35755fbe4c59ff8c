"""The database seam: what the catalog, the ledger, the users and the migrations need
of a database. :func:`storage.dburl.open_database` picks the backend from the URL.

Two backends implement :class:`Database`:

* :class:`storage.sqlitedb.SqliteDatabase`: one file, the embedded default for a
  single node (``sqlite:////var/lib/callvault/callvault.db``);
* :class:`storage.pgdb.PgDatabase`: PostgreSQL, shared by several nodes
  (``postgresql://callvault@db:5432/callvault``).

The contract (both backends)
----------------------------
* :meth:`Database.write` lends a connection inside ``BEGIN ... COMMIT``; any exception
  rolls back. Driver errors leave as :class:`~storage.errors.RetryableError` (locked,
  busy, connection lost, serialisation failure) or :class:`~storage.errors.PermanentError`.
* :meth:`Database.read` lends a read-only connection; each statement sees committed data.
* :meth:`Database.lock` serialises a read-then-write sequence (the ledger head, the
  migrations) against every other writer of the database, in any process on any node,
  until the transaction ends. SQLite: a no-op, ``BEGIN IMMEDIATE`` already holds the
  file's write lock. PostgreSQL: ``pg_advisory_xact_lock``.
* :meth:`Database.submit` / :meth:`Database.write_async`: the group-commit writer
  (:mod:`storage.groupcommit`): many callers' operations in one transaction, one
  fsync, each in its own ``SAVEPOINT``, each caller told only after the COMMIT.
* SQL is written once with ``?`` placeholders; the PostgreSQL connection turns them
  into ``%s``. Statements use what both dialects accept (``INSERT ... ON CONFLICT``,
  ``RETURNING``, ``CASE`` instead of two-argument ``MAX``); where they differ (DDL,
  ``FOR UPDATE SKIP LOCKED``) the backend says so: :attr:`Database.dialect`,
  :attr:`Database.skip_locked`.

Migrations
----------
Each module that owns tables keeps, per dialect, an ordered list of SQL scripts
(``{"sqlite": [...], "postgresql": [...]}``, the same number of versions in each) and
calls ``db.migrate("ledger", MIGRATIONS)`` explicitly (nothing registers at import
time). Table ``schema_version(module, version, updated_at)`` stores how many scripts
of that module have been applied; each script runs in its own transaction together
with the version bump, under :meth:`Database.lock` so two nodes starting together
migrate once. Scripts are append-only: never edit one that has shipped, add a new one.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

from .errors import PermanentError

if TYPE_CHECKING:
    import concurrent.futures

    from .groupcommit import GroupCommitWriter

__all__ = ["Database"]

T = TypeVar("T")
Migrations = Mapping[str, Sequence[str]]

_SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    module     TEXT PRIMARY KEY,
    version    INTEGER NOT NULL CHECK (version >= 0),
    updated_at TEXT NOT NULL
)
"""


class Database(abc.ABC):
    """The backend protocol, with what both backends share (group commit, migrations)."""

    dialect: str  # "sqlite" or "postgresql": picks the migration scripts
    name: str  # where the database is, for messages (a PostgreSQL password is masked)
    skip_locked: str = ""  # appended to a job claim's SELECT: " FOR UPDATE SKIP LOCKED" on PostgreSQL

    def __init__(self) -> None:
        self._group_lock = threading.Lock()
        self._group: GroupCommitWriter | None = None
        self._closed = False

    # -- what each backend provides --------------------------------------------------------

    @abc.abstractmethod
    def write(self) -> AbstractContextManager[Any]:
        """A write transaction; commits when the block ends, rolls back on an exception."""

    @abc.abstractmethod
    def read(self) -> AbstractContextManager[Any]:
        """A read-only connection for the block."""

    @abc.abstractmethod
    def lock(self, conn: Any, name: str) -> None:
        """Inside :meth:`write`: hold lock ``name`` against every writer until the transaction ends."""

    @abc.abstractmethod
    def translate(self, exc: BaseException) -> BaseException:
        """The storage error for a driver error (``exc`` itself for anything else)."""

    @abc.abstractmethod
    def _run_script(self, conn: Any, script: str) -> None:
        """Run one migration script (several statements) inside a write transaction."""

    @abc.abstractmethod
    def _table_exists(self, conn: Any, table: str) -> bool: ...

    @abc.abstractmethod
    def _close_connections(self) -> None:
        """Close every connection (the group-commit writer has stopped)."""

    # -- group commit ----------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise PermanentError(f"database {self.name} is closed")

    def _group_writer(self) -> GroupCommitWriter:
        group = self._group
        if group is None:
            # Imported on first use: a process that only writes in its own thread (the
            # classic AGI entry point, the CLI) never loads asyncio and its futures.
            from .groupcommit import GroupCommitWriter

            with self._group_lock:
                self._ensure_open()
                if self._group is None:
                    self._group = GroupCommitWriter(self)
                group = self._group
        return group

    def submit(self, op: Callable[[Any], T]) -> concurrent.futures.Future[T]:
        """Queue ``op(conn)`` for the group-commit writer; the future resolves once committed.

        ``op`` runs in the writer thread inside a write transaction shared with other
        operations; it must not call :meth:`write` and must not keep ``conn``. It may run
        twice (again, in a new transaction, when another operation of its batch raised),
        so it must do nothing but SQL on ``conn``. The future holds its return value after the COMMIT (fsync), or
        its exception (driver errors translated as in :meth:`write`), or the COMMIT's
        error. Raises :class:`PermanentError` once the database is closing.
        """
        return self._group_writer().submit(op)

    async def write_async(self, op: Callable[[Any], T]) -> T:
        """:meth:`submit` for asyncio: await ``op``'s result, returned once durable.

        Cancelling the awaiting task does not withdraw ``op``: it may still commit.
        """
        return await self._group_writer().submit_async(op)

    # -- migrations ------------------------------------------------------------------------

    def schema_version(self, module: str) -> int:
        """Number of migrations applied for ``module`` (0 if none)."""
        with self.read() as conn:
            if not self._table_exists(conn, "schema_version"):
                return 0
            row = conn.execute("SELECT version FROM schema_version WHERE module = ?", (module,)).fetchone()
        return row[0] if row else 0

    def migrate(self, module: str, migrations: Migrations) -> int:
        """Apply this dialect's ``migrations[current:]`` for ``module``, each in its own
        transaction. Returns the resulting version. Raises :class:`PermanentError` if
        the database was migrated by newer code."""
        if not module:
            raise ValueError("migration module name must not be empty")
        if len({len(scripts) for scripts in migrations.values()}) != 1:
            raise ValueError(f"migrations of {module!r}: every dialect needs the same versions")
        scripts = migrations[self.dialect]
        # Up to date (every start but the first after an upgrade): one read, no write
        # transaction per version. Versions only grow, so nothing can be left to apply.
        if self.schema_version(module) == len(scripts):
            return len(scripts)
        with self.write() as conn:
            self.lock(conn, "migrate")
            conn.execute(_SCHEMA_VERSION_DDL)
        for target in range(1, len(scripts) + 1):
            with self.write() as conn:
                self.lock(conn, "migrate")
                # Re-read under the lock: another process may have migrated.
                row = conn.execute("SELECT version FROM schema_version WHERE module = ?", (module,)).fetchone()
                if (row[0] if row else 0) >= target:
                    continue
                self._run_script(conn, scripts[target - 1])
                conn.execute(
                    "INSERT INTO schema_version (module, version, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (module) DO UPDATE SET version = excluded.version, "
                    "updated_at = excluded.updated_at",
                    (module, target, datetime.now(UTC).isoformat(timespec="seconds")),
                )
        version = self.schema_version(module)
        if version > len(scripts):
            raise PermanentError(
                f"database {self.name}: schema of {module!r} is at version {version}, "
                f"this code knows {len(scripts)}; refusing to run against a newer schema"
            )
        return version

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Idempotent. Runs every queued group-commit write first."""
        with self._group_lock:
            group = self._group
        if group is not None:
            group.close()  # runs every write queued so far, then stops its thread
        self._close_connections()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.name!r} {state}>"

