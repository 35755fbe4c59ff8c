"""Append-only, hash-chained ledger for consent events and audit entries, stored
in table ``ledger`` of a :class:`storage.db.Database`.

The chain itself (entry fields, canonical bodies, the version-1 hash encoding and
what verification detects) is in :mod:`storage.chain`, as pure functions this
module uses. :meth:`Ledger.verify` checks the
stored chain with :func:`storage.chain.verify_entries`; :func:`storage.chain.verify_jsonl`
checks an export without the database. Checked against anchors (heads
kept in WORM storage, :mod:`storage.anchors`) verification also detects a truncated
tail, a database rewritten from scratch or an older copy of it.

Appends take the database's ``ledger`` lock (:meth:`storage.db.Database.lock`) before
reading the head, so writers in several processes, on several nodes sharing one
PostgreSQL database, still make one linear chain.

SQL triggers refuse ``UPDATE`` and ``DELETE`` (and on PostgreSQL ``TRUNCATE``) and any
``INSERT`` that does not extend the head. They are defence in depth against mistakes; anyone who can write the file
can drop them. The chain, checked against an anchored head, is the real control.
See ``docs/ledger.md``.
"""

from __future__ import annotations

import io
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from . import ledger_subjects
from .chain import (
    FIELDS,
    GENESIS_HASH,
    Entry,
    VerifyResult,
    format_ts,
    next_entry,
    prepare_body,
    verify_entries,
)
from .db import Database
from .errors import NotFound
from .rows import MultiInsert, OpFailed, RowInsert

_COLUMNS = ", ".join(FIELDS)
_INSERT = MultiInsert("ledger", FIELDS)
_ENTRY_VALUES = operator.itemgetter(*FIELDS)  # an Entry's row, one C call
_BATCH = 500

# The table and its indexes, the same in both dialects but for the type of seq.
_TABLE = """
    CREATE TABLE ledger (
        seq          {seq} PRIMARY KEY CHECK (seq >= 1),
        ts           TEXT NOT NULL,
        kind         TEXT NOT NULL,
        call_id      TEXT,
        recording_id TEXT,
        body         TEXT NOT NULL,
        prev_hash    TEXT NOT NULL,
        hash         TEXT NOT NULL UNIQUE
    );
    CREATE INDEX ledger_call_id ON ledger (call_id) WHERE call_id IS NOT NULL;
    CREATE INDEX ledger_recording_id ON ledger (recording_id) WHERE recording_id IS NOT NULL;
    CREATE INDEX ledger_kind ON ledger (kind);
"""

_SQLITE_V1 = _TABLE.format(seq="INTEGER") + f"""
    CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
    BEGIN
        SELECT RAISE(ABORT, 'ledger is append-only: UPDATE refused');
    END;
    CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
    BEGIN
        SELECT RAISE(ABORT, 'ledger is append-only: DELETE refused');
    END;
    CREATE TRIGGER ledger_insert_extends_head BEFORE INSERT ON ledger
    WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger)
      OR NEW.prev_hash IS NOT COALESCE(
             (SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
    BEGIN
        SELECT RAISE(ABORT, 'ledger is append-only: INSERT must extend the head');
    END;
    """

_PG_V1 = _TABLE.format(seq="BIGINT") + f"""
    CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger is append-only: % refused', TG_OP;
    END $$;
    CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
    CREATE FUNCTION ledger_extends_head() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE head_seq BIGINT; head_hash TEXT;
    BEGIN
        SELECT seq, hash INTO head_seq, head_hash FROM ledger ORDER BY seq DESC LIMIT 1;
        IF NEW.seq IS DISTINCT FROM COALESCE(head_seq, 0) + 1
           OR NEW.prev_hash IS DISTINCT FROM COALESCE(head_hash, '{GENESIS_HASH}') THEN
            RAISE EXCEPTION 'ledger is append-only: INSERT must extend the head';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER ledger_insert_extends_head BEFORE INSERT ON ledger
        FOR EACH ROW EXECUTE FUNCTION ledger_extends_head();
"""

MIGRATIONS = {"sqlite": (_SQLITE_V1,), "postgresql": (_PG_V1,)}


def _row_entry(row: tuple[Any, ...]) -> Entry:
    return Entry(*row)


class _Append:
    """One append as a group-commit write operation (``run_many``: several at once)."""

    __slots__ = ("also", "call_id", "kind", "ledger", "recording_id", "run_many", "subject", "text")

    def __init__(self, ledger: Ledger, kind: str, call_id: str | None, recording_id: str | None, text: str,
                 subject: str | None, also: Callable[[Any], Any] | None) -> None:
        self.ledger, self.kind, self.call_id, self.recording_id = ledger, kind, call_id, recording_id
        self.text, self.subject, self.also = text, subject, also
        self.run_many = ledger._append_many

    def __call__(self, conn: Any) -> Entry:
        entry = self.ledger._insert(conn, self.kind, self.call_id, self.recording_id, self.text, self.subject)
        if self.also is not None:
            self.also(conn)
        return entry


class Ledger:
    """The chain stored in table ``ledger`` of a :class:`Database`.

    Creating a ``Ledger`` applies its migrations (explicitly, not at import).
    """

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        db.migrate("ledger", MIGRATIONS)
        db.migrate("ledger_subjects", ledger_subjects.MIGRATIONS)

    def _head(self, conn: Any) -> tuple[int, str]:
        # The ledger lock is held from this read of the head to the commit of the
        # insert: no other appender, in any process or on any node, can fork the chain.
        self._db.lock(conn, "ledger")
        row = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def _insert(self, conn: Any, kind: str, call_id: str | None,
                recording_id: str | None, text: str, subject: str | None = None) -> Entry:
        """Extend the head by one entry (and index it under ``subject``, a caller
        HMAC, in the same transaction). Only inside a write transaction."""
        entry = next_entry(self._head(conn), format_ts(self._clock()), kind, call_id, recording_id, text)
        conn.execute(_INSERT.sql(1), _ENTRY_VALUES(entry.__dict__))
        if subject is not None:
            conn.execute(ledger_subjects.INSERT.sql(1), (subject, entry.seq))
        return entry

    def _append_many(self, conn: Any, ops: Sequence[_Append]) -> list[Entry]:
        """Several appends (the group-commit writer's ``run_many``): one head read,
        the chain extended in memory in the given order, then one multi-row insert
        per table; each append's ``also`` after all the entries, in order. The same
        rows as one :meth:`_insert` per append."""
        head, clock, entries, subjects = self._head(conn), self._clock, [], []
        for i, op in enumerate(ops):
            try:
                entry = next_entry(head, format_ts(clock()), op.kind, op.call_id, op.recording_id, op.text)
            except Exception as exc:  # nothing written yet: only this append fails
                raise OpFailed(i, exc) from exc
            entries.append(entry)
            head = (entry.seq, entry.hash)
            if op.subject is not None:
                subjects.append((op.subject, entry.seq))
        _INSERT.run(conn, [_ENTRY_VALUES(e.__dict__) for e in entries])
        if subjects:
            ledger_subjects.INSERT.run(conn, subjects)
        RowInsert.run_all(conn, [op.also for op in ops if op.also is not None])
        return entries

    def append(
        self, kind: str, body: Mapping[str, Any], *, call_id: str | None = None,
        recording_id: str | None = None, also: Callable[[Any], Any] | None = None, shared: bool = False,
    ) -> Entry:
        """Append one entry and return it once it is committed (and fsynced).

        Its own write transaction, in the calling thread. ``also(conn)`` as in
        :meth:`append_async`: in the same transaction, right after the insert.
        ``shared``: through the group-commit writer instead (the calling thread
        waits), sharing an fsync with whatever else is being committed; for worker
        threads that append concurrently (the archiver). In asyncio use
        :meth:`append_async`.
        """
        op = self._op(kind, body, call_id, recording_id, also)
        if shared:
            return self._db.submit(op).result()
        with self._db.write() as conn:
            return op(conn)

    async def append_async(
        self, kind: str, body: Mapping[str, Any], *, call_id: str | None = None,
        recording_id: str | None = None, also: Callable[[Any], Any] | None = None,
    ) -> Entry:
        """Append one entry through the database's group-commit writer.

        Concurrent appends (from any task) are committed together, one fsync per
        batch; each returns only once the COMMIT that holds its entry has returned,
        so the entry is durable, exactly as with :meth:`append`. Entries get their
        ``seq`` in the order the calls were made. Invalid arguments raise at once;
        a failed write raises the storage error for this entry only (the others of
        the batch still commit, unless the COMMIT itself fails).

        ``also(conn)``, if given, runs right after the insert in the same transaction
        (e.g. :meth:`storage.catalog.Catalog.add_op`): both commit together or not at
        all, so what it writes never exists without this entry, and one fsync covers
        both. If it raises, the entry is not appended and the error propagates.

        Cancelling the awaiting task does not withdraw the entry: it may still be
        committed. That is the safe direction for an audit trail.
        """
        return await self._db.write_async(self._op(kind, body, call_id, recording_id, also))

    def _op(self, kind: str, body: Mapping[str, Any], call_id: str | None, recording_id: str | None,
            also: Callable[[Any], Any] | None) -> _Append:
        """The append as a write operation; invalid arguments raise here, at once."""
        return _Append(self, kind, call_id, recording_id, prepare_body(kind, body, call_id, recording_id),
                       ledger_subjects.subject_of(kind, body), also)

    def get(self, seq: int) -> Entry:
        with self._db.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM ledger WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise NotFound(f"ledger entry {seq} does not exist")
        return _row_entry(row)

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry; ``(0, GENESIS_HASH)`` when empty."""
        with self._db.read() as conn:
            row = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def _rows(self, start: int, stop: int | None = None) -> Iterator[tuple[Any, ...]]:
        # Batches, so no connection stays lent out while a caller holds the iterator.
        next_seq = start
        while True:
            with self._db.read() as conn:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM ledger WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (next_seq, stop if stop is not None else 2**63 - 1, _BATCH),
                ).fetchall()
            yield from rows
            if len(rows) < _BATCH:
                return
            next_seq = rows[-1][0] + 1

    def iter_entries(self, start: int = 1) -> Iterator[Entry]:
        """Entries with ``seq >= start`` in order, read in batches."""
        for row in self._rows(start):
            yield _row_entry(row)

    def find(
        self, *, call_id: str | None = None, recording_id: str | None = None, kind: str | None = None
    ) -> list[Entry]:
        """Entries matching every given filter, in seq order. At least one filter."""
        clauses, params = [], []
        for column, value in (("call_id", call_id), ("recording_id", recording_id), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if not clauses:
            raise ValueError("find() needs call_id, recording_id or kind")
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM ledger WHERE {' AND '.join(clauses)} ORDER BY seq", params
            ).fetchall()
        return [_row_entry(row) for row in rows]

    def consents_of(self, caller_hmacs: Sequence[str]) -> list[Entry]:
        """The consent entries of these caller HMACs, in seq order, read through the
        ``ledger_subjects`` index (:mod:`storage.ledger_subjects`), not a scan."""
        wanted = sorted(set(caller_hmacs))
        out: list[Entry] = []
        with self._db.read() as conn:
            for i in range(0, len(wanted), _BATCH):
                chunk = wanted[i:i + _BATCH]
                out += map(_row_entry, conn.execute(ledger_subjects.query(_COLUMNS, len(chunk)), chunk).fetchall())
        return sorted(out, key=lambda e: e.seq) if len(wanted) > _BATCH else out

    def verify(self, *, expected_head: tuple[int, str] | None = None,
               anchors: Iterable[tuple[int, str, str]] = ()) -> VerifyResult:
        """Walk the whole chain, checking it against ``anchors`` (``(seq, hash, name)``);
        see the module docstring for what is detected."""

        def records() -> Iterator[dict[str, Any]]:
            for row in self._rows(1):
                yield dict(zip(FIELDS, row))

        return verify_entries(records(), expected_head=expected_head, anchors=anchors)

    def verify_since(self, anchors: Sequence[tuple[int, str, str]]) -> VerifyResult:
        """Check the entries since the newest anchor (and that anchor's own entry) and
        that every older anchor's entry still has the anchored hash: O(new entries +
        anchors), where :meth:`verify` reads everything. Without anchors, :meth:`verify`.

        What it leaves out: an entry edited between two older anchors whose own stored
        hash was left alone is found only by the full walk.
        """
        if not anchors:
            return self.verify()
        newest = max(anchors)
        stored = self._hashes([a[0] for a in anchors if a[0] < newest[0]])
        for a_seq, a_hash, name in sorted(anchors):
            if a_seq >= newest[0]:
                break
            if stored.get(a_seq) != a_hash:
                what = "is missing" if a_seq not in stored else f"has hash {stored[a_seq][:16]}…"
                return VerifyResult(False, 0, (0, GENESIS_HASH), a_seq,
                                    f"entry {a_seq} {what} but anchor {name} records {a_hash[:16]}… "
                                    "(chain truncated or rewritten)")
        rows = self._rows(newest[0])
        first = next(rows, None)
        start = (newest[0] - 1, first[FIELDS.index("prev_hash")] if first and first[0] == newest[0]
                 else GENESIS_HASH)
        records = (dict(zip(FIELDS, row)) for row in itertools.chain([first] if first else [], rows))
        late = [a for a in anchors if a[0] >= newest[0]]
        return verify_entries(records, anchors=late, start=start)

    def _hashes(self, seqs: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        with self._db.read() as conn:
            for i in range(0, len(seqs), _BATCH):
                chunk = seqs[i:i + _BATCH]
                out.update(conn.execute(f"SELECT seq, hash FROM ledger WHERE seq IN ({','.join('?' * len(chunk))})",
                                        chunk).fetchall())
        return out

    def export_jsonl(self, fileobj: IO[Any]) -> tuple[int, str]:
        """Write every entry up to the current head as one JSON object per line.

        ``fileobj`` may be text or binary (UTF-8 is written). Returns the exported
        head ``(seq, hash)``, which is what an offline verifier should anchor to.
        """
        head = self.head()
        text_mode = isinstance(fileobj, io.TextIOBase)
        for row in self._rows(1, head[0]):
            line = json.dumps(
                dict(zip(FIELDS, row)), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ) + "\n"
            fileobj.write(line if text_mode else line.encode("utf-8"))
        return head
