"""The ledger's hash chain as pure functions: canonical bodies, entry hashes, the
next entry after a head, and checking a sequence of entries against the chain.
:class:`storage.ledger.Ledger` stores the chain in SQLite on top of these; an
exported file is checked with :func:`verify_jsonl` and nothing else.

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
With anchors (``(seq, hash)`` heads kept outside the database, :mod:`storage.anchors`)
it also detects a truncated tail, a database rewritten from scratch or an older copy.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from .errors import IntegrityError
from .record import Record

__all__ = [
    "FIELDS",
    "GENESIS_HASH",
    "MAX_BODY_BYTES",
    "Entry",
    "VerifyResult",
    "canonical_json",
    "entry_hash",
    "format_ts",
    "next_entry",
    "prepare_body",
    "verify_entries",
    "verify_jsonl",
]

GENESIS_HASH = "0" * 64
MAX_BODY_BYTES = 64 * 1024
FIELDS = ("seq", "ts", "kind", "call_id", "recording_id", "body", "prev_hash", "hash")
_DOMAIN = b"callvault-ledger-v1\x00"
_KIND_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def canonical_json(body: Mapping[str, Any]) -> str:
    """Canonical JSON text of ``body``; raises ``ValueError`` if it would not round-trip."""
    if not isinstance(body, Mapping):
        raise TypeError(f"ledger body must be a mapping, not {type(body).__name__}")
    try:
        # Exactly json.dumps(body, sort_keys=True, separators=(",", ":"),
        # ensure_ascii=False, allow_nan=False), without re-creating the encoder.
        text = _ENCODER.encode(body)
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
                raise ValueError(f"ledger body keys must be strings, not {key!r}")  # noqa: TRY004 - documented
            if type(item) not in _SCALARS:
                _require_str_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            if type(item) not in _SCALARS:
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


def format_ts(moment: datetime) -> str:
    """``moment`` as an entry's ``ts``: UTC, milliseconds (truncated), ``Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # "2025-01-31T12:00:00.123+00:00" (milliseconds truncated, as documented) -> "...123Z"
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


class Entry(Record):
    """One ledger entry as stored: its place in the chain, its body and its hashes."""

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
        return {name: getattr(self, name) for name in FIELDS}


class VerifyResult(Record):
    """What a chain check found: how far it verified and the first bad entry."""

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


def prepare_body(kind: str, body: Mapping[str, Any], call_id: str | None, recording_id: str | None) -> str:
    """Validate an entry's fields before any write; return the canonical body text."""
    if not isinstance(kind, str) or len(kind) > 64 or not _KIND_RE.match(kind):
        raise ValueError(f"ledger kind {kind!r}: expected dotted lower-case words, e.g. 'audit.play'")
    for name, value in (("call_id", call_id), ("recording_id", recording_id)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string or None, not {type(value).__name__}")
    text = canonical_json(body)
    if len(text) * 4 > MAX_BODY_BYTES and len(text.encode("utf-8")) > MAX_BODY_BYTES:
        raise ValueError(f"ledger body exceeds {MAX_BODY_BYTES} bytes")
    return text


def next_entry(head: tuple[int, str], ts: str, kind: str, call_id: str | None, recording_id: str | None,
               body: str) -> Entry:
    """The entry that extends the chain whose last entry is ``head`` (``(seq, hash)``,
    ``(0, GENESIS_HASH)`` for an empty chain). ``body`` is canonical JSON text."""
    seq, prev_hash = head[0] + 1, head[1]
    digest = entry_hash(seq, ts, kind, call_id, recording_id, body, prev_hash)
    return Entry(seq, ts, kind, call_id, recording_id, body, prev_hash, digest)


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
    records: Iterable[Mapping[str, Any] | str], *, expected_head: tuple[int, str] | None = None,
    anchors: Iterable[tuple[int, str, str]] = (), start: tuple[int, str] = (0, GENESIS_HASH),
) -> VerifyResult:
    """Check a chain given in ``seq`` order; a ``str`` item stands for an unreadable record.

    ``anchors`` are ``(seq, hash, name)``: heads recorded outside the chain. Entry
    ``seq`` must exist and have that hash; ``name`` (the anchor's key) is quoted in
    the reason when it does not. ``expected_head`` is one such anchor. ``start`` is
    the ``(seq, hash)`` the first record follows (the genesis by default): a walk
    from an anchored entry instead of from entry 1 (anchors up to it are not checked).
    """
    wanted: dict[int, list[tuple[str, str]]] = {}
    for a_seq, a_hash, name in anchors:
        wanted.setdefault(a_seq, []).append((a_hash, f"anchor {name}"))
    if expected_head is not None:
        wanted.setdefault(expected_head[0], []).append((expected_head[1], "the anchored head"))
    seq, prev_hash = start
    for a_hash, name in wanted.get(0, ()):
        if a_hash != GENESIS_HASH:
            return VerifyResult(False, 0, start, 0, f"{name} records entry 0 with a hash that is not the genesis")
    for record in records:
        reason = record if isinstance(record, str) else _check(record, seq + 1, prev_hash)
        if reason is not None:
            return VerifyResult(False, seq - start[0], (seq, prev_hash), seq + 1, reason)
        last = (seq, prev_hash)
        seq, prev_hash = seq + 1, record["hash"]
        for a_hash, name in wanted.get(seq, ()):
            if a_hash != prev_hash:
                return VerifyResult(
                    False, seq - 1 - start[0], last, seq,
                    f"entry {seq} has hash {prev_hash[:16]}… but {name} records {a_hash[:16]}… (chain rewritten)")
    beyond = [(a_seq, name) for a_seq, hashes in wanted.items() if a_seq > seq for _, name in hashes]
    if beyond:
        want_seq, name = max(beyond)
        return VerifyResult(
            False, seq - start[0], (seq, prev_hash), seq + 1,
            f"chain ends at entry {seq} but {name} records entry {want_seq} "
            "(truncated: its tail deleted, or an older copy of the database)",
        )
    return VerifyResult(True, seq - start[0], (seq, prev_hash))


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
        if not isinstance(record, dict) or set(record) != set(FIELDS):
            yield f"line {lineno}: expected an object with exactly the fields {', '.join(FIELDS)}"
            return
        yield record


def verify_jsonl(fileobj: IO[Any], *, expected_head: tuple[int, str] | None = None,
                 anchors: Iterable[tuple[int, str, str]] = ()) -> VerifyResult:
    """Verify an :meth:`Ledger.export_jsonl` file (text or binary) without the database."""
    return verify_entries(_read_jsonl(fileobj), expected_head=expected_head, anchors=anchors)
