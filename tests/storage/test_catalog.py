"""The catalog's job-queue and reporting queries, on SQLite and on PostgreSQL."""

from __future__ import annotations

import secrets
import time

import pytest

from storage.catalog import Catalog, Recording


@pytest.fixture
def catalog(any_db):
    """Both backends: these queries are part of the conformance suite."""
    return Catalog(any_db, node="n1")


def add(catalog: Catalog, **changes) -> str:
    rid = "r" + secrets.token_hex(12)
    catalog.add(Recording(
        recording_id=rid, consent_id="c" + rid[1:], uniqueid="u1", linkedid="l1", channel="Local/1@x-1;2",
        spool_path=f"/spool/{rid}.wav", caller_hmac="ab" * 32, did="100", agent="", rule="r",
        jurisdiction="ZA", retention_class="default", consent_state="granted", started_at=time.time() - 60))
    if changes:
        catalog.update(rid, **changes)
    return rid


def test_retry_now_makes_backed_off_jobs_due_but_not_leased_or_finished_ones(catalog):
    now = time.time()
    waiting = add(catalog, state="uploading", attempts=3, next_try_at=now + 120)
    leased = add(catalog, state="uploading", attempts=1, next_try_at=now + 120, lease_until=now + 300)
    due = add(catalog, state="pending", next_try_at=0)
    done = add(catalog, state="archived", attempts=2, next_try_at=now + 120)
    assert catalog.retrying_count() == 2
    assert catalog.retry_now(now) == 1
    assert catalog.get(waiting).next_try_at == 0
    assert catalog.get(leased).next_try_at == now + 120
    assert catalog.get(done).next_try_at == now + 120
    # Both due now (next_try_at 0): the one that started first goes first; nothing else is due.
    assert [catalog.claim(now=now).recording_id, catalog.claim(now=now).recording_id] == [waiting, due]
    assert catalog.claim(now=now) is None


def test_release_leases_frees_jobs_a_killed_process_held(catalog):
    now = time.time()
    rid = add(catalog, state="encrypting", lease_until=now + 300)
    assert catalog.claim(now=now) is None
    assert catalog.release_leases() == 1
    assert catalog.claim(now=now).recording_id == rid


def test_retention_due_says_why_and_skips_holds(catalog):
    now = time.time()
    expired = add(catalog, state="archived", retain_until=now - 10)
    erase = add(catalog, state="archived", retain_until=now + 1e6, erase_requested=1)
    add(catalog, state="archived", retain_until=now - 10, legal_hold=1)
    add(catalog, state="archived", retain_until=now + 1e6)
    leftover = add(catalog, state="erased", object_key="rec/x", retain_until=now - 5)
    got = [(rec.recording_id, why) for rec, why in catalog.retention_due(now)]
    assert got == [(expired, "retention"), (leftover, "leftover"), (erase, "erase")]


def test_archive_reporting(catalog):
    assert catalog.last_archived_at() is None
    now = time.time()
    a = add(catalog, state="archived", ended_at=now - 30, archived_at=now - 28)
    add(catalog, state="archived", ended_at=now - 20, archived_at=now - 19)
    assert catalog.last_archived_at() == now - 19
    assert catalog.archived_since(now - 29) == [(now - 28, pytest.approx(2.0)), (now - 19, pytest.approx(1.0))]
    assert catalog.archived_since(now - 19) == []
    assert catalog.get(a).archived_at == now - 28


def test_by_spool_path_matches_the_file_name_literally(catalog):
    """The other-root match (Asterisk's path vs ours) compares the name as text: `_` and
    `%` in a name are not LIKE wildcards that would pick another recording."""
    rid = add(catalog)
    rec = catalog.get(rid)
    catalog.add(rec.replace(recording_id="r-wild", spool_path="/spool/call-1.wav"))
    assert catalog.by_spool_path("/spool/call-1.wav").recording_id == "r-wild"
    assert catalog.by_spool_path("/chroot/spool/call-1.wav").recording_id == "r-wild"
    assert catalog.by_spool_path("/spool/call_1.wav") is None
    assert catalog.by_spool_path("/spool/%.wav") is None
    assert catalog.by_spool_path("/spool/call-%") is None


def test_agent_spans_are_stored_once_closed_in_any_order_and_found_by_search(catalog):
    from storage.catalog import AgentSpan

    transferred, other = add(catalog, agent="tina"), add(catalog, agent="ursula")
    tina, tom = AgentSpan("tina", 100.0), AgentSpan("tom", 130.5)
    catalog.note_agent([transferred], tina)
    # The close of tom's span may be written before its opening: a known end is kept.
    catalog.note_agent([transferred], AgentSpan("tom", 130.5, 190.25))
    catalog.note_agent([transferred], tom)
    catalog.note_agent([transferred], AgentSpan("tina", 100.0, 130.0))
    catalog.note_agent([transferred], tina)  # again: idempotent
    assert catalog.agents_of([transferred, other]) == {
        transferred: [AgentSpan("tina", 100.0, 130.0), AgentSpan("tom", 130.5, 190.25)], other: []}
    # Search by agent: the first agent (the agent column) and every later one.
    assert [r.recording_id for r in catalog.search(agent="tom")] == [transferred]
    assert [r.recording_id for r in catalog.search(agent="tina")] == [transferred]
    assert [r.recording_id for r in catalog.search(agent="ursula")] == [other]
    assert catalog.search(agent="nobody") == []
    assert catalog.agents_of([]) == {}
