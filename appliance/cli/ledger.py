"""`callvault ledger verify|export|anchor|anchors`: the consent and audit ledger and
its anchors in WORM storage (docs/ledger.md)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from storage import private
from storage.chain import VerifyResult
from storage.errors import StorageError

from .. import compose
from .common import database, fail, guarded, load_config, with_config


@contextlib.contextmanager
def _anchor_store(config) -> Iterator:
    """The payload store (Object Lock), where anchors live."""
    archive = compose.build_archive(config)
    try:
        archive.payload.check_setup()  # a store that is not there must not read as "no anchors"
        yield archive.payload
    finally:
        archive.close()


def _report(result: VerifyResult, anchors: int, what: str) -> int:
    if result.ok:
        print(f"ledger ok: {result.checked} entries{what}, head {result.head[1][:16]}… at seq {result.head[0]}; "
              f"{anchors} anchors match")
        if not anchors:
            print("no anchors: a deleted tail or a rewritten ledger cannot be detected", file=sys.stderr)
        return 0
    print(f"ledger BROKEN at entry {result.bad_seq}: {result.reason}")
    return 1


@guarded(StorageError, OSError)
def cmd_verify(args: argparse.Namespace) -> int:
    from storage.anchors import anchors_in, load_dir
    from storage.chain import verify_jsonl
    from storage.ledger import Ledger

    if args.anchors and not args.export:
        return fail("--anchors DIR checks an export: give --export FILE too", 2)
    if args.export:  # offline: no config, no database, no storage
        if args.from_anchor:
            return fail("--from-anchor needs the database; an export is always checked whole", 2)
        saved = load_dir(Path(args.anchors)) if args.anchors else []
        if args.anchors and not saved:
            return fail(f"{args.anchors}: no anchor files (*.json) found", 2)
        with open(args.export, "rb") as f:
            result = verify_jsonl(f, anchors=[(a.seq, a.hash, a.key) for a in saved])
        return _report(result, len(saved), f" in {args.export}")
    config = load_config(args)
    with _anchor_store(config) as store:
        anchors = anchors_in(store, config.node.name)
    checks = [(a.seq, a.hash, a.key) for a in anchors]
    with database(config) as db:
        ledger = Ledger(db)
        if args.from_anchor:
            return _report(ledger.verify_since(checks), len(anchors), " since the newest anchor")
        return _report(ledger.verify(anchors=checks), len(anchors), "")


@guarded(StorageError, OSError)
def cmd_anchor(args: argparse.Namespace) -> int:
    from storage.ledger import Ledger

    from ..anchoring import AnchorKeeper

    config = load_config(args)
    c = config.ledger
    with _anchor_store(config) as store, database(config) as db:
        keeper = AnchorKeeper(Ledger(db), store, node=config.node.name, every=c.anchor_every,
                              interval=c.interval_seconds, retention=c.anchor_retention)
        anchor = keeper.step(force=True)
    result = keeper.last_result
    if result is None or not result.ok:
        print(f"ledger BROKEN at entry {result.bad_seq if result else '?'}: "
              f"{result.reason if result else 'not checked'}; no anchor written")
        return 1
    if anchor is None:
        print(f"head at seq {keeper.anchored_seq} is already anchored" if keeper.anchored_seq
              else "ledger is empty: nothing to anchor")
        return 0
    print(f"anchored seq {anchor.seq} ({anchor.hash[:16]}…): {anchor.key}, COMPLIANCE for {c.anchor_retention}")
    return 0


@guarded(StorageError, OSError)
def cmd_anchors(args: argparse.Namespace) -> int:
    from storage.anchors import anchors_in, read_anchor, save_anchor

    config = load_config(args)
    with _anchor_store(config) as store:
        for listed in anchors_in(store, config.node.name):
            a = read_anchor(store, listed)
            print(f"{a.seq:>12}  {a.time}  {a.hash}  {a.key}")
            if args.save:
                save_anchor(store, a, Path(args.save))
    return 0


@guarded(StorageError, OSError)
def cmd_export(args: argparse.Namespace) -> int:
    from storage.ledger import Ledger

    with database(load_config(args)) as db:
        # The ledger names calls and recordings: a new export file is 0600.
        out = os.fdopen(private.create_file(args.out), "w") if args.out not in (None, "-") else sys.stdout
        try:
            seq, head = Ledger(db).export_jsonl(out)
        finally:
            if out is not sys.stdout:
                out.close()
    print(f"exported {seq} entries; head {head}", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    lg = sub.add_parser("ledger", help="consent and audit ledger").add_subparsers(dest="ledger_cmd", required=True)
    v = with_config(lg.add_parser("verify", help="check the hash chain against every anchor"))
    v.add_argument("--from-anchor", action="store_true",
                   help="check only the entries since the newest anchor (and each anchored entry)")
    v.add_argument("--export", metavar="FILE", help="check a `ledger export` file instead (no database)")
    v.add_argument("--anchors", metavar="DIR", help="with --export: anchors saved by `ledger anchors --save`")
    v.set_defaults(fn=cmd_verify)
    with_config(lg.add_parser("anchor", help="check the ledger and anchor its head now")).set_defaults(fn=cmd_anchor)
    ls = with_config(lg.add_parser("anchors", help="list this node's anchors"))
    ls.add_argument("--save", metavar="DIR", help="also copy each anchor object into DIR/<node>/")
    ls.set_defaults(fn=cmd_anchors)
    ex = with_config(lg.add_parser("export", help="write the ledger as JSON lines"))
    ex.add_argument("-o", "--out", default="-")
    ex.set_defaults(fn=cmd_export)
