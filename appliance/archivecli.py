"""The archive's composition and commands: `callvault storage init`, `callvault keys ...`,
`callvault recordings ...`.

``build_stores(config)`` and ``build_archiver(config, catalog, ledger)`` are what
`serve` (appliance/wiring.py) and the commands below use to reach the archive. They
never create storage: a local root that is missing (a volume not mounted) or an S3
bucket without Object Lock is refused at start. ``init_stores(config)`` (`callvault
storage init`) creates it, once, on purpose.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import getpass
import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from archiver.errors import ArchiverError, SetupError
from archiver.manifest import Manifest
from archiver.pipeline import Pipeline
from archiver.retention import RetentionPolicy, RetentionSweeper
from archiver.service import Archiver
from storage.age import VERSION_LINE, Decryptor, Identity
from storage.blobstore import BlobStore, MiB
from storage.catalog import Catalog, Recording
from storage.errors import NotFound, StorageError
from storage.ledger import Ledger

from . import config as cfg
from .cli import DEFAULT_CONFIG, with_config

WORK_DIR_NAME = ".callvault-work"  # in the spool: same filesystem, ciphertext only
PAYLOAD_PART_SIZE = 8 * MiB
PAYLOAD_CONCURRENCY = 2


# -- composition ----------------------------------------------------------------------

def build_stores(config: cfg.Config) -> tuple[BlobStore, BlobStore]:
    """(payload store, key store). Local: ``payload/`` and ``keys/`` under ``[storage] path``.
    S3: ``bucket`` (Object Lock) and ``key_bucket`` (deletable)."""
    s = config.storage
    if s.backend == "local":
        from storage.localstore import LocalStore

        return LocalStore(s.path / "payload"), LocalStore(s.path / "keys")
    from storage.s3store import S3Settings, S3Store

    aws = s.endpoint_url.split("//", 1)[-1].split("/", 1)[0].endswith("amazonaws.com")
    settings = S3Settings(endpoint_url=s.endpoint_url or None, region=s.region or None,
                          access_key_id=s.access_key_id or None,
                          secret_access_key=s.secret_access_key.reveal() if s.secret_access_key else None,
                          addressing_style="auto" if aws else "path")
    payload = S3Store(settings, s.bucket, object_lock=True, part_size=PAYLOAD_PART_SIZE,
                      max_concurrency=PAYLOAD_CONCURRENCY)
    try:
        keys = S3Store(settings, s.key_bucket, object_lock=False)
    except BaseException:
        payload.close()
        raise
    return payload, keys


def init_stores(config: cfg.Config) -> list[str]:
    """Create the archive storage ``config`` names (idempotent), check it, and say what
    it is. Local: the two store layouts. S3: the payload bucket with Object Lock and the
    header bucket without; an existing payload bucket without Object Lock is refused
    (Object Lock cannot be turned on for a bucket S3 already holds objects in)."""
    s = config.storage
    if s.backend == "local":
        from storage.localstore import LocalStore

        payload, keys = LocalStore.create(s.path / "payload"), LocalStore.create(s.path / "keys")
        where = [f"payload: {payload.root}", f"headers: {keys.root}"]
    else:
        payload, keys = build_stores(config)
        where = [f"payload (Object Lock): s3://{s.bucket} at {s.endpoint_url or 'AWS'}",
                 f"headers: s3://{s.key_bucket} at {s.endpoint_url or 'AWS'}"]
    try:
        if s.backend == "s3":
            payload.create_bucket(lock=True)
            keys.create_bucket(lock=False)
        payload.check_setup()
        keys.check_setup()
        return where
    finally:
        payload.close()
        keys.close()


def rule_retention(config: cfg.Config) -> dict[str, str]:
    """Consent rule name -> retention class (the built-in default rule included)."""
    return {"default": "default", **{r.name: r.retention for r in config.consent.rules}}


def build_archiver(config: cfg.Config, catalog: Catalog, ledger: Ledger) -> Archiver:
    """The archiver `serve` runs. Raises ``SetupError`` naming the key to fix."""
    from storage.keys import load_recipients

    try:
        recipients = load_recipients(config.archive.recipients)
    except StorageError as e:
        raise SetupError(f"[archive] recipients: {e}; run `callvault keys generate` and add the "
                         "public key (age1...)") from None
    policy = RetentionPolicy.parse(config.archive.retention)  # validated by config.load
    classes = rule_retention(config)
    payload, keys = build_stores(config)
    pipeline = Pipeline(catalog=catalog, ledger=ledger, payload_store=payload, key_store=keys,
                        recipients=recipients, work_dir=config.spool.dir / WORK_DIR_NAME, retention=policy,
                        max_attempts=config.archive.max_attempts)
    sweeper = RetentionSweeper(catalog, ledger, payload, keys)
    return Archiver(config.spool.dir, scan_interval=config.spool.scan_interval, catalog=catalog, ledger=ledger,
                    pipeline=pipeline, sweeper=sweeper, workers=config.archive.workers, rule_retention=classes)


# -- helpers ----------------------------------------------------------------------------

def _config(args: argparse.Namespace) -> cfg.Config:
    path = args.config
    if path == DEFAULT_CONFIG and not Path(path).exists():
        path = None
    return cfg.load(path, check_paths=False)


@contextlib.contextmanager
def _catalog(config: cfg.Config) -> Iterator[tuple[Catalog, Ledger]]:
    from storage.db import open_database

    db = open_database(config.database.url)
    try:
        yield Catalog(db), Ledger(db)
    finally:
        db.close()


@contextlib.contextmanager
def _stores(config: cfg.Config) -> Iterator[tuple[BlobStore, BlobStore]]:
    payload, keys = build_stores(config)
    try:
        yield payload, keys
    finally:
        payload.close()
        keys.close()


def _passphrase(prompt: str, confirm: bool = False) -> str:
    env = os.environ.get("CALLVAULT_PASSPHRASE")
    if env:
        return env
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise ValueError("the passphrases differ")
    return first


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def _fail(message: str, code: int = 1) -> int:
    print(f"callvault: {message}", file=sys.stderr)
    return code


# -- storage ----------------------------------------------------------------------------

def cmd_storage_init(args: argparse.Namespace) -> int:
    for line in init_stores(_config(args)):
        print(f"ready: {line}")
    return 0


# -- keys -------------------------------------------------------------------------------

def cmd_keys_generate(args: argparse.Namespace) -> int:
    from storage.keys import identity_file_text, write_identity

    identity = Identity.generate()
    if args.out is None:
        if args.passphrase:
            return _fail("--passphrase needs --out FILE", 2)
        sys.stdout.write(identity_file_text(identity))
        print(f"Public key: {identity.recipient}", file=sys.stderr)
        return 0
    passphrase = _passphrase("passphrase for the new identity: ", confirm=True) if args.passphrase else None
    try:
        write_identity(args.out, identity, passphrase)
    except FileExistsError:
        return _fail(f"{args.out} exists; refusing to overwrite a key file", 2)
    except FileNotFoundError:
        return _fail(f"directory of {args.out} does not exist", 2)
    print(f"identity written to {args.out} (mode 0600{', passphrase-protected' if passphrase else ''})")
    print(f"public key: {identity.recipient}")
    print(f'add it to the config:  [archive] recipients = ["{identity.recipient}"]')
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from storage.keys import load_recipients

    config = _config(args)
    if not config.archive.recipients:
        return _fail("no [archive] recipients configured; run `callvault keys generate`")
    for r in load_recipients(config.archive.recipients):
        print(f"{r.fingerprint}  {r}")
    return 0


# -- recordings ---------------------------------------------------------------------------

_LIST_FIELDS = ("recording_id", "state", "consent_state", "rule", "jurisdiction", "retention_class", "did",
                "attempts", "last_error", "legal_hold", "erase_requested", "object_key", "version_id")


def _public(rec: Recording) -> dict[str, Any]:
    """What a listing shows: no caller HMAC, no channel names."""
    out = {k: getattr(rec, k) for k in _LIST_FIELDS}
    for k in ("started_at", "ended_at", "archived_at", "retain_until"):
        out[k] = _iso(getattr(rec, k))
    return out


def cmd_recordings_list(args: argparse.Namespace) -> int:
    config = _config(args)
    with _catalog(config) as (catalog, _):
        rows = catalog.search(state=args.state, limit=args.limit)
    if args.json:
        print(json.dumps([_public(r) for r in rows], indent=2))
        return 0
    print(f"{'recording':26} {'started (UTC)':20} {'state':10} {'consent':9} {'retention':10} retain until")
    for r in rows:
        hold = " HOLD" if r.legal_hold else ""
        print(f"{r.recording_id:26} {(_iso(r.started_at) or '')[:19]:20} {r.state:10} {r.consent_state:9} "
              f"{r.retention_class:10} {(_iso(r.retain_until) or '-')[:19]}{hold}")
    return 0


def _identities(path: Path) -> list[Identity]:
    from storage.keys import load_identities

    encrypted = path.read_bytes()[:len(VERSION_LINE)] == VERSION_LINE
    return load_identities(path, _passphrase(f"passphrase for {path}: ") if encrypted else None)


def cmd_recordings_get(args: argparse.Namespace) -> int:
    config = _config(args)
    out = Path(args.out)
    if out.exists():
        return _fail(f"{out} exists; refusing to overwrite", 2)
    with _catalog(config) as (catalog, ledger):
        try:
            rec = catalog.get(args.recording_id)
        except NotFound:
            return _fail(f"no recording {args.recording_id}")
        if rec.state != "archived":
            return _fail(f"recording {rec.recording_id} is {rec.state}, not archived")
        identities = _identities(Path(args.identity))
        # The audit entry first, then the key is used.
        ledger.append("audit.get", {"recording_id": rec.recording_id, "actor": getpass.getuser(),
                                    "via": "cli", "reason": args.reason,
                                    "identities": [i.fingerprint for i in identities]},
                      call_id=rec.linkedid or None, recording_id=rec.recording_id)
    m = Manifest.from_json(rec.manifest)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    with _stores(config) as (payload_store, key_store):
        try:
            header = key_store.get(rec.header_key)
        except NotFound:
            return _fail(f"recording {rec.recording_id}: its header is gone (crypto-shredded)")
        if hashlib.sha256(header).hexdigest() != m.header_sha256:
            return _fail(f"recording {rec.recording_id}: header does not match the manifest")
        dec = Decryptor(header, identities)
        digest, size = hashlib.sha256(), 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f, \
                    payload_store.open_stream(rec.object_key, rec.version_id or None) as stream:
                for piece in dec.decrypt_stream(stream):
                    f.write(piece)
                    digest.update(piece)
                    size += len(piece)
                f.flush()
                os.fsync(f.fileno())
            if digest.hexdigest() != m.plaintext_sha256 or size != m.plaintext_size:
                return _fail(f"recording {rec.recording_id}: decrypted audio does not match the manifest")
            os.link(tmp, out)  # appears only complete and verified; never overwrites
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    print(f"{rec.recording_id}: {size} bytes written to {out}", file=sys.stderr)
    return 0


def cmd_recordings_verify(args: argparse.Namespace) -> int:
    config = _config(args)
    with _catalog(config) as (catalog, _):
        if args.all:
            rows = catalog.search(state="archived", limit=10_000_000)
        else:
            try:
                rows = [catalog.get(args.recording_id)]
            except NotFound:
                return _fail(f"no recording {args.recording_id}")
    bad = 0
    with _stores(config) as (payload_store, key_store):
        for rec in rows:
            problem = _verify_one(rec, payload_store, key_store)
            bad += problem is not None
            print(f"{rec.recording_id}: {problem or 'ok'}")
    print(f"verified {len(rows)} recording(s), {bad} bad", file=sys.stderr)
    return 1 if bad else 0


def _verify_one(rec: Recording, payload_store: BlobStore, key_store: BlobStore) -> str | None:
    if rec.state != "archived":
        return f"MISMATCH: state is {rec.state}, not archived"
    m = Manifest.from_json(rec.manifest)
    digest, size = hashlib.sha256(), 0
    try:
        with payload_store.open_stream(rec.object_key, rec.version_id or None) as stream:
            for chunk in stream:
                digest.update(chunk)
                size += len(chunk)
        header = key_store.get(rec.header_key)
    except NotFound as e:
        return f"MISSING: {e}"
    if size != m.payload_size or digest.hexdigest() != m.payload_sha256:
        return (f"MISMATCH: payload {rec.object_key} has {size} bytes sha256 {digest.hexdigest()}, "
                f"manifest says {m.payload_size} bytes sha256 {m.payload_sha256}")
    if hashlib.sha256(header).hexdigest() != m.header_sha256:
        return f"MISMATCH: header {rec.header_key} does not match the manifest"
    return None


def cmd_recordings_adopt(args: argparse.Namespace) -> int:
    """Hand a spool file the archiver left alone (no catalog row, no consent entry) to it."""
    config = _config(args)
    path = Path(args.path).resolve()
    if path.parent != config.spool.dir.resolve() or not path.is_file():
        return _fail(f"{path} is not a file in the spool directory {config.spool.dir}", 2)
    rid = path.stem
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,100}", rid):
        return _fail(f"{path.name}: only letters, digits, - and _ may form a recording id; rename it first", 2)
    with _catalog(config) as (catalog, ledger):
        if catalog.by_spool_path(str(path)) is not None or _exists(catalog, rid):
            return _fail(f"{path.name} already has a catalog row")
        now = time.time()
        ledger.append("archive.adopt", {"recording_id": rid, "spool_file": path.name, "actor": getpass.getuser(),
                                        "consent_state": "unknown", "reason": args.reason},
                      recording_id=rid)
        catalog.add(Recording(recording_id=rid, consent_id="", uniqueid="", linkedid="", channel="",
                              spool_path=str(path), caller_hmac="", did="", agent="", rule="",
                              jurisdiction="", retention_class=args.retention_class, consent_state="unknown",
                              started_at=path.stat().st_mtime))
        catalog.mark_ended(rid, now)
    print(f"{path.name} adopted as {rid} (consent unknown); a running archiver picks it up")
    return 0


def _exists(catalog: Catalog, rid: str) -> bool:
    try:
        catalog.get(rid)
    except NotFound:
        return False
    return True


def _guard(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (StorageError, ArchiverError, ValueError) as e:
            return _fail(str(e))
    return run


def add_archive_commands(sub: argparse._SubParsersAction) -> None:
    storage = sub.add_parser("storage", help="archive storage").add_subparsers(dest="storage_cmd", required=True)
    with_config(storage.add_parser("init", help="create the local store or the S3 buckets the config names")
                ).set_defaults(fn=_guard(cmd_storage_init))

    keys = sub.add_parser("keys", help="recording encryption keys").add_subparsers(dest="keys_cmd", required=True)
    gen = keys.add_parser("generate", help="make an age identity (private key) and print its public key")
    gen.add_argument("--out", type=Path, help="write the identity here (0600, never overwritten)")
    gen.add_argument("--passphrase", action="store_true",
                     help="protect the file with a passphrase (asked, or CALLVAULT_PASSPHRASE)")
    gen.set_defaults(fn=_guard(cmd_keys_generate))
    with_config(keys.add_parser("list", help="configured recipients and fingerprints")
                ).set_defaults(fn=_guard(cmd_keys_list))

    rec = sub.add_parser("recordings", help="archived recordings").add_subparsers(dest="rec_cmd", required=True)
    ls = with_config(rec.add_parser("list", help="list recordings in the catalog"))
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--state", help="only this state (archived, failed, pending, ...)")
    ls.add_argument("--limit", type=int, default=200)
    ls.set_defaults(fn=_guard(cmd_recordings_list))
    get = with_config(rec.add_parser("get", help="fetch, decrypt and write one recording as WAV"))
    get.add_argument("recording_id")
    get.add_argument("--identity", required=True, help="age identity file (passphrase asked if protected)")
    get.add_argument("--out", required=True, help="WAV file to create")
    get.add_argument("--reason", default="", help="why (goes into the audit ledger)")
    get.set_defaults(fn=_guard(cmd_recordings_get))
    ver = with_config(rec.add_parser("verify", help="check stored ciphertext against the manifest"))
    which = ver.add_mutually_exclusive_group(required=True)
    which.add_argument("recording_id", nargs="?")
    which.add_argument("--all", action="store_true")
    ver.set_defaults(fn=_guard(cmd_recordings_verify))
    adopt = with_config(rec.add_parser("adopt", help="archive a spool file the archiver left alone"))
    adopt.add_argument("path")
    adopt.add_argument("--retention-class", default="default")
    adopt.add_argument("--reason", default="", help="why (goes into the ledger)")
    adopt.set_defaults(fn=_guard(cmd_recordings_adopt))
