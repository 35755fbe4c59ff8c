"""`callvault erasure plan|request|approve|certificate|verify`: a data subject's recordings
crypto-shredded under an officer's request, with a certificate (archiver/erasure.py)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from archiver.erasure import Eraser, ErasureRefused, render_html, verify_certificate
from archiver.errors import ArchiverError
from storage.erasures import ErasureRequests
from storage.errors import NotFound, StorageError
from storage.ledger import Ledger

from .. import compose
from .. import config as cfg
from .common import (
    database,
    fail,
    guarded,
    load_config,
    os_account,
    reason,
    with_config,
)

_guard = guarded(StorageError, ArchiverError, ValueError)


@contextlib.contextmanager
def _eraser(config: cfg.Config) -> Iterator[Eraser]:
    if config.node.role == "pbx":
        raise ErasureRefused("erasure needs the retrieval keys: run it on a retrieval or all node, not a pbx node")
    archive = compose.build_archive(config)
    try:
        with database(config) as db:
            yield Eraser(compose.catalog(config, db), Ledger(db), archive, ErasureRequests(db),
                         approval=config.privacy.erasure_approval,
                         work_dir=config.spool.dir / compose.WORK_DIR_NAME)
    finally:
        archive.close()


def _selection(config: cfg.Config, args: argparse.Namespace) -> dict[str, Any]:
    if args.recording:
        return {"recording_ids": sorted(set(args.recording))}
    from storage.hmac_index import load_hmac_key, subject_hmacs

    key = load_hmac_key(config.privacy.hmac_key_file)
    return {"caller_hmacs": subject_hmacs(key, args.subject, config.privacy.default_country)}


def _officer(config: cfg.Config, name: str) -> tuple[str, dict[str, Any]]:
    """The officer, authenticated with their web password (CALLVAULT_OFFICER_PASSWORD or
    asked): who they are, and how they acted, for the ledger."""
    from storage.users import Users

    password = os.environ.get("CALLVAULT_OFFICER_PASSWORD") or getpass.getpass(f"password of {name}: ")
    with database(config) as db:
        user = Users(db).authenticate(name, password)
    if user is None or user.role != "officer":
        raise ErasureRefused(f"{name}: not an enabled officer with that password (erasure needs role officer)")
    return user.name, {"os_account": os_account()["actor"], "via": "cli"}


def _print_plan(report: dict[str, Any]) -> None:
    for r in report["erase"]:
        print(f"ERASE  {r['recording_id']}  header {r['header_key']} deleted; payload {r['object_key']} "
              f"stays locked until {r['retain_until']} (unreadable)")
    for r in report["held"]:
        print(f"HELD   {r['recording_id']}  untouched: {r['why']}")
    for r in report["flagged"]:
        print(f"FLAG   {r['recording_id']}  {r['state']}: the archiver erases it instead of archiving")
    for rid in report["already_erased"]:
        print(f"GONE   {rid}  erased before")


@_guard
def cmd_plan(args: argparse.Namespace) -> int:
    config = load_config(args)
    with _eraser(config) as eraser:
        report = eraser.plan(_selection(config, args)).report()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_plan(report)
    print(f"dry run for {args.reference}: {len(report['erase'])} to erase, {len(report['held'])} held, "
          f"{len(report['flagged'])} flagged; nothing changed", file=sys.stderr)
    return 0


@_guard
def cmd_request(args: argparse.Namespace) -> int:
    config = load_config(args)
    officer, via = _officer(config, args.officer)
    with _eraser(config) as eraser:
        req, cert = eraser.request(args.reference, _selection(config, args), officer, via)
    if cert is None:
        print(f"{req.request_id}: waiting for a second officer: callvault erasure approve {req.request_id}")
        return 0
    return _done(req.request_id, cert)


@_guard
def cmd_approve(args: argparse.Namespace) -> int:
    config = load_config(args)
    officer, via = _officer(config, args.officer)
    with _eraser(config) as eraser:
        cert = eraser.approve(args.request_id, officer, via)
    return _done(args.request_id, cert)


def _done(request_id: str, cert: dict[str, Any]) -> int:
    for r in cert["recordings"]:
        print(f"ERASED {r['recording_id']}  ledger seq {r['ledger_seq']}")
    for r in cert["held"]:
        print(f"HELD   {r['recording_id']}  untouched: {r['why']}")
    print(f"{request_id}: {len(cert['recordings'])} erased, {len(cert['held'])} held; "
          f"certificate: callvault erasure certificate {request_id}", file=sys.stderr)
    return 1 if cert["held"] else 0


@_guard
def cmd_certificate(args: argparse.Namespace) -> int:
    config = load_config(args)
    with database(config) as db:
        try:
            req = ErasureRequests(db).get(args.request_id)
        except NotFound as e:
            return fail(str(e))
    if req.certificate is None:
        return fail(f"erasure request {req.request_id} is {req.state}: no certificate yet")
    text = json.dumps(req.certificate, indent=2, sort_keys=True)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.html:
        Path(args.html).write_text(render_html(req.certificate))
    if not (args.json or args.html):
        print(text)
    return 0


@_guard
def cmd_verify(args: argparse.Namespace) -> int:
    config = load_config(args)
    try:
        cert = json.loads(Path(args.certificate).read_text())
    except (OSError, ValueError) as e:
        return fail(f"{args.certificate}: not a readable certificate ({e})", 2)
    archive = compose.build_archive(config)
    try:
        with database(config) as db:
            problems = verify_certificate(cert, Ledger(db), archive)
    finally:
        archive.close()
    for p in problems:
        print(f"FAIL {p}")
    n = len(cert.get("recordings", []))
    print(f"certificate {cert.get('request_id')}: {n} recording(s), "
          f"{'verified against the ledger and the buckets' if not problems else f'{len(problems)} problem(s)'}",
          file=sys.stderr)
    return 1 if problems else 0


def _select(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--subject", metavar="NUMBER", help="every recording of this caller number")
    which.add_argument("--recording", metavar="ID", action="append", help="this recording (repeatable)")
    sp.add_argument("--reference", type=reason, required=True, help="the data-subject request's reference")
    return sp


def add_commands(sub: argparse._SubParsersAction) -> None:
    er = sub.add_parser("erasure", help="erase a data subject's recordings, with a certificate") \
        .add_subparsers(dest="erasure_cmd", required=True)
    plan = _select(with_config(er.add_parser("plan", help="dry run: what would be erased, what is held")))
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(fn=cmd_plan)
    req = _select(with_config(er.add_parser("request", help="request an erasure (runs at once unless "
                                                              "[privacy] erasure_approval = two-person)")))
    req.add_argument("--officer", required=True, help="officer user name (password: CALLVAULT_OFFICER_PASSWORD "
                     "or asked)")
    req.set_defaults(fn=cmd_request)
    ap = with_config(er.add_parser("approve", help="approve another officer's erasure request; it runs"))
    ap.add_argument("request_id")
    ap.add_argument("--officer", required=True, help="approving officer (not the one who requested)")
    ap.set_defaults(fn=cmd_approve)
    cert = with_config(er.add_parser("certificate", help="write an executed request's certificate"))
    cert.add_argument("request_id")
    cert.add_argument("--json", metavar="FILE", help="write the JSON certificate here")
    cert.add_argument("--html", metavar="FILE", help="write the HTML certificate here")
    cert.set_defaults(fn=cmd_certificate)
    ver = with_config(er.add_parser("verify", help="check a JSON certificate against the ledger and the buckets"))
    ver.add_argument("certificate")
    ver.set_defaults(fn=cmd_verify)
