"""`callvault subject find|export`: what the appliance holds about one caller number
(docs/data-subjects.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
from pathlib import Path

from archiver.dsar import Subject, find_subject, new_passphrase, write_bundle
from archiver.errors import ArchiverError
from storage import private
from storage.errors import StorageError
from storage.hmac_index import load_hmac_key, subject_hmacs
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


def _find(config: cfg.Config, db, number: str) -> Subject:
    hmacs = subject_hmacs(load_hmac_key(config.privacy.hmac_key_file), number, config.privacy.default_country)
    if not hmacs:
        raise ValueError(f"{number!r} has no digits: give the caller's telephone number")
    return find_subject(compose.catalog(config, db), Ledger(db), hmacs)


@_guard
def cmd_find(args: argparse.Namespace) -> int:
    config = load_config(args)
    with database(config) as db:
        subject = _find(config, db, args.number)
    if args.json:
        print(json.dumps(subject.as_dict(), indent=2))
        return 0
    print(f"recordings ({len(subject.recordings)}):")
    print(f"  {'recording':26} {'started (UTC)':20} {'state':10} {'consent':9} {'retain until':20} hold")
    for r in subject.recordings:
        print(f"  {r.recording_id:26} {(iso(r.started_at) or '')[:19]:20} {r.state:10} {r.consent_state:9} "
              f"{(iso(r.retain_until) or '-')[:19]:20} {'yes' if r.legal_hold else 'no'}")
    print(f"consent events ({len(subject.consents)}):")
    for c in subject.consents:
        print(f"  {(c['started_at'] or '')[:19]:20} {c['outcome']:10} recorded: {'yes' if c['record'] else 'no':4} "
              f"{c['recording_id'] or '-':26} rule {c['rule']}")
    print(f"accesses ({len(subject.accesses)}):")
    for a in subject.accesses:
        print(f"  {a['at'][:19]:20} {a['kind']:16} {a['recording_id']:26} by {a['actor']} ({a['via']}): {a['reason']}")
    return 0


@_guard
def cmd_export(args: argparse.Namespace) -> int:
    config = load_config(args)
    out = Path(args.out)
    if out.exists():
        return fail(f"{out} exists; refusing to overwrite", 2)
    identity = identity_file(args, config)
    if identity is None:
        return fail(NO_IDENTITY, 2)
    identities = read_identities(identity)
    passphrase = new_passphrase()
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")

    def progress(i: int, n: int, rid: str, size: int) -> None:
        print(f"recording {i}/{n} {rid}: {size} bytes", file=sys.stderr, flush=True)

    archive = compose.build_archive(config)
    try:
        with database(config) as db:
            subject = _find(config, db, args.number)
            fd = private.create_file(tmp, exclusive=True)
            try:
                with os.fdopen(fd, "wb") as f:
                    manifest = write_bundle(subject, archive=archive, identities=identities, ledger=Ledger(db),
                                            reference=args.reference, actor=os_account(), write=f.write,
                                            passphrase=passphrase, progress=progress)
                    f.flush()
                    os.fsync(f.fileno())
                os.link(tmp, out)  # appears only complete; never overwrites
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    finally:
        archive.close()
    print(f"{out}: {len(manifest['files'])} files, {len(subject.consents)} consent events; "
          "open it with `age -d` and the passphrase below (shown once)", file=sys.stderr)
    print(f"passphrase: {passphrase}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("subject", help="data-subject requests: a caller's recordings, consents and accesses")
    cmds = s.add_subparsers(dest="subject_cmd", required=True)
    find = with_config(cmds.add_parser("find", help="everything held about a telephone number"))
    find.add_argument("number", help="the caller's number, international (+27...) or national (0...)")
    find.add_argument("--json", action="store_true")
    find.set_defaults(fn=cmd_find)
    exp = with_config(cmds.add_parser("export", help="write the subject access bundle (age-encrypted zip)"))
    exp.add_argument("number", help="the caller's number")
    exp.add_argument("--reference", type=reason, required=True, help="the request's reference (goes into the ledger)")
    exp.add_argument("--out", required=True, help="the bundle to create (.zip.age)")
    exp.add_argument("--identity", type=Path, help="age identity file; default [web] identity_file")
    exp.set_defaults(fn=cmd_export)
