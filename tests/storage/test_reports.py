"""Report queries on both backends (``any_db``): ledger kinds read by prefix through the
kind index, the time window, and the retention table."""

from __future__ import annotations

import datetime
import time

from storage.catalog import Catalog, Recording
from storage.ledger import Ledger
from storage.reports import ERASURE_PREFIXES, Reports, entries_query, parse_when


def test_kinds_by_prefix_window_and_retention_on_both_backends(any_db):
    ledger, catalog = Ledger(any_db), Catalog(any_db)
    for kind in ("erase", "erase.request", "erasure.note", "eraser", "audit.export", "audit.exported.x",
                 "audit.play", "objection.received", "objections", "objection.upheld", "retention.delete"):
        ledger.append(kind, {"actor": "olga", "reason": kind})
    reports = Reports(any_db)
    assert [r[1] for r in reports.erasures().rows] == ["erase", "erase.request", "eraser", "audit.export",
                                                        "audit.exported.x"]
    assert [r[1] for r in reports.objections().rows] == ["objection.received", "objection.upheld"]
    assert [r[1] for r in reports.access().rows] == ["audit.play"]
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert len(reports.run("erasures", parse_when(today, end=False), parse_when(today, end=True)).rows) == 5
    assert reports.run("erasures", parse_when(today, end=True), None).rows == []

    now = time.time()
    for i, (cls, state, key) in enumerate((("default", "archived", "k"), ("legal", "archived", "k"),
                                           ("default", "erased", ""), ("default", "erased", "k"))):
        catalog.add(Recording(recording_id=f"r{i}", consent_id="c", uniqueid="u", linkedid="l", channel="",
                              spool_path="", caller_hmac="ab" * 32, did="", agent="", rule="za", jurisdiction="ZA",
                              retention_class=cls, consent_state="granted", started_at=now))
        catalog.update(f"r{i}", state=state, object_key=key, retain_until=now + 86400 * (10 - i))
    rows = reports.retention().as_dicts()
    assert [(r["retention_class"], r["recording_id"]) for r in rows] == [("default", "r3"), ("default", "r0"),
                                                                         ("legal", "r1")]
    soon = datetime.datetime.fromtimestamp(now + 86400 * 8, datetime.UTC)
    assert [r[1] for r in reports.retention(None, soon).rows] == ["r3"]


def test_ledger_reports_read_through_the_kind_index(any_db):
    Ledger(any_db)
    sql, params = entries_query(("audit.play",), ERASURE_PREFIXES, None, None)
    explain = "EXPLAIN QUERY PLAN " if any_db.dialect == "sqlite" else "EXPLAIN "
    with any_db.write() as c:
        if any_db.dialect == "postgresql":
            c.execute("SET LOCAL enable_seqscan = off")  # an empty table: make the planner show its index choice
        plan = " ".join(str(row) for row in c.execute(explain + sql, params).fetchall())
    assert "ledger_kind" in plan, plan
