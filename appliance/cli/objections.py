"""`callvault objection add|lift|list`: standing objections (calls from the number are never recorded)."""

from __future__ import annotations

import argparse
import asyncio
import json

from storage.errors import NotFound, StorageError
from storage.hmac_index import load_hmac_key
from storage.ledger import Ledger
from storage.objections import Objections

from ..casework import ObjectionDesk
from .common import (
    database,
    fail,
    guarded,
    iso,
    load_config,
    os_account,
    reason,
    with_config,
)

_guard = guarded(StorageError, ValueError)


def _run(args: argparse.Namespace, action: str) -> int:
    config = load_config(args)
    key = load_hmac_key(config.privacy.hmac_key_file)
    with database(config) as db:
        desk = ObjectionDesk(Objections(db), Ledger(db), key, config.privacy.default_country)
        if action == "add":
            oid = asyncio.run(desk.add(args.number, args.reason, os_account()))
            print(f"objection {oid} in force: calls from this number are not recorded")
            return 0
        try:
            ids = asyncio.run(desk.lift(args.number, args.reason, os_account()))
        except NotFound as e:
            return fail(str(e))
        print(f"lifted: {', '.join(ids)}")
        return 0


@_guard
def cmd_add(args: argparse.Namespace) -> int:
    return _run(args, "add")


@_guard
def cmd_lift(args: argparse.Namespace) -> int:
    return _run(args, "lift")


@_guard
def cmd_list(args: argparse.Namespace) -> int:
    with database(load_config(args)) as db:
        rows = Objections(db).list(include_lifted=args.all)
    if args.json:
        print(json.dumps([o.public() for o in rows], indent=2))
        return 0
    for o in rows:
        state = "in force" if o.active else f"lifted {iso(o.lifted_at)} by {o.lifted_by}: {o.lift_reason}"
        print(f"{o.objection_id} {iso(o.created_at)} by {o.actor}: {o.reason} ({state})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    obj = sub.add_parser("objection", help="standing objections to recording").add_subparsers(
        dest="objection_cmd", required=True)
    add = with_config(obj.add_parser("add", help="never record calls from NUMBER (stored as HMACs only)"))
    add.add_argument("number")
    add.add_argument("--reason", type=reason, required=True, help="why (goes into the ledger)")
    lift = with_config(obj.add_parser("lift", help="lift the objections in force for NUMBER"))
    lift.add_argument("number")
    lift.add_argument("--reason", type=reason, required=True, help="why (goes into the ledger)")
    ls = with_config(obj.add_parser("list", help="objections (no numbers: they are stored as HMACs)"))
    ls.add_argument("--all", action="store_true", help="include lifted objections")
    ls.add_argument("--json", action="store_true")
    add.set_defaults(fn=cmd_add)
    lift.set_defaults(fn=cmd_lift)
    ls.set_defaults(fn=cmd_list)
