"""`callvault recordings list|get|verify|adopt|retry|erase`: archived recordings, from the catalog
and the Archive."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from archiver.archive import Archive
from archiver.errors import ArchiverError
from storage import private
from storage.catalog import Catalog, Recording
from storage.errors import NotFound, StorageError
from storage.ledger import Ledger

from .. import compose
from .. import config as cfg
from .common import (
    NO_IDENTITY,
    database,
    fail,
    guarded,
    identity_file,
    iso,
    load_config,
    os_account,
    read_identities,
    reason,
    with_config,
)

_guard = guarded(StorageError, ArchiverError, ValueError)

_LIST_FIELDS = ("recording_id", "state", "consent_state", "rule", "jurisdiction", "retention_class", "did",
                "attempts", "last_error", "legal_hold", "erase_requested", "object_key", "version_id")


@contextlib.contextmanager
def _catalog(config: cfg.Config) -> Iterator[tuple[Catalog, Ledger]]:
    with database(config) as db:
        yield compose.catalog(config, db), Ledger(db)


@contextlib.contextmanager
def _archive(config: cfg.Config) -> Iterator[Archive]:
    archive = compose.build_archive(config)
    try:
        yield archive
    finally:
        archive.close()


def _public(rec: Recording) -> dict[str, Any]:
    """What a listing shows: no caller HMAC, no channel names."""
    out = {k: getattr(rec, k) for k in _LIST_FIELDS}
    for k in ("started_at", "ended_at", "archived_at", "retain_until"):
        out[k] = iso(getattr(rec, k))
    return out


@_guard
def cmd_list(args: argparse.Namespace) -> int:
    with _catalog(load_config(args)) as (catalog, _):
        rows = catalog.search(state=args.state, limit=args.limit)
    if args.json:
        print(json.dumps([_public(r) for r in rows], indent=2))
        return 0
    print(f"{'recording':26} {'started (UTC)':20} {'state':10} {'consent':9} {'retention':10} retain until")
    for r in rows:
        hold = " HOLD" if r.legal_hold else ""
        print(f"{r.recording_id:26} {(iso(r.started_at) or '')[:19]:20} {r.state:10} {r.consent_state:9} "
              f"{r.retention_class:10} {(iso(r.retain_until) or '-')[:19]}{hold}")
    return 0


@_guard
def cmd_get(args: argparse.Namespace) -> int:
    config = load_config(args)
    out = Path(args.out)
    if out.exists():
        return fail(f"{out} exists; refusing to overwrite", 2)
    identity = identity_file(args, config)
    if identity is None:
        return fail(NO_IDENTITY, 2)
    with _catalog(config) as (catalog, ledger):
        try:
            rec = catalog.get(args.recording_id)
        except NotFound:
            return fail(f"no recording {args.recording_id}")
        if rec.state != "archived":
            return fail(f"recording {rec.recording_id} is {rec.state}, not archived")
        identities = read_identities(identity)
        # The audit entry first, then the key is used.
        ledger.append("audit.get", {"recording_id": rec.recording_id, **os_account(), "reason": args.reason,
                                    "identities": [i.fingerprint for i in identities]},
                      call_id=rec.linkedid or None, recording_id=rec.recording_id)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    with _archive(config) as archive:
        fd = private.create_file(tmp, exclusive=True)
        try:
            with os.fdopen(fd, "wb") as f:
                size = archive.decrypt_to(rec, identities, f)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, out)  # appears only complete and verified; never overwrites
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    print(f"{rec.recording_id}: {size} bytes written to {out}", file=sys.stderr)
    return 0


@_guard
def cmd_verify(args: argparse.Namespace) -> int:
    config = load_config(args)
    with _catalog(config) as (catalog, _):
        if args.all:
            rows = catalog.search(state="archived", limit=10_000_000)
        else:
            try:
                rows = [catalog.get(args.recording_id)]
            except NotFound:
                return fail(f"no recording {args.recording_id}")
    bad = 0
    with _archive(config) as archive:
        for rec in rows:
            problem = archive.verify(rec)
            bad += problem is not None
            print(f"{rec.recording_id}: {problem or 'ok'}")
    print(f"verified {len(rows)} recording(s), {bad} bad", file=sys.stderr)
    return 1 if bad else 0


@_guard
def cmd_adopt(args: argparse.Namespace) -> int:
    """Hand a spool file the archiver left alone (no catalog row, no consent entry) to it."""
    config = load_config(args)
    path = Path(args.path).resolve()
    if path.parent != config.spool.dir.resolve() or not path.is_file():
        return fail(f"{path} is not a file in the spool directory {config.spool.dir}", 2)
    rid = path.stem
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,100}", rid):
        return fail(f"{path.name}: only letters, digits, - and _ may form a recording id; rename it first", 2)
    with _catalog(config) as (catalog, ledger):
        if catalog.by_spool_path(str(path)) is not None or _exists(catalog, rid):
            return fail(f"{path.name} already has a catalog row")
        now = time.time()
        ledger.append("archive.adopt", {"recording_id": rid, "spool_file": path.name, **os_account(),
                                        "consent_state": "unknown", "reason": args.reason},
                      recording_id=rid)
        catalog.add(Recording(recording_id=rid, consent_id="", uniqueid="", linkedid="", channel="",
                              spool_path=str(path), caller_hmac="", did="", agent="", rule="",
                              jurisdiction="", retention_class=args.retention_class, consent_state="unknown",
                              started_at=path.stat().st_mtime))
        catalog.mark_ended(rid, now)
    print(f"{path.name} adopted as {rid} (consent unknown); a running archiver picks it up")
    return 0


def _release(args: argparse.Namespace, erase: bool) -> int:
    from archiver.quarantine import NotQuarantined, release

    config = load_config(args)
    with _catalog(config) as (catalog, ledger):
        try:
            rec = catalog.get(args.recording_id)
        except NotFound:
            return fail(f"no recording {args.recording_id}")
        try:
            path = release(catalog, rec, erase=erase)
        except NotQuarantined as e:
            return fail(str(e), 2)
        ledger.append("archive.release", {"recording_id": rec.recording_id, **os_account(),
                                          "action": "erase" if erase else "retry", "reason": args.reason},
                      call_id=rec.linkedid or None, recording_id=rec.recording_id)
    what = "queued for erasure" if erase else "queued again"
    print(f"{rec.recording_id}: {path.name} is back in the spool and {what}; a running archiver picks it up")
    return 0


@_guard
def cmd_retry(args: argparse.Namespace) -> int:
    """A quarantined dead letter goes back to the spool and into the archive queue."""
    return _release(args, erase=False)


@_guard
def cmd_erase(args: argparse.Namespace) -> int:
    """A quarantined dead letter goes back to the spool flagged for erasure."""
    return _release(args, erase=True)


def _exists(catalog: Catalog, rid: str) -> bool:
    try:
        catalog.get(rid)
    except NotFound:
        return False
    return True


def add_commands(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser("recordings", help="archived recordings").add_subparsers(dest="rec_cmd", required=True)
    ls = with_config(rec.add_parser("list", help="list recordings in the catalog"))
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--state", help="only this state (archived, failed, pending, ...)")
    ls.add_argument("--limit", type=int, default=200)
    ls.set_defaults(fn=cmd_list)
    get = with_config(rec.add_parser("get", help="fetch, decrypt and write one recording as WAV"))
    get.add_argument("recording_id")
    get.add_argument("--identity", type=Path, help="age identity file (passphrase asked if protected); "
                     "default [web] identity_file")
    get.add_argument("--out", required=True, help="WAV file to create")
    get.add_argument("--reason", type=reason, required=True, help="why (goes into the audit ledger)")
    get.set_defaults(fn=cmd_get)
    ver = with_config(rec.add_parser("verify", help="check stored ciphertext against the manifest"))
    which = ver.add_mutually_exclusive_group(required=True)
    which.add_argument("recording_id", nargs="?")
    which.add_argument("--all", action="store_true")
    ver.set_defaults(fn=cmd_verify)
    adopt = with_config(rec.add_parser("adopt", help="archive a spool file the archiver left alone"))
    adopt.add_argument("path")
    adopt.add_argument("--retention-class", default="default")
    adopt.add_argument("--reason", type=reason, required=True, help="why (goes into the ledger)")
    adopt.set_defaults(fn=cmd_adopt)
    retry = with_config(rec.add_parser("retry", help="queue a quarantined dead letter for archiving again"))
    retry.add_argument("recording_id")
    retry.add_argument("--reason", type=reason, required=True, help="why (goes into the ledger)")
    retry.set_defaults(fn=cmd_retry)
    erase = with_config(rec.add_parser("erase", help="erase a quarantined dead letter (spool file and "
                                                     "anything already stored)"))
    erase.add_argument("recording_id")
    erase.add_argument("--reason", type=reason, required=True, help="why (goes into the ledger)")
    erase.set_defaults(fn=cmd_erase)
