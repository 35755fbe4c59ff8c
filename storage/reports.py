"""The information officer's reports: read-only queries over the catalog and the ledger.

Each report is a table (``Report``: column names and rows of plain values), the same
for the page, the API (``/api/reports/<name>``) and ``callvault report NAME``:

- ``consent``: consent outcomes counted by day, rule, jurisdiction and outcome
  (ledger ``consent`` entries);
- ``retention``: recordings still holding audio, by retention class, with the date
  each falls due (``retain_until``) and what blocks it (legal hold);
- ``erasures``: erasures and exports performed (ledger kinds starting ``erase`` or
  ``audit.export``, so ``erase``, ``erase.request``, ``audit.export.subject`` ... all show);
- ``access``: who played, downloaded or fetched which recording and why (``audit.play``,
  ``audit.download``, ``audit.get``);
- ``objections``: ledger kinds starting ``objection.``.

The window ``[since, until)`` (UTC) applies to the ledger entry's time, and for
``retention`` to the due date. Ledger entries are read by kind through the ledger's
kind index: a prefix becomes the range ``kind >= p AND kind < p'`` (``p'`` is ``p``
with its last character incremented). No report shows a phone number or caller HMAC.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .db import Database

# Ledger kind prefixes each ledger report reads.
ERASURE_PREFIXES = ("erase", "audit.export")
ACCESS_KINDS = ("audit.play", "audit.download", "audit.get")
OBJECTION_PREFIXES = ("objection.",)
_FAR = "9999-12-31T23:59:59.999Z"


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_json(self) -> str:
        return json.dumps({"report": self.name, "columns": list(self.columns), "rows": self.as_dicts()},
                          indent=2, ensure_ascii=False)

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows(["" if v is None else v for v in row] for row in self.rows)
        return out.getvalue()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ledger_ts(moment: datetime.datetime | None, default: str) -> str:
    if moment is None:
        return default
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_when(value: str, *, end: bool) -> datetime.datetime:
    """``YYYY-MM-DD`` (``end``: the day after, so the day is included) or an ISO date-time
    (UTC unless it says otherwise); ValueError says what was wrong."""
    value = value.strip()
    try:
        if len(value) == 10:
            day = datetime.datetime.combine(datetime.date.fromisoformat(value), datetime.time(), datetime.UTC)
            return day + datetime.timedelta(days=1 if end else 0)
        moment = datetime.datetime.fromisoformat(value)
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC)
        moment.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(f"not a date or date-time: {value[:40]!r} (e.g. 2026-01-31)") from None
    return moment


def _after(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def entries_query(kinds: tuple[str, ...], prefixes: tuple[str, ...], since: datetime.datetime | None,
                  until: datetime.datetime | None) -> tuple[str, list[str]]:
    """The SQL (and its parameters) reading ledger entries by kind: one index range a
    kind or prefix."""
    clauses, params = [], []
    for k in kinds:
        clauses.append("kind = ?")
        params.append(k)
    for p in prefixes:
        clauses.append("(kind >= ? AND kind < ?)")
        params += [p, _after(p)]
    params += [_ledger_ts(since, ""), _ledger_ts(until, _FAR)]
    sql = (f"SELECT ts, kind, recording_id, body FROM ledger WHERE ({' OR '.join(clauses)}) "
           "AND ts >= ? AND ts < ? ORDER BY seq")
    return sql, params


class Reports:
    """Every report, over one database holding the catalog and the ledger."""

    def __init__(self, db: Database):
        self.db = db

    def entries(self, *, kinds: tuple[str, ...] = (), prefixes: tuple[str, ...] = (),
                since: datetime.datetime | None = None,
                until: datetime.datetime | None = None) -> Iterator[tuple[str, str, str | None, dict[str, Any]]]:
        """``(ts, kind, recording_id, body)`` of the entries of these kinds or kind
        prefixes in the window, in ledger order."""
        sql, params = entries_query(kinds, prefixes, since, until)
        with self.db.read() as c:
            rows = c.execute(sql, params).fetchall()
        for ts, kind, rid, body in rows:
            yield ts, kind, rid, json.loads(body)

    def consent(self, since=None, until=None) -> Report:
        counts: Counter[tuple[str, str, str, str]] = Counter()
        for ts, _, _, d in self.entries(kinds=("consent",), since=since, until=until):
            counts[(ts[:10], str(d.get("rule") or ""), str(d.get("jurisdiction") or ""),
                    str(d.get("outcome") or ""))] += 1
        return Report("consent", "Consent outcomes by rule, jurisdiction and day",
                      ("day", "rule", "jurisdiction", "outcome", "count"),
                      [(*key, n) for key, n in sorted(counts.items())])

    def retention(self, since=None, until=None) -> Report:
        lo = since.timestamp() if since else float("-inf")
        hi = until.timestamp() if until else float("inf")
        with self.db.read() as c:
            rows = c.execute("SELECT retention_class, recording_id, state, started_at, retain_until, legal_hold, "
                             "erase_requested FROM recordings WHERE NOT (state = 'erased' AND object_key = '') "
                             "ORDER BY retention_class, retain_until IS NULL, retain_until, recording_id").fetchall()
        out = []
        for cls, rid, state, started, until_ts, hold, erase in rows:
            if until_ts is not None and not lo <= until_ts < hi:
                continue
            if until_ts is None and (since or until):
                continue
            out.append((cls, rid, state, _iso(started), _iso(until_ts), bool(hold), bool(erase)))
        return Report("retention", "Recordings by retention class with due dates",
                      ("retention_class", "recording_id", "state", "started_at", "due_at", "legal_hold",
                       "erase_requested"), out)

    def _audit(self, name: str, title: str, since, until, *, kinds=(), prefixes=()) -> Report:
        rows = [(ts, kind, rid or d.get("recording_id") or "", _actor(d), str(d.get("reason") or ""),
                 _detail(d)) for ts, kind, rid, d in self.entries(kinds=kinds, prefixes=prefixes,
                                                                    since=since, until=until)]
        return Report(name, title, ("at", "kind", "recording_id", "actor", "reason", "detail"), rows)

    def erasures(self, since=None, until=None) -> Report:
        return self._audit("erasures", "Erasures and exports performed", since, until, prefixes=ERASURE_PREFIXES)

    def access(self, since=None, until=None) -> Report:
        return self._audit("access", "Access to recordings by user, with reasons", since, until, kinds=ACCESS_KINDS)

    def objections(self, since=None, until=None) -> Report:
        return self._audit("objections", "Objections", since, until, prefixes=OBJECTION_PREFIXES)

    def run(self, name: str, since=None, until=None) -> Report:
        if name not in NAMES:
            raise KeyError(f"no report {name!r}; reports: {', '.join(NAMES)}")
        fn: Callable[..., Report] = getattr(self, name)
        return fn(since, until)


NAMES = ("consent", "retention", "erasures", "access", "objections")
TITLES = {"consent": "Consent outcomes", "retention": "Retention plan by class", "erasures": "Erasures and exports",
          "access": "Access by user", "objections": "Objections"}
_DETAIL_KEYS = ("purpose", "format", "via", "role", "payload", "header", "state", "request_id", "case_id", "status")


def _actor(d: dict[str, Any]) -> str:
    actor = d.get("actor") or d.get("user") or d.get("who") or ""
    return str(actor)


def _detail(d: dict[str, Any]) -> str:
    return "; ".join(f"{k}={d[k]}" for k in _DETAIL_KEYS if d.get(k) not in (None, ""))
