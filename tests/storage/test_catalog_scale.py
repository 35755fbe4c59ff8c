"""Catalog queries that run on every call, job, scrape and page read through an index,
on SQLite (EXPLAIN QUERY PLAN) and on PostgreSQL (EXPLAIN), so that none silently
falls back to reading the whole archive; the archived and erased totals stay exact."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

import pytest

from storage.catalog import _INSERT, MIGRATIONS, Catalog, Recording, _values
from storage.dburl import open_database


def _rec(rid: str, **kw) -> Recording:
    return Recording(
        recording_id=rid, consent_id="c" + rid, uniqueid="u" + rid, linkedid="l" + rid, channel="PJSIP/t-1",
        spool_path=f"/var/spool/callvault/{rid}.wav", caller_hmac="ab" * 32, did="100", agent="ann", rule="r",
        jurisdiction="ZA", retention_class="default", consent_state="granted", started_at=1000.0).replace(**kw)


class Recorder:
    """Every statement a Catalog method sends through ``db.read``, with its arguments."""

    def __init__(self, db):
        self.db, self.seen, self._read = db, [], db.read
        db.read = self.read

    @contextmanager
    def read(self):
        with self._read() as conn:
            outer = self

            class Proxy:
                def execute(self, sql, args=()):
                    outer.seen.append((sql, tuple(args)))
                    return conn.execute(sql, args)

            yield Proxy()

    def plans(self, call) -> list[str]:
        """The query plan of each statement ``call()`` runs, as one text per statement."""
        self.seen.clear()
        call()
        out = []
        with self._read() as conn:
            if self.db.dialect == "postgresql":  # a tiny table: make the planner show what it can use
                for knob in ("seqscan", "bitmapscan", "sort"):
                    conn.execute(f"SET enable_{knob} = off")
            for sql, args in self.seen:
                if self.db.dialect == "sqlite":
                    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
                    out.append("\n".join(r[-1] for r in rows))
                else:
                    # The transferred-calls query sorts the agent's few handled calls by design.
                    conn.execute(f"SET enable_sort = {'on' if 'recording_agents' in sql else 'off'}")
                    out.append("\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, args).fetchall()))
            if self.db.dialect == "postgresql":
                for knob in ("seqscan", "bitmapscan", "sort"):
                    conn.execute(f"RESET enable_{knob}")
        return out


def _reads_only(plan: str, *indexes: str) -> None:
    for index in indexes:
        assert index in plan, f"{index} not used:\n{plan}"
    assert "SCAN recordings\n" not in plan + "\n" and "Seq Scan" not in plan, f"reads the whole table:\n{plan}"
    assert "TEMP B-TREE FOR ORDER BY" not in plan and "Sort" not in plan.replace("Sort Key", ""), \
        f"sorts instead of walking the index in order:\n{plan}"


SEARCHES = [
    ({}, "recordings_started"),
    ({"did": "100"}, "recordings_did"),
    ({"agent": "ann"}, "recordings_agent"),
    ({"caller_hmac": "ab" * 32}, "recordings_caller_started"),
    ({"consent_state": "declined"}, "recordings_consent"),
    ({"since": 900.0, "until": 2000.0}, "recordings_started"),
    ({"state": "failed"}, "recordings_state_started"),
    ({"did": "100", "since": 900.0, "until": 2000.0}, "recordings_did"),
    ({"consent_state": "declined", "since": 900.0}, "recordings_consent"),
    ({"did": "100", "consent_state": "declined"}, "recordings_did"),
    ({"did": "100", "agent": "ann"}, "recordings_agent"),
    ({"caller_hmac": "ab" * 32, "did": "100", "agent": "ann"}, "recordings_caller_started"),
    ({"state": "failed", "did": "100"}, "recordings_state_started"),
    ({"state": "archived", "did": "100"}, "recordings_did"),
]


@pytest.fixture
def catalog(any_db):
    catalog = Catalog(any_db, node="n1")
    for i in range(5):
        catalog.add(_rec(f"r{i}", started_at=1000.0 + i))
    return catalog


# The index of each filter. PostgreSQL gets every filter plain and picks by its statistics
# (with bitmap scans off, as here, one filter's index walked newest first).
INDEX_OF = {"did": "recordings_did", "agent": "recordings_agent", "caller_hmac": "recordings_caller_started",
            "consent_state": "recordings_consent", "state": "recordings_state_started",
            "since": "recordings_started", "until": "recordings_started"}


def test_every_supervisor_filter_reads_its_index_newest_first(catalog):
    rec = Recorder(catalog.db)
    for kwargs, index in SEARCHES:
        plan, *transferred = rec.plans(lambda kw=kwargs: catalog.search(**kw, limit=100))
        if catalog.db.dialect == "sqlite" or len({INDEX_OF[k] for k in kwargs}) <= 1:
            _reads_only(plan, index)
        else:
            _reads_only(plan)
            assert any(INDEX_OF[k] in plan for k in kwargs), f"none of {sorted(kwargs)}'s indexes used:\n{plan}"
        # With an agent, a second statement finds the calls the agent took over or handed
        # on: through recording_agents' index, never a walk of the recordings.
        assert len(transferred) == ("agent" in kwargs)
        for other in transferred:
            assert "recording_agents_agent" in other, other
            assert "SCAN recordings\n" not in other + "\n" and "Seq Scan on recordings" not in other, other


def test_job_queue_retention_and_reporting_read_only_their_rows(catalog):
    rec = Recorder(catalog.db)
    counts, totals = rec.plans(catalog.queue_counts)
    assert "recordings_state_started" in counts and "Seq Scan on recordings" not in counts, counts
    assert "recordings" not in totals.replace("recording_totals", ""), totals
    [quarantined] = rec.plans(catalog.quarantined_count)
    _reads_only(quarantined, "recordings_quarantined")
    [retention] = rec.plans(lambda: catalog.retention_due(time.time()))
    assert all(i in retention for i in ("recordings_retain", "recordings_erase", "recordings_leftover")), retention
    assert "SCAN recordings\n" not in retention + "\n" and "Seq Scan" not in retention, retention
    [by_path] = rec.plans(lambda: catalog.by_spool_path("/elsewhere/r1.wav"))
    _reads_only(by_path, "recordings_spool_name")
    [hangup] = rec.plans(lambda: catalog.by_uniqueid("ur1"))
    _reads_only(hangup, "recordings_uniqueid")
    for call in (catalog.last_archived_at, lambda: catalog.archived_since(0.0)):
        [plan] = rec.plans(call)
        _reads_only(plan, "recordings_archived_at")


def test_totals_follow_inserts_moves_and_deletes(catalog):
    catalog.add(_rec("ra", state="archived"))
    catalog.update("r0", state="archived")
    catalog.update("r1", state="archived")
    catalog.update("r1", state="erased")
    catalog.update("r2", state="pending")
    catalog.update("r2", state="pending")  # no move: counted once
    assert catalog.queue_counts() == {"archived": 2, "erased": 1, "pending": 1, "recording": 2}
    with catalog.db.write() as c:
        c.execute("DELETE FROM recordings WHERE recording_id IN ('ra', 'r1')")
    assert catalog.queue_counts() == {"archived": 1, "pending": 1, "recording": 2}


def test_the_migration_counts_and_names_rows_it_finds(any_db):
    any_db.migrate("catalog", {dialect: scripts[:3] for dialect, scripts in MIGRATIONS.items()})
    with any_db.write() as c:
        for rec in (_rec("r1", state="archived"), _rec("r2", state="archived", spool_path="r2.wav"),
                    _rec("r3", state="erased"), _rec("r4", state="failed")):
            c.execute(_INSERT.sql(1), _values(rec))
    catalog = Catalog(any_db, node="n1")
    assert catalog.queue_counts() == {"archived": 2, "erased": 1, "failed": 1}
    assert catalog.by_spool_path("/chroot/var/spool/callvault/r1.wav").recording_id == "r1"
    assert catalog.by_spool_path("/var/spool/callvault/r2.wav").recording_id == "r2"


def test_by_spool_path_prefers_the_exact_path(catalog):
    catalog.add(_rec("other", spool_path="/chroot/var/spool/callvault/r3.wav"))
    assert catalog.by_spool_path("/chroot/var/spool/callvault/r3.wav").recording_id == "other"
    assert catalog.by_spool_path("/var/spool/callvault/r3.wav").recording_id == "r3"


def _index_buffers(plan: str, index: str) -> int:
    """Shared buffers (hit + read) of the plan node that scans ``index``."""
    node = plan.split(f"using {index} on")[1].split("->")[0]
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", node.split("Buffers:")[1].split("\n")[0]))


def test_retention_on_postgresql_reads_the_due_rows_not_the_archive(pg_url):
    """Version 6: PostgreSQL leaves out of an index search the condition its WHERE implies
    (``state = 'archived'``), so version 5's ``(state, retain_until)`` was read from its first
    entry to its last to find the due rows; keyed on ``retain_until`` it reads those alone."""
    db = open_database(pg_url)
    try:
        db.migrate("catalog", {dialect: scripts[:5] for dialect, scripts in MIGRATIONS.items()})
        for first in range(1, 6001, 1000):  # 6,000 archived rows, the first 5 due
            with db.write() as c:
                c.execute("INSERT INTO recordings (recording_id, consent_id, uniqueid, linkedid, channel, spool_path, "
                          "caller_hmac, did, rule, jurisdiction, retention_class, consent_state, started_at, state, "
                          "retain_until) SELECT 'r' || i, 'c' || i, 'u' || i, 'l' || i, 'PJSIP/t-1', 'r' || i || '.wav', "
                          "'ab', '100', 'r', 'ZA', 'default', 'granted', i, 'archived', "
                          "CASE WHEN i <= 5 THEN i ELSE 1e10 END FROM generate_series(?::int, ?::int) AS g(i)",
                          (first, first + 999))
        catalog = Catalog(db, node="n1")  # to the current version
        with db.write() as c:
            c.execute("ANALYZE recordings")
        rec = Recorder(db)
        assert [r.recording_id for r, _ in catalog.retention_due(100.0)] == [f"r{i}" for i in range(1, 6)]
        [(sql, args)] = rec.seen
        with db.read() as c:
            plan = "\n".join(r[0] for r in c.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, args).fetchall())
        # Version 5 read every leaf of the index (33 buffers here); now the root, a leaf, the 5 rows.
        assert _index_buffers(plan, "recordings_retain") <= 10, plan
    finally:
        db.close()


def test_queue_totals_are_read_by_key_however_bloated_the_table(pg_url):
    """The two totals rows are read through their primary key: a table left with the pages
    of thousands of dead versions (updates while a long transaction held pruning back, a
    bulk load) was read end to end by every ``queue_counts`` (4,745 pages, 12 ms, after
    the 2,000,000-row bench load)."""
    db = open_database(pg_url)
    try:
        catalog = Catalog(db, node="n1")
        with db.write() as c:
            for _ in range(3000):
                c.execute("UPDATE recording_totals SET n = n + 1 WHERE state = 'archived'")
        with db.write() as c:
            c.execute("ANALYZE recording_totals")
        assert catalog.queue_counts() == {"archived": 3000}
        rec = Recorder(db)
        catalog.queue_counts()
        _, (sql, args) = rec.seen
        with db.read() as c:
            plan = "\n".join(r[0] for r in c.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, args).fetchall())
        assert "recording_totals_pkey" in plan and "Seq Scan" not in plan, plan
    finally:
        db.close()


def test_rows_without_agent_or_archive_time_stay_out_of_those_indexes(catalog):
    """A row as the consent handler inserts it (no agent, not archived) adds nothing to
    recordings_agent and recordings_archived_at; a search by agent still finds its rows."""
    catalog.add(_rec("live", agent="", started_at=2000.0))
    sql = ("SELECT name, sql FROM sqlite_master WHERE type = 'index'" if catalog.db.dialect == "sqlite"
           else "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'recordings'")
    with catalog.db.read() as c:
        defs = dict(c.execute(sql).fetchall())
    assert re.search(r"WHERE \(?agent <> ''", defs["recordings_agent"]), defs["recordings_agent"]
    assert re.search(r"WHERE \(?archived_at IS NOT NULL", defs["recordings_archived_at"]), defs["recordings_archived_at"]
    assert {r.recording_id for r in catalog.search(agent="ann")} == {f"r{i}" for i in range(5)}
    assert [r.recording_id for r in catalog.search(agent="")] == ["live"]
    assert catalog.last_archived_at() is None
    catalog.update("r2", state="archived", archived_at=5000.0)
    assert catalog.last_archived_at() == 5000.0
