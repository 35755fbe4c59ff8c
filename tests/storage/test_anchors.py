"""Ledger anchors on every store (local and real RGW) with a real SQLite ledger: a
deleted tail, a chain rebuilt from scratch and an older copy of the database each
fail against the anchors, naming the anchor's key and the entry."""

from __future__ import annotations

import datetime
import io
import sqlite3

import pytest
from ledgerhelpers import fill

from appliance.anchoring import AnchorKeeper
from storage.anchors import (
    Anchor,
    anchors_in,
    load_dir,
    read_anchor,
    save_anchor,
    write_anchor,
)
from storage.dburl import open_database
from storage.errors import IntegrityError, RetentionError
from storage.ledger import Ledger


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(db_path):
    db = open_database(f"sqlite:///{db_path}")
    yield Ledger(db)
    db.close()


def tamper(db_path, *statements):
    conn = sqlite3.connect(db_path)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def checks(store):
    return [(a.seq, a.hash, a.key) for a in anchors_in(store, "node-1")]


def anchor_head(store, ledger):
    return write_anchor(store, *ledger.head(), "node-1", "7y")


def test_anchor_object_is_locked_and_listed(store, ledger):
    fill(ledger, 5)
    digest = ledger.head()[1]
    a = anchor_head(store, ledger)
    assert a.key == f"anchors/node-1/000000000005-{digest}.json"
    info = store.head(a.key)
    assert info.retention.mode == "COMPLIANCE"
    years = (info.retention.until - datetime.datetime.now(datetime.UTC)).days / 365
    assert 6.9 < years < 7.1
    with pytest.raises(RetentionError):
        store.delete(a.key)
    assert read_anchor(store, a) == a and a.time
    assert anchor_head(store, ledger).key == a.key  # the same head again: the object stays one
    fill(ledger, 2)
    b = anchor_head(store, ledger)
    assert anchors_in(store, "node-1") == [Anchor(5, digest, "node-1"), Anchor(7, b.hash, "node-1")]
    assert anchors_in(store, "node-2") == []
    assert ledger.verify(anchors=checks(store)).ok
    assert ledger.verify_since(checks(store)).ok


def test_deleted_tail_fails(store, db_path, ledger):
    fill(ledger, 6)
    a = anchor_head(store, ledger)
    tamper(db_path, "DELETE FROM ledger WHERE seq >= 5")
    assert ledger.verify().ok  # the file alone cannot tell
    for result in (ledger.verify(anchors=checks(store)), ledger.verify_since(checks(store))):
        assert not result.ok and result.bad_seq in (5, 6)
        assert a.key in result.reason and "entry 6" in result.reason


def test_rewritten_chain_fails(store, db_path, ledger):
    fill(ledger, 4)
    a = anchor_head(store, ledger)
    tamper(db_path, "DROP TABLE ledger", "DELETE FROM schema_version WHERE module = 'ledger'")
    db = open_database(f"sqlite:///{db_path}")
    try:
        forged = Ledger(db)
        for i in range(6):
            forged.append("consent", {"forged": i})
        assert forged.verify().ok
        for result in (forged.verify(anchors=checks(store)), forged.verify_since(checks(store))):
            assert not result.ok and result.bad_seq == 4
            assert a.key in result.reason and "rewritten" in result.reason
    finally:
        db.close()


def test_swapped_older_database_fails(store, db_path, tmp_path, ledger):
    fill(ledger, 3)
    old = tmp_path / "old.db"
    with sqlite3.connect(db_path) as src, sqlite3.connect(old) as dst:
        src.backup(dst)  # an older copy (a backup), internally perfect
    anchor_head(store, ledger)
    fill(ledger, 3)
    a = anchor_head(store, ledger)
    db = open_database(f"sqlite:///{old}")
    try:
        swapped = Ledger(db)
        assert swapped.verify().ok
        for result in (swapped.verify(anchors=checks(store)), swapped.verify_since(checks(store))):
            assert not result.ok and a.key in result.reason and "entry 6" in result.reason
    finally:
        db.close()


def test_verify_since_walks_only_from_the_newest_anchor(store, db_path, ledger):
    fill(ledger, 10)
    first = anchor_head(store, ledger)
    fill(ledger, 5)
    anchor_head(store, ledger)
    fill(ledger, 3)
    result = ledger.verify_since(checks(store))
    assert result.ok and result.checked == 4 and result.head == ledger.head()  # entry 15 and 16..18
    # An entry after the newest anchor, edited: found.
    tamper(db_path, "UPDATE ledger SET body = '{\"n\":99}' WHERE seq = 17")
    assert ledger.verify_since(checks(store)).bad_seq == 17
    # The older anchor's entry re-hashed in place: found by the point check.
    tamper(db_path, f"UPDATE ledger SET hash = '{'e' * 64}' WHERE seq = 10")
    result = ledger.verify_since(checks(store))
    assert result.bad_seq == 10 and first.key in result.reason


def test_saved_anchors_check_an_export_offline(store, tmp_path, ledger):
    from storage.chain import verify_jsonl

    fill(ledger, 5)
    a = anchor_head(store, ledger)
    saved = tmp_path / "saved"
    path = save_anchor(store, a, saved)
    assert path == saved / "node-1" / a.name and load_dir(saved) == [read_anchor(store, a)]
    out = io.BytesIO()
    ledger.export_jsonl(out)
    lines = out.getvalue().splitlines(keepends=True)
    anchors = [(x.seq, x.hash, x.key) for x in load_dir(saved)]
    assert verify_jsonl(io.BytesIO(b"".join(lines)), anchors=anchors).ok
    short = verify_jsonl(io.BytesIO(b"".join(lines[:-1])), anchors=anchors)
    assert not short.ok and a.key in short.reason
    path.rename(path.with_name(f"000000000004-{a.hash}.json"))  # a name that lies about its body
    with pytest.raises(IntegrityError, match="does not match its name"):
        load_dir(saved)


def test_keeper_anchors_every_n_entries_or_interval_and_never_a_tampered_chain(store, db_path, ledger):
    now = [0.0]
    keeper = AnchorKeeper(ledger, store, node="node-1", every=3, interval=60.0, retention="1d",
                          clock=lambda: now[0])
    assert keeper.step() is None and keeper.anchored_seq == 0  # first step: check, nothing to anchor
    fill(ledger, 2)
    assert keeper.step() is None  # 2 < every, interval not over
    fill(ledger, 1)
    assert keeper.step().seq == 3
    fill(ledger, 1)
    assert keeper.step() is None
    now[0] = 61.0
    assert keeper.step().seq == 4  # interval over
    assert [a.seq for a in anchors_in(store, "node-1")] == [3, 4]
    tamper(db_path, "DELETE FROM ledger WHERE seq = 4")
    fill(ledger, 4)  # the head moves on past the hole, 3 entries past the anchor
    assert keeper.step() is None and keeper.check_failures == 1
    assert [a.seq for a in anchors_in(store, "node-1")] == [3, 4]
    # A keeper started later reads the anchors back from the store.
    fresh = AnchorKeeper(ledger, store, node="node-1", every=3, interval=60.0, retention="1d")
    assert fresh.step(force=True) is None and fresh.anchored_seq == 4 and fresh.check_failures == 1


def test_keeper_polling_on_the_loop_hands_off_to_a_thread_only_when_an_anchor_is_due(store, ledger):
    """SQLite: the head is read on the event loop each poll; a worker thread runs only to anchor."""
    import asyncio
    import threading

    steps: list[str] = []

    class Counting(AnchorKeeper):
        def step(self, force: bool = False):
            steps.append(threading.current_thread().name)
            return super().step(force)

    async def main() -> None:
        keeper = Counting(ledger, store, node="node-1", every=3, interval=60.0, retention="1d")
        task = asyncio.create_task(keeper.run(0.02, check_on_loop=True))
        await asyncio.sleep(0.2)
        assert len(steps) == 1  # the first step (what happened while down); then nothing due
        fill(ledger, 3)
        for _ in range(100):
            if keeper.anchored_seq == 3:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert keeper.anchored_seq == 3 and [a.seq for a in anchors_in(store, "node-1")] == [3]
        assert len(steps) == 2 and threading.main_thread().name not in steps

    asyncio.run(main())
