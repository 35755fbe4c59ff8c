import asyncio
import hashlib
import io
import json
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest

from storage.db import Database
from storage.errors import IntegrityError, NotFound, PermanentError
from storage.ledger import (
    GENESIS_HASH,
    Entry,
    Ledger,
    canonical_json,
    entry_hash,
    verify_jsonl,
)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "ledger.db"


@pytest.fixture
def db(db_path):
    database = Database(db_path)
    yield database
    database.close()


@pytest.fixture
def ledger(db):
    return Ledger(db)


def fill(ledger, n=10):
    return [
        ledger.append("consent", {"n": i, "choice": "accept"}, call_id=f"call-{i}", recording_id=f"rec-{i}")
        for i in range(1, n + 1)
    ]


def tamper(db_path, *statements):
    """What an attacker with file access does: drop the triggers, then edit."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_update")
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
        conn.execute("DROP TRIGGER IF EXISTS ledger_insert_extends_head")
        for statement, *params in statements:
            conn.execute(statement, *params)


# -- encoding -----------------------------------------------------------------------


def _independent_hash(seq, ts, kind, call_id, recording_id, body, prev_hash):
    """The encoding exactly as docs/ledger.md states it, written separately."""

    def lp(s):
        b = s.encode("utf-8")
        return len(b).to_bytes(4, "big") + b

    def opt(s):
        return b"\x00" if s is None else b"\x01" + lp(s)

    data = (
        b"callvault-ledger-v1\x00" + seq.to_bytes(8, "big") + lp(ts) + lp(kind)
        + opt(call_id) + opt(recording_id) + lp(body) + lp(prev_hash)
    )
    return hashlib.sha256(data).hexdigest()


def test_documented_test_vector():
    body1 = canonical_json({"mode": "dtmf", "choice": "accept", "digits": "1"})
    assert body1 == '{"choice":"accept","digits":"1","mode":"dtmf"}'
    h1 = entry_hash(1, "2025-01-31T12:00:00.123Z", "consent", "1700000000.42", None, body1, GENESIS_HASH)
    assert h1 == "26a692561d217a5759abf9ad6c0372c18c8d7bf9749d084dc8c8b1c3bce4ff26"
    body2 = canonical_json({"actor": "supervisor:alice", "reason": "QA review"})
    h2 = entry_hash(2, "2025-01-31T12:05:10.004Z", "audit.play", None, "rec_7QF2", body2, h1)
    assert h2 == "34eb46bbc671c72ef2b7bd7bf0e87bbf09dd3a13bccaed6a1c57462d3dc23e9e"
    assert h1 == _independent_hash(1, "2025-01-31T12:00:00.123Z", "consent", "1700000000.42", None, body1, GENESIS_HASH)


def test_encoding_is_unambiguous():
    base = (1, "2025-01-31T12:00:00.123Z", "consent", "ab", None, "{}", GENESIS_HASH)
    variants = {
        entry_hash(*base),
        entry_hash(1, base[1], "consent", "a", "b", "{}", GENESIS_HASH),  # field boundary moved
        entry_hash(1, base[1], "consent", "ab", "", "{}", GENESIS_HASH),  # "" is not null
        entry_hash(1, base[1], "consent", None, "ab", "{}", GENESIS_HASH),  # which id
        entry_hash(1, base[1], "consentab", None, None, "{}", GENESIS_HASH),
    }
    assert len(variants) == 5


def test_canonical_json_rules():
    assert canonical_json({"b": [1, 2.5, None], "a": "ü"}) == '{"a":"ü","b":[1,2.5,null]}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(ValueError):
        canonical_json({1: "int key"})
    with pytest.raises(ValueError):
        canonical_json({"x": object()})
    with pytest.raises(TypeError):
        canonical_json(["not", "a", "dict"])


# -- appends ------------------------------------------------------------------------


def test_append_builds_chain(ledger):
    assert ledger.head() == (0, GENESIS_HASH)
    entries = fill(ledger, 5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for prev, cur in zip(entries, entries[1:]):
        assert cur.prev_hash == prev.hash
    for e in entries:
        assert e.hash == _independent_hash(e.seq, e.ts, e.kind, e.call_id, e.recording_id, e.body, e.prev_hash)
    assert ledger.head() == (5, entries[-1].hash)
    assert ledger.get(3) == entries[2]
    assert list(ledger.iter_entries()) == entries
    assert list(ledger.iter_entries(start=4)) == entries[3:]
    assert ledger.verify().ok


def test_entry_fields(db):
    moment = datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    ledger = Ledger(db, clock=lambda: moment)
    entry = ledger.append("audit.download", {"actor": "sup:bob", "why": "DSAR 17"}, recording_id="r1")
    assert entry.ts == "2025-01-31T10:00:00.123Z"
    assert entry.kind == "audit.download"
    assert entry.call_id is None and entry.recording_id == "r1"
    assert entry.body == '{"actor":"sup:bob","why":"DSAR 17"}'
    assert entry.data == {"actor": "sup:bob", "why": "DSAR 17"}
    assert set(entry.to_record()) == {
        "seq", "ts", "kind", "call_id", "recording_id", "body", "prev_hash", "hash"
    }


@pytest.mark.parametrize("kind", ["", "Consent", "audit..play", "audit play", ".x", "x" * 65, None])
def test_append_rejects_bad_kind(ledger, kind):
    with pytest.raises(ValueError, match="kind"):
        ledger.append(kind, {})
    assert ledger.head()[0] == 0


def test_append_rejects_bad_body_and_ids(ledger):
    with pytest.raises(ValueError):
        ledger.append("consent", {"big": "x" * 70_000})
    with pytest.raises(TypeError):
        ledger.append("consent", {}, call_id=42)
    assert ledger.head()[0] == 0


def test_get_missing(ledger):
    with pytest.raises(NotFound):
        ledger.get(1)


def test_find(ledger):
    ledger.append("consent", {"c": "accept"}, call_id="A")
    ledger.append("audit.play", {"who": "x"}, call_id="A", recording_id="R")
    ledger.append("consent", {"c": "decline"}, call_id="B")
    ledger.append("revoke", {}, call_id="A", recording_id="R")
    assert [e.seq for e in ledger.find(call_id="A")] == [1, 2, 4]
    assert [e.seq for e in ledger.find(recording_id="R")] == [2, 4]
    assert [e.seq for e in ledger.find(kind="consent")] == [1, 3]
    assert [e.seq for e in ledger.find(call_id="A", kind="revoke")] == [4]
    assert ledger.find(call_id="nobody") == []
    with pytest.raises(ValueError):
        ledger.find()


def test_iter_entries_crosses_batches(ledger):
    entries = fill(ledger, 1203)
    assert [e.seq for e in ledger.iter_entries()] == list(range(1, 1204))
    assert list(ledger.iter_entries(start=1200)) == entries[1199:]


# -- concurrency and durability -----------------------------------------------------


def test_many_threads_never_fork(db_path, ledger):
    threads_n, per_thread = 50, 20
    start = threading.Barrier(threads_n)
    errors = []

    def worker(k):
        try:
            start.wait(10)
            for i in range(per_thread):
                ledger.append("audit.play", {"k": k, "i": i}, recording_id=f"r{k}")
        except Exception as exc:  # reported below; a thread must not die silently
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    result = ledger.verify()
    assert result.ok and result.checked == 1000
    assert ledger.head()[0] == 1000
    seqs = [e.seq for e in ledger.iter_entries()]
    assert seqs == list(range(1, 1001))
    assert {(k, i) for k in range(threads_n) for i in range(per_thread)} == {
        (e.data["k"], e.data["i"]) for e in ledger.iter_entries()
    }


def test_two_database_objects_on_one_file_never_fork(db_path, db):
    # Two Database objects = two writer connections, like two processes: only
    # BEGIN IMMEDIATE keeps them from reading the same head.
    first = Ledger(db)
    with Database(db_path, busy_timeout=30) as other_db:
        second = Ledger(other_db)

        def worker(ledger, tag):
            for i in range(100):
                ledger.append("consent", {"tag": tag, "i": i})

        threads = [threading.Thread(target=worker, args=(lg, t)) for lg, t in ((first, "a"), (second, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert second.verify().checked == 200
    assert first.verify().ok


async def test_append_async_concurrent(ledger):
    entries = await asyncio.gather(
        *(ledger.append_async("consent", {"i": i}, call_id=f"c{i}") for i in range(200))
    )
    assert sorted(e.seq for e in entries) == list(range(1, 201))
    assert len({e.hash for e in entries}) == 200
    assert ledger.verify().checked == 200
    assert {e.call_id for e in ledger.find(kind="consent")} == {f"c{i}" for i in range(200)}


async def test_async_and_threads_mixed(ledger):
    def blocking():
        for i in range(50):
            ledger.append("pause", {"t": i})

    thread = threading.Thread(target=blocking)
    thread.start()
    await asyncio.gather(*(ledger.append_async("resume", {"a": i}) for i in range(50)))
    thread.join(30)
    assert ledger.verify().checked == 100


def test_reopen_keeps_entries(db_path):
    with Database(db_path) as database:
        written = fill(Ledger(database), 25)
    with Database(db_path) as database:
        ledger = Ledger(database)
        assert list(ledger.iter_entries()) == written
        assert ledger.verify(expected_head=(25, written[-1].hash)).ok
        assert ledger.append("resume", {}).seq == 26
        assert database.schema_version("ledger") == 1


# -- triggers -----------------------------------------------------------------------


def test_triggers_block_update_and_delete(db_path, ledger, db):
    fill(ledger, 3)
    for statement in (
        "UPDATE ledger SET body = '{}' WHERE seq = 2",
        "DELETE FROM ledger WHERE seq = 3",
        "INSERT INTO ledger VALUES (7, 't', 'k', NULL, NULL, '{}', 'x', 'y')",
    ):
        with pytest.raises(PermanentError, match="append-only"):
            with db.write() as conn:
                conn.execute(statement)
        with closing(sqlite3.connect(db_path)) as raw:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(statement)
    assert ledger.verify().checked == 3


# -- tamper detection ---------------------------------------------------------------


def test_edited_body_detected(db_path, ledger):
    fill(ledger)
    tamper(db_path, ("UPDATE ledger SET body = ? WHERE seq = 4", ('{"choice":"decline","n":4}',)))
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 4 and "hash mismatch" in result.reason
    assert result.checked == 3 and result.head == (3, ledger.get(3).hash)
    with pytest.raises(IntegrityError, match="entry 4"):
        result.raise_for_error()


def test_edited_ts_detected(db_path, ledger):
    fill(ledger)
    tamper(db_path, ("UPDATE ledger SET ts = '2020-01-01T00:00:00.000Z' WHERE seq = 6",))
    result = ledger.verify()
    assert (result.ok, result.bad_seq) == (False, 6)


def test_edited_id_column_detected(db_path, ledger):
    fill(ledger)
    tamper(db_path, ("UPDATE ledger SET call_id = NULL WHERE seq = 2",))
    assert ledger.verify().bad_seq == 2


def test_non_canonical_body_detected(db_path, ledger):
    fill(ledger)
    tamper(db_path, ("UPDATE ledger SET body = '{\"n\": 5}' WHERE seq = 5",))
    result = ledger.verify()
    assert result.bad_seq == 5 and "canonical" in result.reason


def test_deleted_middle_row_detected(db_path, ledger):
    fill(ledger)
    tamper(db_path, ("DELETE FROM ledger WHERE seq = 5",))
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 5 and "missing" in result.reason


def test_deleted_first_row_detected(db_path, ledger):
    fill(ledger)
    tamper(db_path, ("DELETE FROM ledger WHERE seq = 1",))
    assert ledger.verify().bad_seq == 1


def test_deleted_middle_row_renumbered_detected(db_path, ledger):
    fill(ledger)
    tamper(
        db_path,
        ("DELETE FROM ledger WHERE seq = 5",),
        ("UPDATE ledger SET seq = seq - 1 WHERE seq > 5",),
    )
    result = ledger.verify()
    assert result.bad_seq == 5 and "prev_hash" in result.reason


def test_deleted_last_row_needs_anchor(db_path, ledger):
    fill(ledger)
    anchor = ledger.head()
    tamper(db_path, ("DELETE FROM ledger WHERE seq = 10",))
    assert ledger.verify().ok  # undetectable from inside the file alone
    result = ledger.verify(expected_head=anchor)
    assert not result.ok and result.bad_seq == 10 and "truncated" in result.reason


def test_rewritten_chain_detected_by_anchor(db_path, db, ledger):
    fill(ledger, 3)
    anchor = ledger.head()
    tamper(db_path, ("DROP TABLE ledger",), ("DELETE FROM schema_version WHERE module = 'ledger'",))
    forged = Ledger(db)  # fresh table, triggers and all, as a careful forger would leave it
    for i in range(4):
        forged.append("consent", {"forged": i})
    assert forged.verify().ok
    result = forged.verify(expected_head=anchor)
    assert not result.ok and result.bad_seq == 3 and "rewritten" in result.reason


def test_expected_head_variants(ledger):
    entries = fill(ledger, 4)
    assert ledger.verify(expected_head=(2, entries[1].hash)).ok  # older anchor, chain grew
    assert ledger.verify(expected_head=(0, GENESIS_HASH)).ok
    assert ledger.verify(expected_head=(4, "f" * 64)).bad_seq == 4


def test_swapped_seq_values_detected(db_path, ledger):
    fill(ledger)
    tamper(
        db_path,
        ("UPDATE ledger SET seq = 1000 WHERE seq = 3",),
        ("UPDATE ledger SET seq = 3 WHERE seq = 4",),
        ("UPDATE ledger SET seq = 4 WHERE seq = 1000",),
    )
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 3


def test_rehashed_edit_detected_at_next_entry(db_path, ledger):
    entries = fill(ledger)
    e = entries[6]  # seq 7
    body = '{"choice":"decline","n":7}'
    new_hash = entry_hash(e.seq, e.ts, e.kind, e.call_id, e.recording_id, body, e.prev_hash)
    tamper(db_path, ("UPDATE ledger SET body = ?, hash = ? WHERE seq = 7", (body, new_hash)))
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 8
    assert "prev_hash does not match the hash of entry 7" in result.reason


def test_rehashed_last_entry_detected_by_anchor(db_path, ledger):
    entries = fill(ledger, 3)
    anchor = ledger.head()
    e = entries[2]
    new_hash = entry_hash(e.seq, e.ts, e.kind, e.call_id, e.recording_id, "{}", e.prev_hash)
    tamper(db_path, ("UPDATE ledger SET body = '{}', hash = ? WHERE seq = 3", (new_hash,)))
    assert ledger.verify().ok
    assert ledger.verify(expected_head=anchor).bad_seq == 3


def test_wrong_type_in_column_detected(db_path, ledger):
    fill(ledger, 3)
    tamper(db_path, ("UPDATE ledger SET body = X'7B7D' WHERE seq = 2",))  # a blob, not text
    result = ledger.verify()
    assert result.bad_seq == 2 and "body" in result.reason


# -- export and offline verification ------------------------------------------------


def test_export_then_verify_offline(ledger):
    entries = fill(ledger, 30)
    ledger.append("audit.export", {"who": "officer", "note": "Zoë — DSAR"}, call_id=None)
    text = io.StringIO()
    head = ledger.export_jsonl(text)
    assert head == ledger.head() == (31, ledger.get(31).hash)
    lines = text.getvalue().splitlines()
    assert len(lines) == 31
    first = json.loads(lines[0])
    assert first == entries[0].to_record()
    assert verify_jsonl(io.StringIO(text.getvalue()), expected_head=head).ok

    binary = io.BytesIO()
    ledger.export_jsonl(binary)
    assert binary.getvalue() == text.getvalue().encode("utf-8")
    binary.seek(0)
    result = verify_jsonl(binary, expected_head=head)
    assert result.ok and result.checked == 31


def test_export_to_file_and_verify(tmp_path, ledger):
    fill(ledger, 5)
    path = tmp_path / "ledger.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        head = ledger.export_jsonl(f)
    with open(path, "rb") as f:
        assert verify_jsonl(f, expected_head=head).ok


def _exported(ledger, n=10):
    fill(ledger, n)
    buf = io.StringIO()
    head = ledger.export_jsonl(buf)
    return [json.loads(line) for line in buf.getvalue().splitlines()], head


def _verify(records, **kw):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return verify_jsonl(io.StringIO(text), **kw)


def test_tampered_export_edited_body(ledger):
    records, _ = _exported(ledger)
    records[3]["body"] = '{"choice":"decline","n":4}'
    result = _verify(records)
    assert (result.ok, result.bad_seq) == (False, 4)


def test_tampered_export_deleted_line(ledger):
    records, head = _exported(ledger)
    del records[5]
    result = _verify(records, expected_head=head)
    assert (result.ok, result.bad_seq, result.checked) == (False, 6, 5)


def test_tampered_export_truncated_tail(ledger):
    records, head = _exported(ledger)
    assert _verify(records[:-2]).ok
    assert _verify(records[:-2], expected_head=head).bad_seq == 9


def test_tampered_export_swapped_lines(ledger):
    records, _ = _exported(ledger)
    records[2], records[3] = records[3], records[2]
    result = _verify(records)
    assert result.bad_seq == 3 and "missing" in result.reason


def test_tampered_export_rehashed_line(ledger):
    records, _ = _exported(ledger)
    r = records[4]
    r["body"] = "{}"
    r["hash"] = entry_hash(r["seq"], r["ts"], r["kind"], r["call_id"], r["recording_id"], "{}", r["prev_hash"])
    assert _verify(records).bad_seq == 6


def test_malformed_export_lines(ledger):
    records, _ = _exported(ledger, 3)
    good = "".join(json.dumps(r) + "\n" for r in records)
    bad_json = verify_jsonl(io.StringIO(good + "{not json\n"))
    assert bad_json.bad_seq == 4 and "line 4" in bad_json.reason
    extra = dict(records[0], extra=1)
    assert verify_jsonl(io.StringIO(json.dumps(extra) + "\n")).bad_seq == 1
    assert verify_jsonl(io.BytesIO(b"\xff\xfe\n")).bad_seq == 1
    empty = verify_jsonl(io.StringIO(""))
    assert empty.ok and empty.head == (0, GENESIS_HASH)
    assert not verify_jsonl(io.StringIO(""), expected_head=(1, "a" * 64)).ok


def test_entry_is_frozen(ledger):
    entry = ledger.append("consent", {})
    assert isinstance(entry, Entry)
    with pytest.raises(AttributeError):
        entry.seq = 2
