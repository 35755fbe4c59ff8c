"""The recordings catalog and the archive job queue, in the catalog database.

A recording row exists from the moment consent allows MixMonitor to start; its
``state`` then follows the archive job:

    recording -> pending -> encrypting -> uploading -> verifying -> archived
                                   \\-> failed (dead letter after max attempts;
                                              spool file quarantined, quarantined_at)

Each transition is one committed write, so after a crash a job resumes from the
last state it reached; every step is idempotent (see archiver/pipeline.py). Jobs
are claimed with a lease (``lease_until``) so a worker that died releases its job
when the lease runs out.

A recording's job belongs to the node whose spool holds the file (column ``node``,
``[node] name``): :meth:`Catalog.claim` takes only this node's jobs, and
:meth:`Catalog.release_leases` (at start-up) frees only this node's leases, so on a
shared PostgreSQL database a restarted node picks up its own work and never another
node's. On PostgreSQL the claim's ``SELECT`` is ``FOR UPDATE SKIP LOCKED``: workers
of one node (or two processes of it) never wait on, nor take, the same row. Rows from
before nodes existed (``node = ''``) are anyone's.

No phone numbers are stored: callers are kept as a keyed HMAC.
"""

from __future__ import annotations

import json
import operator
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from .catalog_indexes import COUNTED, PG_V5, PG_V6, SQLITE_V5, SQLITE_V6, V7
from .db import Database
from .entries import ConsentBody
from .errors import NotFound
from .record import Record
from .rows import MultiInsert, RowInsert

STATES = ("recording", "pending", "encrypting", "uploading", "verifying", "archived",
          "failed", "erased")
ACTIVE = ("pending", "encrypting", "uploading", "verifying")

_V1 = """
    CREATE TABLE recordings (
        recording_id    TEXT PRIMARY KEY,
        consent_id      TEXT NOT NULL,
        uniqueid        TEXT NOT NULL,
        linkedid        TEXT NOT NULL,
        channel         TEXT NOT NULL,
        spool_path      TEXT NOT NULL,
        caller_hmac     TEXT NOT NULL,
        did             TEXT NOT NULL,
        agent           TEXT NOT NULL DEFAULT '',
        rule            TEXT NOT NULL,
        jurisdiction    TEXT NOT NULL,
        retention_class TEXT NOT NULL,
        consent_state   TEXT NOT NULL,
        started_at      REAL NOT NULL,
        ended_at        REAL,
        state           TEXT NOT NULL DEFAULT 'recording',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_try_at     REAL NOT NULL DEFAULT 0,
        lease_until     REAL NOT NULL DEFAULT 0,
        last_error      TEXT NOT NULL DEFAULT '',
        erase_requested INTEGER NOT NULL DEFAULT 0,
        legal_hold      INTEGER NOT NULL DEFAULT 0,
        object_key      TEXT NOT NULL DEFAULT '',
        header_key      TEXT NOT NULL DEFAULT '',
        version_id      TEXT NOT NULL DEFAULT '',
        retain_until    REAL,
        manifest        TEXT NOT NULL DEFAULT '',
        archived_at     REAL,
        paused          TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX recordings_state ON recordings(state, next_try_at);
    CREATE INDEX recordings_linkedid ON recordings(linkedid);
    CREATE INDEX recordings_caller ON recordings(caller_hmac);
    CREATE INDEX recordings_started ON recordings(started_at);
    """
_V2 = """
    ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT '';
    CREATE INDEX recordings_node ON recordings(node, state, next_try_at);
    """

# When a dead letter's spool file went into quarantine (archiver/quarantine.py).
_V3 = "ALTER TABLE recordings ADD COLUMN quarantined_at REAL;"

# Every agent who handled a recording's call, with when (transfers: one row per span).
_V4 = """
    CREATE TABLE recording_agents (
        recording_id TEXT NOT NULL,
        agent        TEXT NOT NULL,
        joined_at    REAL NOT NULL,
        left_at      REAL,
        PRIMARY KEY (recording_id, agent, joined_at)
    );
    CREATE INDEX recording_agents_agent ON recording_agents(agent);
    """

# Version 5 (storage/catalog_indexes.py): an index for every recurring query, the
# archived and erased totals kept by triggers. Version 6: PostgreSQL's retention indexes
# keyed on retain_until alone. Version 7: the agent and archived_at indexes hold only rows
# that have one (a new row costs two index inserts fewer).
MIGRATIONS = {"sqlite": [_V1, _V2, _V3, _V4, SQLITE_V5, SQLITE_V6, V7],
              "postgresql": [_V1.replace("REAL", "DOUBLE PRECISION"), _V2, _V3.replace("REAL", "DOUBLE PRECISION"),
                             _V4.replace("REAL", "DOUBLE PRECISION"), PG_V5, PG_V6, V7]}


class AgentSpan(Record):
    """An agent on a recording's call from ``joined_at`` to ``left_at`` (None: still on it)."""

    agent: str
    joined_at: float
    left_at: float | None = None


class Recording(Record):
    """One recording's catalog row: its call, its consent and where its file and archive are."""

    recording_id: str
    consent_id: str
    uniqueid: str
    linkedid: str
    channel: str
    spool_path: str
    caller_hmac: str
    did: str
    agent: str
    rule: str
    jurisdiction: str
    retention_class: str
    consent_state: str
    started_at: float
    ended_at: float | None = None
    state: str = "recording"
    attempts: int = 0
    next_try_at: float = 0.0
    lease_until: float = 0.0
    last_error: str = ""
    erase_requested: int = 0
    legal_hold: int = 0
    object_key: str = ""
    header_key: str = ""
    version_id: str = ""
    retain_until: float | None = None
    manifest: str = ""
    archived_at: float | None = None
    paused: str = "[]"
    node: str = ""  # whose spool holds the file; set by Catalog.add when empty
    quarantined_at: float | None = None

    @property
    def pause_intervals(self) -> list[list[float | None]]:
        return json.loads(self.paused)

    @classmethod
    def from_consent(cls, consent: ConsentBody, *, spool_path: str, retention_class: str,
                     consent_state: str, started_at: float, erase_requested: int = 0,
                     recording_id: str | None = None) -> Recording:
        """The row of the recording that ``consent`` allowed, MixMonitor writing
        ``spool_path``; its id is ``recording_id`` if given, else the consent's.

        ``consent_state``: ``granted`` when the consent handler starts the recording
        (for an implied consent too); the consent's outcome (or ``revoked``) when the
        archiver rebuilds a lost row from the ledger.
        """
        return cls(
            recording_id=recording_id or consent.recording_id or "", consent_id=consent.consent_id,
            uniqueid=consent.uniqueid, linkedid=consent.linkedid, channel=consent.channel, spool_path=spool_path,
            caller_hmac=consent.caller_hmac, did=consent.did, agent="", rule=consent.rule,
            jurisdiction=consent.jurisdiction, retention_class=retention_class, consent_state=consent_state,
            started_at=started_at, erase_requested=erase_requested)


_COLUMNS = list(Recording._fields)
_NODE = _COLUMNS.index("node")
_INSERT = MultiInsert("recordings", _COLUMNS, "ON CONFLICT DO NOTHING")
_ACTIVE = f"state IN ({', '.join('?' for _ in ACTIVE)})"
# The states a row leaves again (counted over the state index); the others are COUNTED.
_PASSING = tuple(s for s in STATES if s not in COUNTED)


_VALUES = operator.itemgetter(*_COLUMNS)  # one C call per row, not a getattr per column


def _values(rec: Recording) -> tuple[Any, ...]:
    return _VALUES(rec.__dict__)


def _row(r: Any) -> Recording:
    return Recording(**dict(zip(_COLUMNS, r)))


def default_node() -> str:
    """``[node] name`` when none is configured: the host name (what gethostname(2)
    returns, without loading the socket module into every classic AGI call)."""
    return os.uname().nodename


class Catalog:
    def __init__(self, db: Database, *, node: str | None = None):
        self.db = db
        self.node = node or default_node()
        db.migrate("catalog", MIGRATIONS)

    # -- recordings ----------------------------------------------------------
    def add(self, rec: Recording) -> None:
        """Register a recording that MixMonitor is starting (idempotent); it belongs to
        this node unless ``rec.node`` says otherwise."""
        with self.db.write() as c:
            self.add_op(rec)(c)

    async def add_async(self, rec: Recording) -> None:
        """:meth:`add` through the group-commit writer: durable when it returns."""
        await self.db.write_async(self.add_op(rec))

    def add_op(self, rec: Recording) -> RowInsert:
        """:meth:`add` as a write operation for another transaction (``Ledger.append_async(also=)``,
        which merges those of one batch into multi-row inserts)."""
        values = _values(rec)
        if not rec.node:
            values = values[:_NODE] + (self.node,) + values[_NODE + 1:]
        return RowInsert(_INSERT, values)

    def get(self, recording_id: str) -> Recording:
        with self.db.read() as c:
            row = c.execute(f"SELECT {', '.join(_COLUMNS)} FROM recordings WHERE recording_id = ?",
                            (recording_id,)).fetchone()
        if row is None:
            raise NotFound(f"recording {recording_id}")
        return _row(row)

    def by_linkedid(self, linkedid: str) -> list[Recording]:
        return self._select("WHERE linkedid = ? ORDER BY started_at", (linkedid,))

    def by_uniqueid(self, uniqueid: str) -> list[Recording]:
        return self._select("WHERE uniqueid = ? ORDER BY started_at", (uniqueid,))

    def by_spool_path(self, path: str) -> Recording | None:
        """The recording whose spool file is ``path``, or has its file name under another
        root (Asterisk's view of the spool vs ours): the exact path first."""
        found = self._select("WHERE spool_name = ?", (path.rsplit("/", 1)[-1],))
        return next((r for r in found if r.spool_path == path), found[0] if found else None)

    def search(self, *, since: float | None = None, until: float | None = None,
               caller_hmac: str | None = None, did: str | None = None, agent: str | None = None,
               consent_state: str | None = None, state: str | None = None,
               limit: int = 200) -> list[Recording]:
        where, args = [], []
        for col, op, val in (("started_at", ">=", since), ("started_at", "<", until)):
            if val is not None:
                where.append(f"{col} {op} ?")
                args.append(val)
        # Equality filters, most selective first (a state that rows leave again, such as
        # failed, before any other). SQLite has no statistics to choose by: the first picks
        # the index (column, started_at); the others are written so that no index serves
        # them and are checked on the rows that index yields, newest first. PostgreSQL's
        # planner has statistics (ANALYZE) and gets them all plain: two filters that each
        # match thousands of rows are combined from both indexes (BitmapAnd) first.
        equal = {col: val for col, val in (("caller_hmac", caller_hmac), ("agent", agent), ("did", did),
                                           ("consent_state", consent_state), ("state", state)) if val is not None}
        first = [where.copy(), args.copy()]
        hide = self.db.dialect == "sqlite"
        for i, col in enumerate(sorted(equal, key=lambda col: col != "state" or state in COUNTED)):
            where.append(f"{col} || '' = ?" if i and hide else f"{col} = ?")
            args.append(equal[col])
            if col == "agent" and agent and not (i and hide):
                where.append("agent <> ''")  # recordings_agent holds only rows with an agent
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        found = self._select(f"{clause} ORDER BY started_at DESC LIMIT ?", (*args, limit))
        if agent is None:
            return found
        # Calls the agent took over or handed on (transfers): few per agent, found through
        # recording_agents and sorted; then both lists merged, newest first.
        where, args = first
        where.append("recording_id IN (SELECT recording_id FROM recording_agents WHERE agent = ?)")
        args.append(agent)
        for col, val in equal.items():
            if col != "agent":
                where.append(f"{col} || '' = ?")
                args.append(val)
        where.append("agent || '' <> ?")
        args.append(agent)
        handled = self._select(f"WHERE {' AND '.join(where)} ORDER BY started_at DESC LIMIT ?", (*args, limit))
        return sorted(found + handled, key=lambda r: r.started_at, reverse=True)[:limit]

    def _select(self, clause: str, args: Iterable[Any]) -> list[Recording]:
        with self.db.read() as c:
            rows = c.execute(f"SELECT {', '.join(_COLUMNS)} FROM recordings {clause}", tuple(args)).fetchall()
        return [_row(r) for r in rows]

    # -- agents --------------------------------------------------------------------
    def note_agent(self, recording_ids: Iterable[str], span: AgentSpan) -> None:
        """Store (or close) ``span`` for each recording. Idempotent and order-free: a span is
        keyed by (recording, agent, joined_at), and a known ``left_at`` is never unset."""
        rows = [(rid, span.agent, span.joined_at, span.left_at) for rid in recording_ids]
        with self.db.write() as c:
            for row in rows:
                c.execute("INSERT INTO recording_agents (recording_id, agent, joined_at, left_at) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (recording_id, agent, joined_at) DO UPDATE SET "
                          "left_at = COALESCE(excluded.left_at, recording_agents.left_at)", row)

    def agents_of(self, recording_ids: list[str]) -> dict[str, list[AgentSpan]]:
        """Every agent who handled each recording's call, in the order they joined."""
        out: dict[str, list[AgentSpan]] = {rid: [] for rid in recording_ids}
        if not recording_ids:
            return out
        with self.db.read() as c:
            rows = c.execute("SELECT recording_id, agent, joined_at, left_at FROM recording_agents WHERE recording_id "
                             f"IN ({', '.join('?' for _ in recording_ids)}) ORDER BY joined_at, agent",
                             tuple(recording_ids)).fetchall()
        for rid, agent, joined_at, left_at in rows:
            out[rid].append(AgentSpan(agent, joined_at, left_at))
        return out

    def update(self, recording_id: str, **changes: Any) -> None:
        with self.db.write() as c:
            self.update_op(recording_id, **changes)(c)

    def update_op(self, recording_id: str, **changes: Any) -> Callable[[Any], None]:
        """:meth:`update` as a write operation for another transaction (``Ledger.append(also=)``)."""
        bad = set(changes) - set(_COLUMNS)
        if bad:
            raise ValueError(f"unknown recording columns: {sorted(bad)}")
        sql = f"UPDATE recordings SET {', '.join(f'{k} = ?' for k in changes)} WHERE recording_id = ?"
        args = (*changes.values(), recording_id)

        def update(c: Any) -> None:
            if c.execute(sql, args).rowcount == 0:
                raise NotFound(f"recording {recording_id}")

        return update

    def mark_ended(self, recording_id: str, ended_at: float, due: float = 0.0) -> bool:
        """The recording has ended: queue it (once), due at ``due`` (at once by default).
        True if this call queued it."""
        with self.db.write() as c:
            cur = c.execute("UPDATE recordings SET state = 'pending', ended_at = ?, next_try_at = ? "
                            "WHERE recording_id = ? AND state = 'recording'", (ended_at, due, recording_id))
            return cur.rowcount == 1

    def add_pause(self, recording_id: str, at: float) -> None:
        rec = self.get(recording_id)
        spans = rec.pause_intervals
        if spans and spans[-1][1] is None:
            return  # already paused
        spans.append([at, None])
        self.update(recording_id, paused=json.dumps(spans))

    def end_pause(self, recording_id: str, at: float) -> None:
        rec = self.get(recording_id)
        spans = rec.pause_intervals
        if spans and spans[-1][1] is None:
            spans[-1][1] = at
            self.update(recording_id, paused=json.dumps(spans))

    # -- job queue -------------------------------------------------------------
    def claim(self, *, now: float | None = None, lease: float = 300.0) -> Recording | None:
        """Take this node's next due job, leasing it so no other worker takes it meanwhile."""
        now = time.time() if now is None else now
        with self.db.write() as c:
            row = c.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM recordings WHERE node IN (?, '') AND {_ACTIVE} "
                "AND next_try_at <= ? AND lease_until <= ? ORDER BY next_try_at, started_at LIMIT 1"
                f"{self.db.skip_locked}", (self.node, *ACTIVE, now, now)).fetchone()
            if row is None:
                return None
            rec = _row(row)
            c.execute("UPDATE recordings SET lease_until = ? WHERE recording_id = ?",
                      (now + lease, rec.recording_id))
        return rec

    def queue_counts(self) -> dict[str, int]:
        """Rows per state (states with none left out). Reads only the rows of the states a
        job passes through, plus the kept totals of the archived and erased ones."""
        with self.db.read() as c:
            rows = c.execute(f"SELECT state, COUNT(*) FROM recordings WHERE state IN "
                             f"({', '.join('?' for _ in _PASSING)}) GROUP BY state", _PASSING).fetchall()
            # By key, never a scan: the table has two rows but may hold the pages of
            # many dead versions (updates while a long transaction kept them from pruning).
            rows += c.execute(f"SELECT state, n FROM recording_totals WHERE state IN ({', '.join('?' for _ in COUNTED)}) "
                              "AND n > 0", COUNTED).fetchall()
        return {state: n for state, n in rows}

    def quarantined_count(self) -> int:
        """Dead letters whose plaintext spool file waits in quarantine."""
        with self.db.read() as c:
            return c.execute("SELECT COUNT(*) FROM recordings WHERE quarantined_at IS NOT NULL").fetchone()[0]

    def next_due(self) -> float | None:
        """When this node's next job is due (None: no active job)."""
        with self.db.read() as c:
            row = c.execute("SELECT MIN(CASE WHEN next_try_at > lease_until THEN next_try_at ELSE lease_until END) "
                            f"FROM recordings WHERE node IN (?, '') AND {_ACTIVE}", (self.node, *ACTIVE)).fetchone()
        return row[0]

    def retrying_count(self) -> int:
        """Active jobs that failed at least once (waiting on their backoff or running again)."""
        with self.db.read() as c:
            return c.execute(f"SELECT COUNT(*) FROM recordings WHERE attempts > 0 AND {_ACTIVE}",
                             ACTIVE).fetchone()[0]

    def retry_now(self, now: float | None = None) -> int:
        """Every active job waiting on a backoff (and not leased) becomes due now; returns how many."""
        now = time.time() if now is None else now
        with self.db.write() as c:
            return c.execute(f"UPDATE recordings SET next_try_at = 0 WHERE {_ACTIVE} AND next_try_at > ? "
                             "AND lease_until <= ?", (*ACTIVE, now, now)).rowcount

    def release_leases(self) -> int:
        """Drop this node's leases (its start after a crash: none of its workers holds one;
        other nodes' workers may, and keep theirs)."""
        with self.db.write() as c:
            return c.execute("UPDATE recordings SET lease_until = 0 WHERE lease_until > 0 AND node IN (?, '')",
                             (self.node,)).rowcount

    # -- retention and reporting ---------------------------------------------------
    def retention_due(self, now: float) -> list[tuple[Recording, str]]:
        """What the retention sweeper must dispose of, oldest retain-until first, with why:
        ``retention`` (period over), ``erase`` (erasure requested) or ``leftover`` (erased,
        but a payload still locked at the time remains). Never a recording on legal hold."""
        cols = ", ".join(_COLUMNS)
        with self.db.read() as c:  # three disjoint parts, each read from its own index
            rows = c.execute(
                f"SELECT {cols}, 'retention' FROM recordings WHERE state = 'archived' AND retain_until <= ? "
                "AND erase_requested != 1 AND legal_hold = 0 "
                f"UNION ALL SELECT {cols}, 'erase' FROM recordings WHERE state = 'archived' "
                "AND erase_requested = 1 AND legal_hold = 0 "
                f"UNION ALL SELECT {cols}, 'leftover' FROM recordings WHERE state = 'erased' AND object_key != '' "
                "AND retain_until <= ? AND legal_hold = 0 ORDER BY retain_until", (now, now)).fetchall()
        return [(_row(r[:-1]), r[-1]) for r in rows]

    def last_archived_at(self) -> float | None:
        with self.db.read() as c:
            return c.execute("SELECT MAX(archived_at) FROM recordings WHERE archived_at IS NOT NULL").fetchone()[0]

    def archived_since(self, after: float) -> list[tuple[float, float]]:
        """(archived_at, seconds from the end of the call to archived) for recordings
        archived after ``after``, oldest first."""
        with self.db.read() as c:
            return c.execute("SELECT archived_at, archived_at - COALESCE(ended_at, started_at) FROM recordings "
                             "WHERE archived_at IS NOT NULL AND archived_at > ? ORDER BY archived_at",
                             (after,)).fetchall()
