"""`callvault report NAME` and `callvault retention plan`: the information officer's
reports (storage/reports.py) and a dry run of the retention sweeper."""

from __future__ import annotations

import argparse
import json
import sys

from archiver.errors import ArchiverError
from archiver.retention import RetentionSweeper
from storage.errors import StorageError
from storage.ledger import Ledger
from storage.reports import NAMES, Reports, parse_when

from .. import compose
from .common import database, fail, guarded, iso, load_config, with_config

_guard = guarded(StorageError, ArchiverError)


@_guard
def cmd_report(args: argparse.Namespace) -> int:
    try:
        since = parse_when(args.since, end=False) if args.since else None
        until = parse_when(args.until, end=True) if args.until else None
    except ValueError as e:
        return fail(f"--since/--until: {e}", 2)
    config = load_config(args)
    with database(config) as db:
        compose.catalog(config, db), Ledger(db)  # their tables, on a database new to both
        report = Reports(db).run(args.name, since, until)
    sys.stdout.write(report.to_csv() if args.format == "csv" else report.to_json() + "\n")
    return 0


@_guard
def cmd_plan(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        return fail(f"--limit {args.limit}: give a positive number", 2)
    config = load_config(args)
    archive = compose.build_archive(config)
    try:
        with database(config) as db:
            plan = RetentionSweeper(compose.catalog(config, db), Ledger(db), archive).plan(limit=args.limit)
    finally:
        archive.close()
    rows = [{"recording_id": p.recording_id, "why": p.why, "action": p.action, "retention_class": p.retention_class,
             "retain_until": iso(p.retain_until),
             "payload_locked_until": p.payload_locked_until.isoformat() if p.payload_locked_until else None}
            for p in plan]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'recording':26} {'why':10} {'action':7} {'class':10} retain until")
    for r in rows:
        lock = f" (payload locked until {r['payload_locked_until']})" if r["payload_locked_until"] else ""
        print(f"{r['recording_id']:26} {r['why']:10} {r['action']:7} {r['retention_class']:10} "
              f"{r['retain_until'] or '-'}{lock}")
    if not rows:
        print("nothing is due")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    rep = with_config(sub.add_parser("report", help="information officer reports (CSV or JSON)"))
    rep.add_argument("name", choices=NAMES)
    rep.add_argument("--since", help="from this UTC date or date-time (YYYY-MM-DD: from the day's start)")
    rep.add_argument("--until", help="until this UTC date or date-time (YYYY-MM-DD: the day included)")
    rep.add_argument("--format", choices=("csv", "json"), default="csv")
    rep.set_defaults(fn=cmd_report)
    ret = sub.add_parser("retention", help="the retention sweeper").add_subparsers(dest="ret_cmd", required=True)
    plan = with_config(ret.add_parser("plan", help="dry run: what the next retention sweep will destroy"))
    plan.add_argument("--limit", type=int, help="at most N recordings (the first the sweep takes)")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(fn=cmd_plan)
