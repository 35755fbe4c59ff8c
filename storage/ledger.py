"""Append-only, hash-chained ledger for consent events and audit entries.

Every entry has ``seq`` (1, 2, 3, ... with no gaps), ``ts`` (UTC, ISO-8601 with
milliseconds, ``2025-01-31T12:00:00.123Z``), ``kind`` (``consent``, ``revoke``,
``audit.play``, ...), optional ``call_id`` and ``recording_id`` (plain columns for
indexing), ``body`` (canonical JSON text), ``prev_hash`` and ``hash``.

Canonical body
    ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)``, stored and hashed as UTF-8. The stored text is what is hashed;
    verification also checks that it is still in canonical form.

Hash encoding (version 1)
    ``hash = hex(SHA-256(E))`` with ``E`` the concatenation of::

        b"callvault-ledger-v1\\x00"        19 ASCII bytes and one NUL byte
        u64be(seq)                          8 bytes, big-endian unsigned
        lp(ts) lp(kind)
        opt(call_id) opt(recording_id)
        lp(body) lp(prev_hash)

    where ``lp(s) = u32be(len(utf8(s))) || utf8(s)`` and ``opt(None) = b"\\x00"``,
    ``opt(s) = b"\\x01" || lp(s)``. Every variable field is length-prefixed and null
    is distinct from the empty string, so no two different entries share an encoding.
    ``prev_hash`` is the previous entry's ``hash`` (lower-case hex, 64 characters,
    hashed as its ASCII text); the first entry's ``prev_hash`` is 64 ``"0"``.

Verification (:meth:`Ledger.verify`, :func:`verify_jsonl`) walks the chain in ``seq``
order and stops at the first bad entry: a missing seq (deleted row), a ``prev_hash``
that is not the previous entry's hash (deleted, reordered or re-hashed row), a
``hash`` that does not match the recomputed one (edited row), or a malformed field.
With ``expected_head=(seq, hash)`` (an anchored head kept outside the database) it
also detects a truncated tail or a database rewritten from scratch.

SQL triggers refuse ``UPDATE`` and ``DELETE`` and any ``INSERT`` that does not extend
the head. They are defence in depth against mistakes; anyone who can write the file
can drop them. The chain, checked against an anchored head, is the real control.
See ``docs/ledger.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

from .db import Database
from .errors import IntegrityError, NotFound

__all__ = [
    "GENESIS_HASH",
    "MAX_BODY_BYTES",
    "MIGRATIONS",
    "Entry",
    "Ledger",
    "VerifyResult",
    "canonical_json",
    "entry_hash",
    "verify_entries",
    "verify_jsonl",
]

GENESIS_HASH = "0" * 64
MAX_BODY_BYTES = 64 * 1024
_DOMAIN = b"callvault-ledger-v1\x00"
_KIND_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")
_FIELDS = ("seq", "ts", "kind", "call_id", "recording_id", "body", "prev_hash", "hash")
_COLUMNS = ", ".join(_FIELDS)
_INSERT = f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_BATCH = 500

MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE ledger (
        seq          INTEGER PRIMARY KEY CHECK (seq >= 1),
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
    """,
)


def canonical_json(body: Mapping[str, Any]) -> str:
    """Canonical JSON text of ``body``; raises ``ValueError`` if it would not round-trip."""
    if not isinstance(body, Mapping):
        raise TypeError(f"ledger body must be a mapping, not {type(body).__name__}")
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"ledger body is not canonical-JSON encodable: {exc}") from exc
    _require_str_keys(body)
    return text


def _require_str_keys(value: Any) -> None:
    # json.dumps would silently turn 1 into "1"; a body must read back as it was given.
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"ledger body keys must be strings, not {key!r}")
            _require_str_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _require_str_keys(item)


def _recanonical(text: str) -> str | None:
    try:
        value = json.loads(text)
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _lp(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def _opt(text: str | None) -> bytes:
    return b"\x00" if text is None else b"\x01" + _lp(text)


def entry_hash(
    seq: int, ts: str, kind: str, call_id: str | None, recording_id: str | None, body: str, prev_hash: str
) -> str:
    """Hex SHA-256 over the version-1 encoding documented in the module docstring."""
    encoded = b"".join(
        (
            _DOMAIN,
            struct.pack(">Q", seq),
            _lp(ts),
            _lp(kind),
            _opt(call_id),
            _opt(recording_id),
            _lp(body),
            _lp(prev_hash),
        )
    )
    return hashlib.sha256(encoded).hexdigest()


def _format_ts(moment: datetime) -> str:
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # "2025-01-31T12:00:00.123+00:00" (milliseconds truncated, as documented) -> "...123Z"
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    ts: str
    kind: str
    call_id: str | None
    recording_id: str | None
    body: str  # canonical JSON text, exactly as hashed
    prev_hash: str
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        """The body parsed back into a dict."""
        return json.loads(self.body)

    def to_record(self) -> dict[str, Any]:
        """Every field, for export (``body`` stays the canonical text)."""
        return {name: getattr(self, name) for name in _FIELDS}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int  # entries that verified before the first bad one (all of them if ok)
    head: tuple[int, str]  # last good (seq, hash); (0, GENESIS_HASH) if none
    bad_seq: int | None = None  # first bad entry
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def raise_for_error(self) -> None:
        if not self.ok:
            raise IntegrityError(f"ledger entry {self.bad_seq}: {self.reason}")


def _malformed(record: Mapping[str, Any]) -> str | None:
    seq = record.get("seq")
    if type(seq) is not int or seq < 1:
        return "seq is not a positive integer"
    for name in ("ts", "kind", "body", "prev_hash", "hash"):
        if not isinstance(record.get(name), str):
            return f"{name} is not a string"
    for name in ("call_id", "recording_id"):
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"{name} is neither null nor a string"
    if not _TS_RE.match(record["ts"]):
        return "ts is not UTC ISO-8601 with milliseconds"
    if not _HEX64_RE.match(record["prev_hash"]) or not _HEX64_RE.match(record["hash"]):
        return "prev_hash or hash is not 64 lower-case hex digits"
    if _recanonical(record["body"]) != record["body"]:
        return "body is not canonical JSON"
    return None


def _check(record: Mapping[str, Any], expected_seq: int, prev_hash: str) -> str | None:
    """Why ``record`` cannot be entry ``expected_seq`` after ``prev_hash``, or None."""
    seq = record.get("seq")
    if type(seq) is int and seq != expected_seq:
        return f"expected entry {expected_seq}, found entry {seq}: entries missing or out of order"
    problem = _malformed(record)
    if problem:
        return problem
    if record["prev_hash"] != prev_hash:
        if expected_seq == 1:
            return "prev_hash of the first entry is not the genesis hash"
        return (
            f"prev_hash does not match the hash of entry {expected_seq - 1} "
            "(that entry, or this link, was altered or removed)"
        )
    computed = entry_hash(
        seq, record["ts"], record["kind"], record["call_id"], record["recording_id"],
        record["body"], record["prev_hash"],
    )
    if computed != record["hash"]:
        return "hash mismatch: entry contents were altered"
    return None


def verify_entries(
    records: Iterable[Mapping[str, Any] | str], *, expected_head: tuple[int, str] | None = None
) -> VerifyResult:
    """Check a chain given in ``seq`` order; a ``str`` item stands for an unreadable record."""
    seq, prev_hash = 0, GENESIS_HASH  # last good entry
    anchored_hash = GENESIS_HASH if expected_head is not None and expected_head[0] == 0 else None
    for record in records:
        reason = record if isinstance(record, str) else _check(record, seq + 1, prev_hash)
        if reason is not None:
            return VerifyResult(False, seq, (seq, prev_hash), seq + 1, reason)
        seq, prev_hash = seq + 1, record["hash"]
        if expected_head is not None and seq == expected_head[0]:
            anchored_hash = prev_hash
    if expected_head is not None:
        want_seq, want_hash = expected_head
        if seq < want_seq:
            return VerifyResult(
                False, seq, (seq, prev_hash), seq + 1,
                f"chain ends at entry {seq} but the anchored head is entry {want_seq} (truncated)",
            )
        if anchored_hash != want_hash:
            return VerifyResult(
                False, seq, (seq, prev_hash), want_seq,
                f"entry {want_seq} does not match the anchored head hash (chain rewritten)",
            )
    return VerifyResult(True, seq, (seq, prev_hash))


def _read_jsonl(fileobj: IO[Any]) -> Iterator[Mapping[str, Any] | str]:
    for lineno, line in enumerate(fileobj, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                yield f"line {lineno}: not UTF-8"
                return
        try:
            record = json.loads(line)
        except ValueError:
            yield f"line {lineno}: not valid JSON"
            return
        if not isinstance(record, dict) or set(record) != set(_FIELDS):
            yield f"line {lineno}: expected an object with exactly the fields {', '.join(_FIELDS)}"
            return
        yield record


def verify_jsonl(fileobj: IO[Any], *, expected_head: tuple[int, str] | None = None) -> VerifyResult:
    """Verify an :meth:`Ledger.export_jsonl` file (text or binary) without the database."""
    return verify_entries(_read_jsonl(fileobj), expected_head=expected_head)


def _row_entry(row: tuple[Any, ...]) -> Entry:
    return Entry(*row)


class Ledger:
    """The chain stored in table ``ledger`` of a :class:`Database`.

    Creating a ``Ledger`` applies its migrations (explicitly, not at import).
    """

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        db.migrate("ledger", MIGRATIONS)

    def _prepare(self, kind: str, body: Mapping[str, Any], call_id: str | None,
                 recording_id: str | None) -> str:
        """Validate an entry before any write; return the canonical body text."""
        if not isinstance(kind, str) or len(kind) > 64 or not _KIND_RE.match(kind):
            raise ValueError(f"ledger kind {kind!r}: expected dotted lower-case words, e.g. 'audit.play'")
        for name, value in (("call_id", call_id), ("recording_id", recording_id)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, not {type(value).__name__}")
        text = canonical_json(body)
        if len(text.encode("utf-8")) > MAX_BODY_BYTES:
            raise ValueError(f"ledger body exceeds {MAX_BODY_BYTES} bytes")
        return text

    def _insert(self, conn: sqlite3.Connection, kind: str, call_id: str | None,
                recording_id: str | None, text: str) -> Entry:
        """Extend the head by one entry. Only inside a write transaction."""
        # The write transaction (BEGIN IMMEDIATE) holds the write lock from this read
        # of the head to the commit of the insert: no other appender can fork the chain.
        row = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
        ts = _format_ts(self._clock())
        digest = entry_hash(seq, ts, kind, call_id, recording_id, text, prev_hash)
        conn.execute(_INSERT, (seq, ts, kind, call_id, recording_id, text, prev_hash, digest))
        return Entry(seq, ts, kind, call_id, recording_id, text, prev_hash, digest)

    def append(
        self, kind: str, body: Mapping[str, Any], *, call_id: str | None = None, recording_id: str | None = None
    ) -> Entry:
        """Append one entry and return it once it is committed (and fsynced).

        Its own write transaction, in the calling thread; for many concurrent
        appenders prefer :meth:`append_async`, which shares fsyncs.
        """
        text = self._prepare(kind, body, call_id, recording_id)
        with self._db.write() as conn:
            return self._insert(conn, kind, call_id, recording_id, text)

    async def append_async(
        self, kind: str, body: Mapping[str, Any], *, call_id: str | None = None,
        recording_id: str | None = None, also: Callable[[sqlite3.Connection], Any] | None = None,
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
        text = self._prepare(kind, body, call_id, recording_id)
        if also is None:
            return await self._db.write_async(
                lambda conn: self._insert(conn, kind, call_id, recording_id, text))

        def op(conn: sqlite3.Connection) -> Entry:
            entry = self._insert(conn, kind, call_id, recording_id, text)
            also(conn)
            return entry

        return await self._db.write_async(op)

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

    def verify(self, *, expected_head: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the whole chain; see the module docstring for what is detected."""

        def records() -> Iterator[dict[str, Any]]:
            for row in self._rows(1):
                yield dict(zip(_FIELDS, row))

        return verify_entries(records(), expected_head=expected_head)

    def export_jsonl(self, fileobj: IO[Any]) -> tuple[int, str]:
        """Write every entry up to the current head as one JSON object per line.

        ``fileobj`` may be text or binary (UTF-8 is written). Returns the exported
        head ``(seq, hash)``, which is what an offline verifier should anchor to.
        """
        head = self.head()
        text_mode = isinstance(fileobj, io.TextIOBase)
        for row in self._rows(1, head[0]):
            line = json.dumps(
                dict(zip(_FIELDS, row)), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ) + "\n"
            fileobj.write(line if text_mode else line.encode("utf-8"))
        return head
