"""`callvault catalog rebuild`: the recordings catalog restored from the manifest
objects in storage after the database was lost (docs/operations.md, disaster recovery)."""

from __future__ import annotations

import argparse
import sys

from archiver.errors import ArchiverError
from storage.errors import NotFound, StorageError

from .. import compose
from .common import database, fail, guarded, load_config, os_account, with_config


def _progress(done: int, total: int) -> None:
    print(f"rebuild: {done}/{total} manifest objects read", file=sys.stderr, flush=True)


def _ledger_check(ledger, store, node: str) -> bool:
    """Report the ledger against this node's anchors; False when it is broken. An empty
    ledger is reported as lost: anchors prove what existed, nothing can recreate it."""
    from storage.anchors import anchors_in

    anchors = anchors_in(store, node)
    seq, _ = ledger.head()
    if seq == 0:
        newest = f"; the newest (seq {anchors[-1].seq}) proves {anchors[-1].seq} entries existed" if anchors else ""
        print(f"ledger LOST: the database holds no ledger entries; {len(anchors)} anchors of node {node}{newest}. "
              "Storage cannot recreate the ledger: restore it from a database backup or keep the "
              "`ledger export` files with the anchors (`ledger verify --export FILE --anchors DIR`).")
        return True
    result = ledger.verify(anchors=[(a.seq, a.hash, a.key) for a in anchors])
    if result.ok:
        print(f"ledger ok: {result.checked} entries, {len(anchors)} anchors of node {node} match")
        return True
    print(f"ledger BROKEN at entry {result.bad_seq}: {result.reason}")
    return False


def _exists(catalog, recording_id: str) -> bool:
    try:
        catalog.get(recording_id)
    except NotFound:
        return False
    return True


@guarded(StorageError, ArchiverError, ValueError)
def cmd_rebuild(args: argparse.Namespace) -> int:
    from archiver import rebuild
    from storage.ledger import Ledger

    config = load_config(args)
    with database(config) as db:
        catalog, ledger = compose.catalog(config, db), Ledger(db)
        before = sum(catalog.queue_counts().values())
        if before and not args.merge:
            return fail(f"the catalog already holds {before} recordings; rebuild fills an empty catalog. "
                        "Use --merge to add only the recordings it lacks (e.g. after restoring an old backup)", 2)
        archive = compose.build_archive(config)
        try:
            archive.check_setup()  # a store that is not there must not read as "no recordings"
            found = rebuild.scan(archive, workers=args.workers, progress=_progress)
            rebuild.against_ledger(found, ledger)
            ledger_ok = _ledger_check(ledger, archive.payload, config.node.name)
        finally:
            archive.close()
        for problem in found.problems:
            print(problem)
        rows = [r for r in found.rows if not before or not _exists(catalog, r.recording_id)]  # --merge keeps its own
        if not args.dry_run:
            for batch in rebuild.batches(rows):
                with db.write() as c:
                    for rec in batch:
                        catalog.add_op(rec)(c)
            if ledger.head()[0]:  # never start a new chain where the old one was lost
                ledger.append("catalog.rebuild", {**os_account(), "manifests": found.manifests,
                                                  "restored": len(rows), "problems": len(found.problems)})
    verb = "would restore" if args.dry_run else "restored"
    print(f"{verb} {len(rows)} of {found.manifests} recordings ({found.count('archived')} archived, "
          f"{found.count('erased')} erased, {found.held} on legal hold); {len(found.problems)} problems",
          file=sys.stderr)
    return 1 if found.problems or not ledger_ok else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    cat = sub.add_parser("catalog", help="the recordings catalog").add_subparsers(dest="catalog_cmd", required=True)
    rb = with_config(cat.add_parser("rebuild", help="restore the recording rows from the manifest objects in storage"))
    rb.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")
    rb.add_argument("--merge", action="store_true", help="into a catalog that is not empty: add only missing rows")
    rb.add_argument("--workers", type=int, default=8, help="objects read at once (default 8)")
    rb.set_defaults(fn=cmd_rebuild)
