"""The database contract, run against both backends (``any_db``: SQLite and PostgreSQL):
migrations, the ledger (one chain from many threads and from the group-commit writer,
the triggers), the job queue with nodes and leases, and group-commit isolation.
Catalog queries and users/sessions run on both backends in test_catalog.py and
test_users.py."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from ledgerhelpers import fill, hold_writer

from storage.catalog import MIGRATIONS as CATALOG_MIGRATIONS
from storage.catalog import Catalog, Recording
from storage.chain import GENESIS_HASH
from storage.dburl import open_database
from storage.errors import PermanentError
from storage.ledger import Ledger

# -- migrations ----------------------------------------------------------------------------

DEMO = {
    "sqlite": ["CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)", "ALTER TABLE a ADD COLUMN w REAL"],
    "postgresql": ["CREATE TABLE a (id BIGINT PRIMARY KEY, v TEXT)", "ALTER TABLE a ADD COLUMN w DOUBLE PRECISION"],
}


def test_migrations_apply_once_per_dialect_and_refuse_a_newer_schema(any_db):
    assert any_db.schema_version("demo") == 0
    assert any_db.migrate("demo", {k: v[:1] for k, v in DEMO.items()}) == 1
    assert any_db.migrate("demo", DEMO) == 2
    assert any_db.migrate("demo", DEMO) == 2
    with any_db.write() as c:
        c.execute("INSERT INTO a (id, v, w) VALUES (?, ?, ?)", (1, "x", 0.125))
    with any_db.read() as c:
        assert c.execute("SELECT v, w FROM a WHERE id = ?", (1,)).fetchone() == ("x", 0.125)
    with pytest.raises(PermanentError, match="newer"):
        any_db.migrate("demo", {k: v[:1] for k, v in DEMO.items()})
    with pytest.raises(ValueError, match="same versions"):
        any_db.migrate("other", {"sqlite": DEMO["sqlite"], "postgresql": DEMO["postgresql"][:1]})


def test_failed_migration_rolls_back_only_that_step(any_db):
    broken = {d: [s[0], "CREATE TABLE c (x TEXT); INSERT INTO nope VALUES (1)"] for d, s in DEMO.items()}
    with pytest.raises(PermanentError):
        any_db.migrate("demo", broken)
    assert any_db.schema_version("demo") == 1
    with pytest.raises(PermanentError), any_db.read() as c:
        c.execute("SELECT * FROM c")


def test_two_handles_migrating_together_migrate_once(db_url):
    dbs = [open_database(db_url) for _ in range(3)]
    try:
        errors = []

        def go(db):
            try:
                Ledger(db), Catalog(db, node="n")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=go, args=(db,)) for db in dbs]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert errors == []
        assert dbs[0].schema_version("catalog") == len(CATALOG_MIGRATIONS[dbs[0].dialect])
        assert dbs[0].schema_version("ledger") == 1
    finally:
        [db.close() for db in dbs]


# -- the ledger -------------------------------------------------------------------------------


def test_ledger_chain_from_threads_and_group_commit_is_linear(any_db):
    ledger = Ledger(any_db)
    assert ledger.head() == (0, GENESIS_HASH)
    fill(ledger, 3)

    def appender(i):
        for j in range(10):
            ledger.append("audit.play", {"t": i, "j": j})

    async def grouped():
        return await asyncio.gather(*(ledger.append_async("consent", {"a": i}) for i in range(40)))

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    entries = asyncio.run(grouped())
    [t.join() for t in threads]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)  # call order kept
    result = ledger.verify()
    assert result.ok and result.checked == 3 + 40 + 40
    assert ledger.find(kind="audit.play")[-1].seq <= 83
    assert [e.seq for e in ledger.iter_entries(80)] == [80, 81, 82, 83]


def test_ledger_triggers_refuse_edits_and_forks(any_db):
    ledger = Ledger(any_db)
    fill(ledger, 3)
    head = ledger.head()
    for statement in ("UPDATE ledger SET body = '{}' WHERE seq = 2", "DELETE FROM ledger WHERE seq = 3"):
        with pytest.raises(PermanentError, match="append-only"), any_db.write() as c:
            c.execute(statement)
    with pytest.raises(PermanentError, match="append-only"), any_db.write() as c:
        c.execute(  # seq 4 after the genesis hash: a fork, not an extension of the head
            "INSERT INTO ledger (seq, ts, kind, call_id, recording_id, body, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (4, "t", "consent", None, None, "{}", GENESIS_HASH, "f" * 64))
    assert ledger.head() == head and ledger.verify().ok


async def test_group_commit_failure_is_isolated_to_its_caller(any_db):
    ledger = Ledger(any_db)
    catalog = Catalog(any_db, node="n1")
    rec = _rec("r-ok")

    def broken(conn):
        conn.execute("INSERT INTO nope VALUES (1)")

    ok = [asyncio.ensure_future(ledger.append_async("consent", {"i": i})) for i in range(5)]
    with pytest.raises(PermanentError):
        await ledger.append_async("consent", {"bad": 1}, also=broken)
    await ledger.append_async("consent", {"good": 1}, recording_id="r-ok", also=catalog.add_op(rec))
    await asyncio.gather(*ok)
    assert ledger.verify().checked == 6
    assert catalog.get("r-ok").node == "n1"


async def test_a_run_of_appends_goes_in_multi_row_inserts_through_the_triggers(any_db):
    """Appends queued behind a busy writer run together (one head read, a multi-row
    INSERT per table): each row still passes the head trigger, in call order."""
    ledger, catalog = Ledger(any_db), Catalog(any_db, node="n1")
    fill(ledger, 2)
    _, release = hold_writer(any_db)
    queued = [asyncio.ensure_future(ledger.append_async(
        "consent", {"i": i, "caller_hmac": f"h{i % 2}"}, recording_id=f"r{i}",
        also=catalog.add_op(_rec(f"r{i}")))) for i in range(7)]
    while any_db._group._queue.qsize() < 7:  # every append queued behind the held writer
        await asyncio.sleep(0.005)
    batches = any_db._group.batches
    release.set()
    entries = await asyncio.gather(*queued)
    assert any_db._group.batches == batches + 1  # the 7 in one transaction
    assert [e.seq for e in entries] == list(range(3, 10))
    assert ledger.verify().checked == 9
    assert [e.seq for e in ledger.consents_of(["h0"])] == [3, 5, 7, 9]
    assert [catalog.get(f"r{i}").recording_id for i in range(7)] == [f"r{i}" for i in range(7)]


# -- the job queue ------------------------------------------------------------------------------


def _rec(rid: str, **kw) -> Recording:
    return Recording(recording_id=rid, consent_id="c" + rid, uniqueid="u", linkedid="l", channel="PJSIP/1-1",
                     spool_path=f"/spool/{rid}.wav", caller_hmac="ab" * 32, did="100", agent="", rule="r",
                     jurisdiction="ZA", retention_class="default", consent_state="granted",
                     started_at=time.time() - 60, **kw)


def _queue(catalog: Catalog, rid: str) -> None:
    catalog.add(_rec(rid))
    assert catalog.mark_ended(rid, time.time())


def test_a_node_claims_only_its_own_jobs_and_releases_only_its_own_leases(any_db):
    a, b = Catalog(any_db, node="node-a"), Catalog(any_db, node="node-b")
    _queue(a, "ra")
    _queue(b, "rb")
    assert a.get("ra").node == "node-a" and a.get("rb").node == "node-b"
    assert a.next_due() == 0 and b.next_due() == 0
    got_a, got_b = a.claim(lease=300), b.claim(lease=300)
    assert (got_a.recording_id, got_b.recording_id) == ("ra", "rb")
    assert a.claim() is None and b.claim() is None  # own job leased; the other node's is never offered
    # node-a restarts: it frees its own lease only, and picks its job up again
    restarted = Catalog(any_db, node="node-a")
    assert restarted.release_leases() == 1
    assert restarted.claim().recording_id == "ra"
    assert a.get("rb").lease_until > time.time() + 200  # node-b's worker still holds its job
    assert b.claim() is None


def test_concurrent_workers_never_take_the_same_job(any_db):
    catalog = Catalog(any_db, node="n1")
    for i in range(12):
        _queue(catalog, f"r{i:02d}")
    taken: list[str] = []
    lock = threading.Lock()

    def worker():
        while (rec := catalog.claim(lease=300)) is not None:
            with lock:
                taken.append(rec.recording_id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(taken) == [f"r{i:02d}" for i in range(12)]
