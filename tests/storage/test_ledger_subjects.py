"""The consent index ``ledger_subjects`` on both backends: filled with every consent
append (plain and group commit, rolled back with a failed one), backfilled once for a
ledger written before it existed, read through its primary key, and giving exactly
what a full scan of the consent entries gives."""

from __future__ import annotations

import asyncio

import pytest

from archiver.dsar import find_subject
from storage.catalog import Catalog
from storage.ledger import Ledger
from storage.ledger_subjects import query

HMACS = [f"{i:02x}" * 32 for i in range(4)]


def _consent(i: int, caller_hmac: str) -> dict:
    return {"consent_id": f"c{i}", "uniqueid": f"u{i}", "linkedid": f"l{i}", "channel": "PJSIP/x",
            "caller_hmac": caller_hmac, "did": "27215550100", "rule": "za", "jurisdiction": "ZA",
            "mode": "opt-in", "language": "en", "notice": "callvault/notice", "started_at": 1.0 + i,
            "outcome": "granted", "reason": "", "record": False, "recording_id": None, "digits": "1",
            "attempts": 1}


def _fill(ledger: Ledger) -> None:
    for i in range(12):
        ledger.append("consent", _consent(i, HMACS[i % 3]), call_id=f"l{i}")
        ledger.append("audit.play", {"caller_hmac": HMACS[0], "actor": "a"}, recording_id=f"r{i}")

    async def grouped() -> None:
        await asyncio.gather(*(ledger.append_async("consent", _consent(100 + i, HMACS[i % 2]))
                               for i in range(10)))

        def fails(conn) -> None:
            raise RuntimeError("the catalog write failed")

        with pytest.raises(RuntimeError):
            await ledger.append_async("consent", _consent(999, HMACS[3]), also=fails)

    asyncio.run(grouped())


def _full_scan(ledger: Ledger, hmacs: list[str]) -> list[int]:
    return [e.seq for e in ledger.find(kind="consent") if e.data.get("caller_hmac") in hmacs]


def test_consent_index_equals_the_full_scan_and_rolls_back_with_its_entry(any_db):
    ledger = Ledger(any_db)
    _fill(ledger)
    for hmacs in ([HMACS[0]], [HMACS[1], HMACS[2]], HMACS, [HMACS[3]], ["ff" * 32]):
        got = [e.seq for e in ledger.consents_of(hmacs)]
        assert got == _full_scan(ledger, hmacs), hmacs
    assert len(ledger.consents_of([HMACS[0]])) == 4 + 5  # the audit entries carrying the HMAC are not consents
    assert ledger.consents_of([HMACS[3]]) == []  # its entry failed with the catalog write: no index row either
    with any_db.read() as c:
        assert c.execute("SELECT COUNT(*) FROM ledger_subjects").fetchone()[0] == 22
    subject = find_subject(Catalog(any_db, node="t"), ledger, [HMACS[1]])
    assert [c["seq"] for c in subject.consents] == _full_scan(ledger, [HMACS[1]])
    assert {c["consent_id"] for c in subject.consents} == {f"c{i}" for i in range(12) if i % 3 == 1} | {
        f"c{100 + i}" for i in range(10) if i % 2 == 1}


def test_a_ledger_from_before_the_index_is_backfilled_once(any_db):
    ledger = Ledger(any_db)
    _fill(ledger)
    before = {h: [e.seq for e in ledger.consents_of([h])] for h in HMACS}
    with any_db.write() as c:  # the database as the previous release left it
        c.execute("DROP TABLE ledger_subjects")
        c.execute("DELETE FROM schema_version WHERE module = 'ledger_subjects'")
    again = Ledger(any_db)
    assert {h: [e.seq for e in again.consents_of([h])] for h in HMACS} == before
    assert sum(map(len, before.values())) == 22
    again.append("consent", _consent(500, HMACS[3]))
    assert [e.data["consent_id"] for e in again.consents_of([HMACS[3]])] == ["c500"]
    assert Ledger(any_db).consents_of([HMACS[0]]) == again.consents_of([HMACS[0]])  # no second backfill


def test_consents_of_reads_through_the_index(any_db):
    Ledger(any_db)
    explain = "EXPLAIN QUERY PLAN " if any_db.dialect == "sqlite" else "EXPLAIN "
    with any_db.write() as c:
        if any_db.dialect == "postgresql":
            c.execute("SET LOCAL enable_seqscan = off")  # an empty table: make the planner show its index choice
        plan = " ".join(str(row) for row in c.execute(explain + query("seq", 2), HMACS[:2]).fetchall())
    assert "ledger_subjects" in plan and ("PRIMARY KEY" in plan or "ledger_subjects_pkey" in plan), plan
    assert "SCAN ledger_subjects" not in plan and "Seq Scan" not in plan, plan
