"""The group-commit writer: many writes, one transaction and one fsync per batch.

What must hold: order of submission is order of commit (ledger seq), nothing is
reported before its COMMIT has returned, one failing write fails only its caller
(unless the transaction itself is lost), and closing the database commits every
write already accepted.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime

import pytest
from ledgerhelpers import hold_writer
from waiting import until

from storage.catalog import Catalog, Recording
from storage.errors import PermanentError
from storage.ledger import Ledger
from storage.sqlitedb import SqliteDatabase as Database


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "g.db")
    yield database
    database.close()


def _table(db: Database) -> None:
    with db.write() as conn:
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")


def _insert(k: int, v: str = "x"):
    def op(conn):
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))
        return k
    return op


def _rows(path) -> list[tuple]:
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute("SELECT k, v FROM t ORDER BY k").fetchall()


async def _queued(db: Database, n: int) -> None:
    """Wait until ``n`` operations are queued behind the held writer (the next batch)."""
    queue = db._group._queue
    await until(lambda: queue.qsize() == n, what=f"{n} writes queued behind the held writer",
                detail=queue.qsize)


# -- ordering ---------------------------------------------------------------------


async def test_concurrent_appends_keep_call_order_and_share_commits(db):
    ledger = Ledger(db)
    entries = await asyncio.gather(
        *(ledger.append_async("consent", {"i": i}, call_id=f"c{i}") for i in range(400)))
    assert [e.seq for e in entries] == list(range(1, 401))
    assert [e.data["i"] for e in entries] == list(range(400))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert ledger.verify().checked == 400
    group = db._group
    assert group.ops == 400 and group.batches < 400  # fsyncs were shared


async def test_batch_forms_while_a_commit_is_in_flight(db):
    ledger = Ledger(db)
    _, release = hold_writer(db)
    pending = [asyncio.ensure_future(ledger.append_async("resume", {"i": i})) for i in range(50)]
    await _queued(db, 50)
    batches = db._group.batches
    release.set()
    entries = await asyncio.gather(*pending)
    assert db._group.batches == batches + 1  # all 50 in the next transaction
    assert [e.seq for e in entries] == list(range(1, 51))


async def test_group_commit_and_direct_writers_make_one_chain(db):
    ledger = Ledger(db)

    def blocking():
        for i in range(100):
            ledger.append("pause", {"t": i})

    threads = [threading.Thread(target=blocking) for _ in range(2)]
    for t in threads:
        t.start()
    await asyncio.gather(*(ledger.append_async("resume", {"a": i}) for i in range(300)))
    for t in threads:
        t.join(30)
    assert ledger.verify().checked == 500


def test_submit_from_threads(db):
    _table(db)
    futures = []
    lock = threading.Lock()

    def worker(base):
        for i in range(50):
            f = db.submit(_insert(base + i))
            with lock:
                futures.append(f)

    threads = [threading.Thread(target=worker, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(f.result(10) for f in futures) == sorted(n * 100 + i for n in range(4) for i in range(50))
    assert len(_rows(db.path)) == 200


# -- durability -------------------------------------------------------------------


async def test_result_only_after_commit(db):
    """Every caller hears back after the COMMIT (synchronous=FULL: the fsync) has returned."""
    ledger = Ledger(db)
    log: list[str] = []
    db._writer.set_trace_callback(lambda sql: log.append(sql.strip().split()[0].upper()))
    assert db._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

    async def append(i):
        entry = await ledger.append_async("consent", {"i": i})
        # Durable means committed: another connection sees it the moment we return.
        with closing(sqlite3.connect(db.path)) as raw:
            assert raw.execute("SELECT hash FROM ledger WHERE seq = ?", (entry.seq,)).fetchone() == (entry.hash,)
        log.append(f"returned {entry.seq}")
        return entry

    await asyncio.gather(*(append(i) for i in range(30)))
    db._writer.set_trace_callback(None)
    for seq in range(1, 31):
        returned = log.index(f"returned {seq}")
        assert "COMMIT" in log[:returned], f"entry {seq} was reported before any COMMIT"
        inserted = max(i for i, s in enumerate(log[:returned]) if s == "INSERT")
        assert "COMMIT" in log[inserted:returned]


async def test_commit_failure_reports_every_write_of_the_batch(db):
    """A COMMIT that fails (here: a deferred constraint) fails all its callers; nothing is kept."""
    with db.write() as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL, "
                     "p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")

    def orphan(conn):
        conn.execute("INSERT INTO t (k, v, p) VALUES (999, 'orphan', 42)")  # fails at COMMIT

    _, release = hold_writer(db)
    futures = [asyncio.ensure_future(db.write_async(_insert(i))) for i in range(5)]
    futures.insert(2, asyncio.ensure_future(db.write_async(orphan)))
    await _queued(db, 6)
    release.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, PermanentError) and "FOREIGN KEY" in str(r) for r in results), results
    assert _rows(db.path) == []
    assert await db.write_async(_insert(7)) == 7  # the writer goes on


# -- errors -----------------------------------------------------------------------


async def test_failing_write_fails_only_its_caller(db):
    _table(db)
    _, release = hold_writer(db)

    def boom(conn):
        conn.execute("INSERT INTO t (k, v) VALUES (100, 'half')")  # undone with its savepoint
        raise ValueError("boom")

    futures = [asyncio.ensure_future(db.write_async(_insert(i))) for i in range(3)]
    futures.append(asyncio.ensure_future(db.write_async(boom)))
    futures.append(asyncio.ensure_future(db.write_async(_insert(1))))  # duplicate key
    futures += [asyncio.ensure_future(db.write_async(_insert(i))) for i in range(3, 6)]
    await _queued(db, 8)
    release.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[:3] == [0, 1, 2] and results[5:] == [3, 4, 5]
    assert isinstance(results[3], ValueError)
    assert isinstance(results[4], PermanentError) and "UNIQUE" in str(results[4])
    assert [k for k, _ in _rows(db.path)] == [0, 1, 2, 3, 4, 5]


async def test_a_batch_that_succeeds_runs_no_savepoint_and_a_failure_replays_the_rest(db):
    """The common case costs no SAVEPOINT per write; after a failure the others are
    run again (each in its own) and commit once."""
    _table(db)
    statements: list[str] = []
    db._writer.set_trace_callback(statements.append)
    _, release = hold_writer(db)
    futures = [asyncio.ensure_future(db.write_async(_insert(i))) for i in range(4)]
    await _queued(db, 4)
    release.set()
    assert await asyncio.gather(*futures) == [0, 1, 2, 3]
    assert not [s for s in statements if "SAVEPOINT" in s], statements

    def boom(conn):
        conn.execute("INSERT INTO t (k, v) VALUES (200, 'half')")
        raise ValueError("boom")

    statements.clear()
    _, release = hold_writer(db)
    futures = [asyncio.ensure_future(db.write_async(op)) for op in (_insert(10), boom, _insert(11))]
    await _queued(db, 3)
    release.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == 10 and results[2] == 11 and isinstance(results[1], ValueError)
    assert [k for k, _ in _rows(db.path)] == [0, 1, 2, 3, 10, 11]
    assert sum(s.startswith("SAVEPOINT") for s in statements) == 2  # 10 and 11 again, alone
    assert sum(s == "COMMIT" for s in statements) == 2  # the held writer's batch, then this one


async def test_failed_append_leaves_no_gap(db):
    ticks = iter(range(100))

    def clock():
        if next(ticks) == 3:
            raise OSError("clock unavailable")
        return datetime.now(UTC)

    ledger = Ledger(db, clock=clock)
    results = await asyncio.gather(*(ledger.append_async("consent", {"i": i}) for i in range(8)),
                                   return_exceptions=True)
    assert isinstance(results[3], OSError)
    good = [r for r in results if not isinstance(r, BaseException)]
    assert [e.seq for e in good] == list(range(1, 8))
    assert ledger.verify().checked == 7


async def test_lost_transaction_is_never_reported_durable(db):
    """If SQLite abandons the whole transaction (disk full, I/O error), the writes that
    ran before in the same batch are gone too: their callers must get an error."""
    _table(db)
    _, release = hold_writer(db)

    def abort(conn):
        conn.execute("ROLLBACK")  # what SQLite does by itself on SQLITE_FULL / SQLITE_IOERR
        raise sqlite3.OperationalError("database or disk is full")

    futures = [asyncio.ensure_future(db.write_async(_insert(i))) for i in range(3)]
    futures.append(asyncio.ensure_future(db.write_async(abort)))
    futures += [asyncio.ensure_future(db.write_async(_insert(i))) for i in range(3, 5)]
    await _queued(db, 6)
    release.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, PermanentError) for r in results), results
    assert "disk is full" in str(results[3])
    assert _rows(db.path) == []
    assert await db.write_async(_insert(9)) == 9


async def test_invalid_append_raises_before_any_write(db):
    ledger = Ledger(db)
    with pytest.raises(ValueError):
        await ledger.append_async("Not A Kind", {})
    with pytest.raises(ValueError):
        await ledger.append_async("consent", {"x": float("nan")})
    assert db._group is None  # refused before the writer thread was even started


async def test_catalog_add_async_is_durable_and_idempotent(db):
    catalog = Catalog(db)
    rec = Recording(recording_id="r1", consent_id="c1", uniqueid="u", linkedid="l", channel="PJSIP/1",
                    spool_path="/s/r1.wav", caller_hmac="h", did="100", agent="", rule="za",
                    jurisdiction="ZA", retention_class="default", consent_state="granted",
                    started_at=1.0)
    await asyncio.gather(catalog.add_async(rec), catalog.add_async(rec))
    with closing(sqlite3.connect(db.path)) as raw:
        assert raw.execute("SELECT recording_id, state FROM recordings").fetchall() == [("r1", "recording")]
    assert catalog.get("r1") == rec.replace(node=catalog.node)


# -- shutdown ---------------------------------------------------------------------


async def test_close_commits_every_accepted_write(db):
    _table(db)
    _, release = hold_writer(db)
    futures = [asyncio.ensure_future(db.write_async(_insert(i))) for i in range(200)]
    thread_futures = [db.submit(_insert(1000 + i)) for i in range(50)]
    await _queued(db, 250)
    closer = threading.Thread(target=db.close)
    closer.start()
    await until(lambda: db._group._closing, what="close() to stop taking writes")
    assert closer.is_alive()  # close() waits for the queued writes
    with pytest.raises(PermanentError, match="closed"):
        db.submit(_insert(5000))
    release.set()
    closer.join(10)
    assert not closer.is_alive()
    assert await asyncio.wait_for(asyncio.gather(*futures), 10) == list(range(200))
    assert [f.result(0) for f in thread_futures] == [1000 + i for i in range(50)]
    assert len(_rows(db.path)) == 250
    with pytest.raises(PermanentError, match="closed"):
        await db.write_async(_insert(6000))
    assert not db._group._thread.is_alive()


def test_close_inside_an_operation_is_refused(db):
    _table(db)
    future = db.submit(lambda conn: db.close())
    with pytest.raises(RuntimeError, match="inside"):
        future.result(10)


def test_operation_cannot_wait_on_another(db):
    future = db.submit(lambda conn: db.submit(lambda c: None))
    with pytest.raises(RuntimeError, match="cannot submit"):
        future.result(10)


# -- a ledger entry and another write in one transaction ----------------------------


def _recording(rid: str) -> Recording:
    return Recording(recording_id=rid, consent_id="c1", uniqueid="u", linkedid="l", channel="PJSIP/1",
                     spool_path=f"/s/{rid}.wav", caller_hmac="h", did="100", agent="", rule="za",
                     jurisdiction="ZA", retention_class="default", consent_state="granted",
                     started_at=1.0)


async def test_append_with_catalog_row_commits_both_in_one_transaction(db):
    ledger, catalog = Ledger(db), Catalog(db)
    batches = db._group.batches if db._group else 0
    entry = await ledger.append_async("consent", {"outcome": "granted"}, call_id="l", recording_id="r1",
                                      also=catalog.add_op(_recording("r1")))
    assert db._group.batches == batches + 1
    with closing(sqlite3.connect(db.path)) as raw:
        assert raw.execute("SELECT recording_id FROM recordings").fetchall() == [("r1",)]
        assert raw.execute("SELECT hash FROM ledger").fetchall() == [(entry.hash,)]
    assert catalog.get("r1").recording_id == "r1"


async def test_append_with_failing_other_write_appends_nothing(db):
    ledger = Ledger(db)
    catalog = Catalog(db)

    def broken(conn):
        catalog.add_op(_recording("r2"))(conn)
        raise OSError("spool vanished")

    others = [asyncio.ensure_future(ledger.append_async("consent", {"i": i})) for i in range(3)]
    with pytest.raises(OSError, match="spool vanished"):
        await ledger.append_async("consent", {"outcome": "granted"}, recording_id="r2", also=broken)
    await asyncio.gather(*others)
    with closing(sqlite3.connect(db.path)) as raw:
        assert raw.execute("SELECT count(*) FROM recordings").fetchone() == (0,)
        assert raw.execute("SELECT count(*) FROM ledger WHERE recording_id = 'r2'").fetchone() == (0,)
    assert ledger.verify().checked == 3


# -- a run of appends: one head read, multi-row inserts ------------------------------


async def test_a_run_of_appends_reads_the_head_once_and_inserts_each_table_in_chunks(db):
    ledger, catalog = Ledger(db), Catalog(db)
    await ledger.append_async("consent", {"first": True})
    statements: list[str] = []
    db._writer.set_trace_callback(statements.append)
    _, release = hold_writer(db)
    futures = [asyncio.ensure_future(ledger.append_async(
        "consent", {"i": i, "caller_hmac": f"h{i % 2}"}, call_id=f"l{i}", recording_id=f"r{i}",
        also=catalog.add_op(_recording(f"r{i}")))) for i in range(6)]
    await _queued(db, 6)
    release.set()
    entries = await asyncio.gather(*futures)
    db._writer.set_trace_callback(None)
    assert [e.seq for e in entries] == list(range(2, 8))
    assert [e.data["i"] for e in entries] == list(range(6))
    assert sum(s.startswith("SELECT seq, hash FROM ledger") for s in statements) == 1
    # 6 rows = a 4-row and a 2-row statement, per table (a statement is traced again
    # for each row its triggers run on: count runs of one text)
    ran = [text for text, _ in itertools.groupby(statements)]
    for table in ("ledger", "ledger_subjects", "recordings"):
        assert sum(s.startswith(f"INSERT INTO {table} ") for s in ran) == 2, table
    assert not [s for s in statements if "SAVEPOINT" in s]
    assert ledger.verify().checked == 7
    assert [e.seq for e in ledger.consents_of(["h1"])] == [3, 5, 7]
    with closing(sqlite3.connect(db.path)) as raw:
        assert raw.execute("SELECT recording_id FROM recordings ORDER BY recording_id").fetchall() == \
            [(f"r{i}",) for i in range(6)]


async def test_a_run_whose_rows_fail_replays_each_append_alone(db):
    """A multi-row insert that fails (here a duplicate key in another table carried by
    two appends) is rolled back; each append runs again alone and only the one whose
    row is refused fails; the chain has no gap."""
    from storage.rows import MultiInsert, RowInsert

    _table(db)
    ledger, into_t = Ledger(db), MultiInsert("t", ("k", "v"))
    _, release = hold_writer(db)
    keys = [1, 2, 2, 3]
    futures = [asyncio.ensure_future(ledger.append_async("consent", {"i": i}, also=RowInsert(into_t, (k, f"v{i}"))))
               for i, k in enumerate(keys)]
    await _queued(db, 4)
    release.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[2], PermanentError) and "UNIQUE" in str(results[2])
    assert [r.seq for r in (results[0], results[1], results[3])] == [1, 2, 3]
    assert _rows(db.path) == [(1, "v0"), (2, "v1"), (3, "v3")]
    assert ledger.verify().checked == 3
