"""`callvault ledger verify|export`: the consent and audit ledger."""

from __future__ import annotations

import argparse
import os
import sys

from storage import private
from storage.errors import StorageError

from .common import database, guarded, load_config, with_config


@guarded(StorageError, OSError)
def cmd_verify(args: argparse.Namespace) -> int:
    from storage.ledger import Ledger

    with database(load_config(args)) as db:
        result = Ledger(db).verify()
    if result.ok:
        print(f"ledger ok: {result.checked} entries, head {result.head[1][:16]}… at seq {result.head[0]}")
        return 0
    print(f"ledger BROKEN at entry {result.bad_seq}: {result.reason}")
    return 1


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
    with_config(lg.add_parser("verify", help="check the hash chain")).set_defaults(fn=cmd_verify)
    ex = with_config(lg.add_parser("export", help="write the ledger as JSON lines"))
    ex.add_argument("-o", "--out", default="-")
    ex.set_defaults(fn=cmd_export)
