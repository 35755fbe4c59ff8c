"""Multi-row ``INSERT`` s: the rows of a group-commit batch in a few statements.

The group-commit writer (:mod:`storage.groupcommit`) hands a run of ledger appends to
the ledger at once (``run_many``); the ledger writes their entries, subject rows and
the rows they carry (``also=``, e.g. a catalog row) with one statement per table and
chunk instead of one per row. Kept apart from the writer: the classic AGI entry point
inserts rows without loading threads and queues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MultiInsert", "OpFailed", "RowInsert"]


class MultiInsert:
    """``INSERT INTO t (a, b) VALUES (?, ?) [tail]`` for one row or many: rows go in
    chunks of 64, 32, ... 1, so a table has at most seven statement texts (SQLite's
    statement cache keeps them prepared) and 64 rows stay under any bound-parameter
    limit for tables of up to 15 columns (999) or 500 (32,766, SQLite 3.32 and later)."""

    __slots__ = ("_head", "_row", "_sql", "_tail")

    def __init__(self, table: str, columns: Sequence[str], tail: str = "") -> None:
        self._head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self._row = f"({', '.join('?' for _ in columns)})"
        self._tail = f" {tail}" if tail else ""
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        text = self._sql.get(rows)
        if text is None:
            text = self._sql[rows] = self._head + ", ".join([self._row] * rows) + self._tail
        return text

    def run(self, conn: Any, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` in order."""
        start, left = 0, len(rows)
        while left:
            n = 64 if left >= 64 else 1 << (left.bit_length() - 1)
            conn.execute(self.sql(n), [v for row in rows[start:start + n] for v in row] if n > 1 else rows[start])
            start, left = start + n, left - n


class RowInsert:
    """One row of a :class:`MultiInsert` as a write operation; the ledger's
    ``run_many`` merges those an append carries (``also=``) into multi-row inserts."""

    __slots__ = ("insert", "values")

    def __init__(self, insert: MultiInsert, values: Sequence[Any]) -> None:
        self.insert = insert
        self.values = values

    def __call__(self, conn: Any) -> None:
        conn.execute(self.insert.sql(1), self.values)

    @staticmethod
    def run_all(conn: Any, ops: Sequence[Callable[[Any], Any]]) -> None:
        """Run ``ops`` in order, consecutive :class:`RowInsert` s of one table as one."""
        i, n = 0, len(ops)
        while i < n:
            op = ops[i]
            j = i + 1
            if type(op) is RowInsert:
                while j < n and type(ops[j]) is RowInsert and ops[j].insert is op.insert:  # type: ignore[attr-defined]
                    j += 1
                op.insert.run(conn, [o.values for o in ops[i:j]])  # type: ignore[attr-defined]
            else:
                op(conn)
            i = j


class OpFailed(Exception):
    """Raised by a ``run_many`` when operation ``index`` of its run failed with ``error``
    before anything of the run was written: only that operation's caller gets it."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error
