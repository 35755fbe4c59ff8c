"""storage.ledger: the Ledger class: appends (one at a time, from many threads, from
two Database objects), reads, the SQL triggers, and tampering with the database
file detected by Ledger.verify. The chain's pure functions: test_chain.py."""

import asyncio
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest
from ledgerhelpers import fill, independent_hash

from storage.chain import GENESIS_HASH, Entry, entry_hash
from storage.errors import IntegrityError, NotFound, PermanentError
from storage.ledger import Ledger
from storage.sqlitedb import SqliteDatabase as Database


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


def tamper(db_path, *statements):
    """What an attacker with file access does: drop the triggers, then edit."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_update")
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
        conn.execute("DROP TRIGGER IF EXISTS ledger_insert_extends_head")
        for statement, *params in statements:
            conn.execute(statement, *params)


# -- appends ------------------------------------------------------------------------


def test_append_builds_chain(ledger):
    assert ledger.head() == (0, GENESIS_HASH)
    entries = fill(ledger, 5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for prev, cur in zip(entries, entries[1:]):
        assert cur.prev_hash == prev.hash
    for e in entries:
        assert e.hash == independent_hash(e.seq, e.ts, e.kind, e.call_id, e.recording_id, e.body, e.prev_hash)
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


def test_entry_is_frozen(ledger):
    entry = ledger.append("consent", {})
    assert isinstance(entry, Entry)
    with pytest.raises(AttributeError):
        entry.seq = 2
