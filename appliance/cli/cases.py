"""`callvault case create|add|remove|close|list|show`: legal-hold cases."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
from collections.abc import Iterator

from archiver.errors import ArchiverError
from archiver.retention import RetentionSweeper
from storage.cases import Cases
from storage.errors import StorageError
from storage.hmac_index import load_hmac_key
from storage.ledger import Ledger

from .. import compose
from ..casework import CaseDesk, Selection
from .common import database, guarded, iso, load_config, os_account, reason, with_config

_guard = guarded(StorageError, ArchiverError, ValueError)


@contextlib.contextmanager
def _desk(args: argparse.Namespace, *, archive: bool = True) -> Iterator[CaseDesk]:
    config = load_config(args)
    key = load_hmac_key(config.privacy.hmac_key_file)
    with database(config) as db, contextlib.ExitStack() as stack:
        catalog, ledger = compose.catalog(config, db), Ledger(db)
        store = None
        if archive:
            store = compose.build_archive(config)
            stack.callback(store.close)
        sweeper = RetentionSweeper(catalog, ledger, store)  # type: ignore[arg-type]
        yield CaseDesk(Cases(db), catalog, ledger, sweeper, key, config.privacy.default_country)


def _when(text: str) -> float:
    """An argparse type: YYYY-MM-DD or an ISO date-time (UTC when no zone is given)."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or ISO date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@_guard
def cmd_create(args: argparse.Namespace) -> int:
    with _desk(args, archive=False) as desk:
        desk.create(args.name, args.reason, os_account())
    print(f"case {args.name} open")
    return 0


@_guard
def cmd_add(args: argparse.Namespace) -> int:
    sel = Selection(subject=args.subject, since=args.since, until=args.until, agent=args.agent, did=args.did,
                    recording=args.recording)
    with _desk(args) as desk:
        added = desk.add(args.name, sel, os_account())
    print(f"case {args.name}: {len(added)} recording(s) added and held" + "".join(f"\n  {r}" for r in added))
    return 0


@_guard
def cmd_remove(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        released = desk.remove(args.name, args.recording, args.reason, os_account())
    print(f"case {args.name}: {args.recording} removed; "
          + ("hold released" if released else "still held (another open case, or held before the case)"))
    return 0


@_guard
def cmd_close(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        released = desk.close(args.name, args.reason, os_account())
    print(f"case {args.name} closed; {len(released)} hold(s) released")
    return 0


@_guard
def cmd_list(args: argparse.Namespace) -> int:
    with _desk(args, archive=False) as desk:
        cases = desk.cases.list()
    if args.json:
        print(json.dumps([c.public() for c in cases], indent=2))
        return 0
    for c in cases:
        state = "open" if c.open else f"closed {iso(c.closed_at)}"
        print(f"{c.name:24} {iso(c.created_at)} {state:28} {c.reason}")
    return 0


@_guard
def cmd_show(args: argparse.Namespace) -> int:
    with _desk(args, archive=False) as desk:
        shown = desk.show(args.name)
    print(json.dumps(shown, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    case = sub.add_parser("case", help="legal-hold cases").add_subparsers(dest="case_cmd", required=True)
    create = with_config(case.add_parser("create", help="open a named legal-hold case"))
    create.add_argument("name")
    create.add_argument("--reason", type=reason, required=True, help="why (goes into the ledger)")
    add = with_config(case.add_parser("add", help="hold recordings under the case (chosen by search)"))
    add.add_argument("name")
    add.add_argument("--subject", help="the caller's telephone number (found through the HMAC index)")
    add.add_argument("--since", type=_when, help="calls from this date or date-time")
    add.add_argument("--until", type=_when, help="calls before this date or date-time")
    add.add_argument("--agent", help="calls this agent handled")
    add.add_argument("--did", help="calls to this number")
    add.add_argument("--recording", help="one recording id")
    remove = with_config(case.add_parser("remove", help="take a recording out of the case"))
    remove.add_argument("name")
    remove.add_argument("--recording", required=True)
    remove.add_argument("--reason", type=reason, default="removed from the case", help="why (goes into the ledger)")
    close = with_config(case.add_parser("close", help="close the case and release its holds"))
    close.add_argument("name")
    close.add_argument("--reason", type=reason, default="case closed", help="why (goes into the ledger)")
    ls = with_config(case.add_parser("list", help="cases, open and closed"))
    ls.add_argument("--json", action="store_true")
    show = with_config(case.add_parser("show", help="one case and its recordings"))
    show.add_argument("name")
    for sp, fn in ((create, cmd_create), (add, cmd_add), (remove, cmd_remove), (close, cmd_close),
                   (ls, cmd_list), (show, cmd_show)):
        sp.set_defaults(fn=fn)
