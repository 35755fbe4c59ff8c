"""The PostgreSQL backend of :class:`storage.db.Database`: one database shared by nodes.

``open_database("postgresql://callvault@db:5432/callvault")`` returns a
:class:`PgDatabase`: two psycopg 3 connection pools, writers and read-only readers
(``default_transaction_read_only``), all in autocommit mode so that :meth:`write`
issues ``BEGIN`` / ``COMMIT`` itself, exactly as the SQLite backend does (the
group-commit writer's ``SAVEPOINT`` handling is the same for both).

Unlike SQLite, write transactions of one process run side by side (one pooled
connection each); row locks order them. What must be linear takes
:meth:`PgDatabase.lock`, a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), held until COMMIT or ROLLBACK by whichever process on
whichever node took it: the ledger head (so ``prev_hash`` is always the true previous
entry) and the migrations. Under READ COMMITTED each statement reads what was
committed before it started, so the head read right after taking the lock sees the
previous holder's entry.

Durability: ``synchronous_commit`` as the server has it (``on`` by default: the
COMMIT returns once the WAL is flushed). Leave it on; the ledger records consent.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from .db import Database
from .errors import PermanentError, RetryableError

__all__ = ["PgConnection", "PgDatabase"]

_WRITERS = 4
_READERS = 8


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """``?`` -> ``%s`` (and a literal ``%`` -> ``%%``): the product's SQL never has ``?`` in a literal."""
    return sql.replace("%", "%%").replace("?", "%s")


def lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key for ``name`` (stable across versions)."""
    return int.from_bytes(hashlib.sha256(b"callvault:" + name.encode()).digest()[:8], "big", signed=True)


class PgConnection:
    """A pooled psycopg connection that speaks the ``?`` placeholders of the product's SQL."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Any = None) -> psycopg.Cursor:
        if params is None:
            return self.raw.execute(sql)  # no placeholders: several statements allowed
        return self.raw.execute(_placeholders(sql), params)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR,
                                                    TransactionStatus.ACTIVE)


class PgDatabase(Database):
    """PostgreSQL through two connection pools (writers, readers)."""

    dialect = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, name: str, busy_timeout: float = 5.0) -> None:
        """``url`` as libpq takes it; ``name`` the same with its password masked (for messages)."""
        super().__init__()
        self.name = name
        self._timeout = busy_timeout
        try:  # fail now, with libpq's reason, rather than on the first query
            psycopg.connect(url, connect_timeout=max(2, int(busy_timeout)), autocommit=True).close()
        except psycopg.Error as exc:
            raise PermanentError(f"database {self.name}: cannot connect: {exc}".strip()) from exc
        self._writers = self._pool(url, _WRITERS, "writers", {})
        self._readers = self._pool(url, _READERS, "readers", {"options": "-c default_transaction_read_only=on"})

    def _pool(self, url: str, size: int, role: str, extra: dict[str, Any]) -> ConnectionPool:
        return ConnectionPool(url, min_size=1, max_size=size, timeout=self._timeout, open=True,
                              name=f"callvault-{role}", kwargs={"autocommit": True, **extra})

    @contextmanager
    def _lend(self, pool: ConnectionPool) -> Iterator[psycopg.Connection]:
        self._ensure_open()
        try:
            raw = pool.getconn()
        except PoolTimeout as exc:
            raise RetryableError(f"{self.name}: no connection within {self._timeout:g} s: {exc}") from exc
        try:
            yield raw
        finally:
            if raw.info.transaction_status != TransactionStatus.IDLE and not raw.closed:
                try:
                    raw.execute("ROLLBACK")
                except psycopg.Error:
                    pass  # a broken connection: the pool discards it
            pool.putconn(raw)

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        """``BEGIN ... COMMIT`` on a pooled writer; any exception rolls back. A transaction
        that a swallowed error aborted is refused at COMMIT (PostgreSQL would roll it back
        and report success)."""
        with self._lend(self._writers) as raw:
            try:
                raw.execute("BEGIN")
                yield PgConnection(raw)
                if raw.info.transaction_status == TransactionStatus.INERROR:
                    raise PermanentError(f"{self.name}: transaction aborted by an earlier error; rolled back")
                raw.execute("COMMIT")
            except psycopg.Error as exc:
                raise self.translate(exc) from exc

    @contextmanager
    def read(self) -> Iterator[PgConnection]:
        with self._lend(self._readers) as raw:
            try:
                yield PgConnection(raw)
            except psycopg.Error as exc:
                raise self.translate(exc) from exc

    def lock(self, conn: PgConnection, name: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
            # connection lost, server shutting down, deadlock, serialisation failure, lock timeout
            return RetryableError(f"{self.name}: {exc}")
        if isinstance(exc, psycopg.Error):
            return PermanentError(f"{self.name}: {exc}")
        return exc

    def _run_script(self, conn: PgConnection, script: str) -> None:
        conn.execute(script)

    def _table_exists(self, conn: PgConnection, table: str) -> bool:
        return conn.execute("SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?",
                            (table,)).fetchone() is not None

    def _close_connections(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writers.close()
        self._readers.close()
