"""The composition root: the appliance's parts built from a ``Config``, in one place.

Everything that turns configuration into working objects lives here, and only here:
the database, the Archive (both blob stores), the archiver, the AGI routes with the
prompt resolver, the AMI client and the intake that tells the archiver a recording
ended. ``callvault serve`` (appliance/service.py), the classic AGI entry point
(appliance/classicagi.py), the CLI (appliance/cli/) and the web app take what they
need from it; none of them builds a part on its own.

Builders never create storage: a local root that is missing (a volume not mounted)
or an S3 bucket without Object Lock is refused at start. ``init_archive`` (`callvault
storage init`) creates it, once, on purpose.

Imports are made where they are needed: the classic AGI entry point runs one process
per call and must not pay for boto3 or the archiver to build its routes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agi.ami import AmiClient
    from agi.controls import MuteMixMonitor
    from agi.routes import RouteTable
    from announcements.linkwatch import LinkWatch
    from archiver.archive import Archive
    from archiver.retention import RetentionSweeper
    from archiver.service import Archiver
    from storage.age import Recipient
    from storage.blobstore import BlobStore
    from storage.catalog import Catalog
    from storage.db import Database
    from storage.ledger import Ledger

    from .config import Config

WORK_DIR_NAME = ".callvault-work"  # in the spool: same filesystem, ciphertext only
PAYLOAD_PART_SIZE = 8 << 20
PAYLOAD_CONCURRENCY = 3

StopMixMonitor = Callable[[str], Awaitable[bool]]


# -- storage -----------------------------------------------------------------------------

def open_database(config: Config) -> Database:
    from storage.dburl import open_database as open_url

    return open_url(config.database.url)


def catalog(config: Config, db: Database) -> Catalog:
    """The catalog as this node sees it: its archive jobs are ``[node] name``'s."""
    from storage.catalog import Catalog

    return Catalog(db, node=config.node.name)


def _stores(config: Config) -> tuple[BlobStore, BlobStore]:
    """(payload store, header store). Local: ``payload/`` and ``keys/`` under ``[storage]
    path``. S3: ``bucket`` (Object Lock) and ``header_bucket`` (deletable)."""
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
        headers = S3Store(settings, s.header_bucket, object_lock=False)
    except BaseException:
        payload.close()
        raise
    return payload, headers


def build_archive(config: Config) -> Archive:
    """The Archive the config names (not created, not checked: see ``init_archive``)."""
    from archiver.archive import Archive

    return Archive(*_stores(config))


def init_archive(config: Config) -> list[str]:
    """Create the archive storage ``config`` names (idempotent), check it, and say what
    it is. Local: the two store layouts. S3: the payload bucket with Object Lock and the
    header bucket without (versioned); an existing payload bucket without Object Lock is
    refused (Object Lock cannot be turned on for a bucket S3 already holds objects in).
    With the storage roles configured, the bucket policies of the pbx and retrieval
    users are written (run it with the admin keys: the bucket owner's)."""
    from archiver.archive import Archive

    s = config.storage
    if s.backend == "local":
        from storage.localstore import LocalStore

        archive = Archive(LocalStore.create(s.path / "payload"), LocalStore.create(s.path / "keys"))
        where = [f"payload: {s.path / 'payload'}", f"headers: {s.path / 'keys'}"]
    else:
        archive = build_archive(config)
        where = [f"payload (Object Lock): s3://{s.bucket} at {s.endpoint_url or 'AWS'}",
                 f"headers: s3://{s.header_bucket} at {s.endpoint_url or 'AWS'}"]
    try:
        if s.backend == "s3":
            archive.payload.create_bucket(lock=True)  # type: ignore[attr-defined]
            archive.headers.create_bucket(lock=False)  # type: ignore[attr-defined]
            # A PUT over a header then adds a version instead of destroying the old one.
            archive.headers.enable_versioning()  # type: ignore[attr-defined]
            where += _role_policies(config, archive)
        archive.check_setup()
        return where
    finally:
        archive.close()


def _role_policies(config: Config, archive: Archive) -> list[str]:
    """Write the pbx and retrieval bucket policies when ``[storage]`` names the roles."""
    from storage.s3policy import bucket_policy

    from .storageroles import roles_configured

    s = config.storage
    if not roles_configured(s):
        return []
    for store, payload in ((archive.payload, True), (archive.headers, False)):
        store.set_policy(bucket_policy(store.bucket, payload=payload,  # type: ignore[attr-defined]
                                       pbx=s.pbx_principal, retrieval=s.retrieval_principal))
    return [(f"policies: pbx = {s.pbx_principal} (write and verify, never delete), "
             f"retrieval = {s.retrieval_principal} (erase, legal holds) on s3://{s.bucket} and "
             f"s3://{s.header_bucket}")]


# -- the archiver --------------------------------------------------------------------------

def recipients(config: Config) -> list[Recipient]:
    """``[archive] recipients``; ``SetupError`` naming the key when they cannot be used."""
    from archiver.errors import SetupError
    from storage.errors import StorageError
    from storage.keys import load_recipients

    try:
        return load_recipients(config.archive.recipients)
    except StorageError as e:
        raise SetupError(f"[archive] recipients: {e}; run `callvault keys generate` and add the "
                         "public key (age1...)") from None


def rule_retention(config: Config) -> dict[str, str]:
    """Consent rule name -> retention class (the built-in default rule included)."""
    return {"default": "default", **{r.name: r.retention for r in config.consent.rules}}


def build_archiver(config: Config, catalog: Catalog, ledger: Ledger, archive: Archive, *,
                   sweeper: RetentionSweeper | None = None) -> Archiver:
    """The archiver `serve` runs, on the process's one Archive, with the retention
    sweeper the web app's legal holds share (None: this node does not sweep). Raises
    ``SetupError`` naming the key to fix."""
    from archiver.pipeline import Pipeline
    from archiver.retention import RetentionPolicy
    from archiver.service import Archiver

    keys = recipients(config)
    policy = RetentionPolicy.parse(config.archive.retention)  # validated by config.load
    pipeline = Pipeline(catalog=catalog, ledger=ledger, archive=archive, recipients=keys,
                        work_dir=config.spool.dir / WORK_DIR_NAME, retention=policy,
                        max_attempts=config.archive.max_attempts)
    return Archiver(config.spool.dir, scan_interval=config.spool.scan_interval, catalog=catalog, ledger=ledger,
                    pipeline=pipeline, sweeper=sweeper,
                    workers=config.archive.workers, rule_retention=rule_retention(config))


def connect_intake(ami: AmiClient, archiver: Archiver) -> None:
    """A recording is complete when its channel hangs up or MixMonitor is stopped.

    Asterisk raises no MixMonitorStop for a MixMonitor still running at hangup,
    so both events count; the spool scan catches anything missed while AMI was down.
    """
    from agi.ami import AmiEvent

    async def ended(event: AmiEvent) -> None:
        uniqueid = event.get("Uniqueid")
        if uniqueid:
            await archiver.recording_ended(uniqueid=uniqueid)

    ami.on_event("Hangup", ended)
    ami.on_event("MixMonitorStop", ended)


# -- Asterisk ---------------------------------------------------------------------------------

def ami_client(config: Config) -> AmiClient:
    """The product's AMI session (not started)."""
    from agi.ami import AmiClient

    c = config.ami
    return AmiClient(c.host, c.port, c.username, c.secret.reveal() if c.secret else "",
                     reconnect_min=c.reconnect_min, reconnect_max=c.reconnect_max)


def prompt_resolver(sounds_dir: Path, *, link_watch: LinkWatch | None = None):
    """The installed prompt (``InstalledPrompt``: sound name and proof) for a language
    and prompt name, along the language's fallback chain, from the installed set's
    manifest; None when it is not installed (nothing stands in for it).

    Installs swap the ``callvault`` symlink to a new, never modified stage
    directory, so the manifest is read, and each prompt resolved, once per link
    target, and a new install is seen at once. On the thread of ``link_watch``'s event
    loop (serve's) the link is read again only after the sounds directory changed
    (``announcements.linkwatch``: an inotify watch the loop reads before the tasks of
    each turn); elsewhere one readlink() per lookup. A hand-made ``callvault``
    directory (not a link) is read every time.
    """
    from announcements.catalog import fallback_chain
    from announcements.errors import PromptNotFound
    from announcements.manifest import SOUNDS_SUBDIR, Manifest, resolve

    link = Path(sounds_dir) / SOUNDS_SUBDIR
    # link target, its Manifest (or None: nothing installed), (language, name) -> prompt
    cached: list = [None, None, {}]

    def read_link() -> str | None:
        try:
            return os.readlink(link)
        except FileNotFoundError:
            return ""  # nothing installed
        except OSError:
            return None  # a real directory: may change in place

    if link_watch is not None:
        import asyncio

        running_loop = asyncio._get_running_loop  # this thread's loop, or None

    def watched_target() -> str | None:
        w = link_watch
        if running_loop() is not w.loop or w.broken:
            return read_link()
        if w.current:
            return cached[0]
        w.current = True  # before the read: a change after it clears this again
        target = read_link()
        if target is None:
            w.current = False
        return target

    def prompt(language: str, name: str):
        target = read_link() if link_watch is None else watched_target()
        if target is None or target != cached[0]:
            cached[:] = [target, Manifest.load(link) if target != "" else None, {}]
        if cached[1] is None:
            return None
        found = cached[2]
        key = (language, name)
        if key in found and target is not None:
            return found[key]
        try:
            result = resolve(fallback_chain(language), name, sounds_dir, manifest=cached[1])
        except PromptNotFound:
            result = None
        if len(found) < 1024:
            found[key] = result
        return result

    return prompt


def notice_problems(config: Config, where: str) -> list[str]:
    """One line for each implied or opt-out rule whose notice is not installed for
    its language chain (or was changed after install): such a rule would record
    callers who never heard a notice. Reads the manifest and hashes the files."""
    from announcements.catalog import fallback_chain
    from announcements.errors import PromptNotFound
    from announcements.manifest import SOUNDS_SUBDIR, Manifest, resolve
    from storage.prompt_names import keyed_name

    sounds = config.prompts.sounds_dir
    manifest = Manifest.load(sounds / SOUNDS_SUBDIR)
    fix = (f"run `callvault prompts build` (with --keys AR for a rule's keys) and "
           f"`callvault prompts install --sounds-dir {sounds}`, or give the rule a language that has its notice")
    problems = []
    for rule in config.consent.rules:
        if rule.mode not in ("implied", "opt-out"):
            continue
        name = keyed_name(f"notice-{rule.mode}", rule.allow_key, rule.refuse_key)
        chain = fallback_chain(rule.prompt_language)
        at = (f"{where}: [[consent.rules]] {rule.name!r} (mode = {rule.mode!r}, "
              f"prompt_language = {rule.prompt_language!r})")
        try:
            found = resolve(chain, name, sounds, manifest=manifest)
        except PromptNotFound:
            why = "nothing is installed (no manifest)" if manifest is None else f"tried {', '.join(chain)}"
            problems.append(f"{at}: {name} is not installed under {sounds / SOUNDS_SUBDIR} ({why}); {fix}")
            continue
        damage = manifest.damage(found) if manifest is not None else None
        if damage:
            problems.append(f"{at}: {name} for {found.language!r}: {damage}; {fix}")
    return problems


AGI_ROUTES = ("consent", "callee", "revoke", "pause", "resume", "status")


def agi_routes(config: Config, *, ledger: Ledger, catalog: Catalog, hmac_key: bytes,
               stop_mixmonitor: StopMixMonitor, mute_mixmonitor: MuteMixMonitor,
               blocking: bool = False, only: str | None = None,
               link_watch: LinkWatch | None = None) -> RouteTable:
    """The AGI routes with their dependencies; FastAGI and classic AGI differ only in
    how MixMonitor is stopped and muted (AMI vs ``EXEC StopMixMonitor``, no mute) and
    in how writes commit: through the group-commit writer on FastAGI's event loop,
    or with ``blocking`` (classic AGI: one call per process, run by ``agi.inline``
    without a loop) in the calling thread. Either way a write is durable before the
    handler goes on. ``link_watch``: the FastAGI loop's watch on the sounds directory
    (``prompt_resolver``).

    ``only`` builds just that route (one of :data:`AGI_ROUTES`; none if unknown): a
    classic AGI process serves one route and imports no other handler."""
    from agi.inline import to_thread
    from agi.routes import RouteTable

    prompt = prompt_resolver(config.prompts.sounds_dir, link_watch=link_watch)
    append = _blocking_append(ledger) if blocking else ledger.append_async

    @functools.cache  # one set, shared by consent and callee
    def consent_deps():
        from agi.handlers.consent import ConsentDeps, RecordingStart
        from storage.catalog import Recording
        from storage.entries import ConsentBody
        from storage.hmac_index import caller_hmac
        from storage.objections import Objections

        spool_dir = str(config.spool.dir)

        def recording(start: RecordingStart) -> Recording:
            # The file Asterisk writes, under our own view of the spool (no pathlib: per call).
            return Recording.from_consent(
                start.consent, spool_path=os.path.join(spool_dir, start.path.rpartition("/")[2]),
                retention_class=start.rule.retention, consent_state="granted", started_at=start.started_at)

        async def on_recording(start: RecordingStart) -> None:
            if blocking:
                catalog.add(recording(start))
            else:
                await catalog.add_async(recording(start))

        async def append_recording(start: RecordingStart) -> None:
            # The consent entry and the catalog row commit together (one fsync).
            c = start.consent
            also = catalog.add_op(recording(start))
            if blocking:
                ledger.append(ConsentBody.KIND, c.to_body(), call_id=c.linkedid, recording_id=c.recording_id,
                              also=also)
            else:
                await ledger.append_async(ConsentBody.KIND, c.to_body(), call_id=c.linkedid,
                                          recording_id=c.recording_id, also=also)

        objections = Objections(catalog.db, hold=not blocking)

        async def objected(hmac: str) -> str | None:
            if catalog.db.dialect == "sqlite":
                # An indexed read of a local file (5-10 us) costs less here than a worker
                # thread's hand-off and wake-ups (some 0.3 ms of serve's CPU per real call).
                return objections.objected(hmac)
            return await to_thread(objections.objected, hmac)

        return ConsentDeps(policy=config.consent, append=append,
                           caller_hmac=lambda n: caller_hmac(hmac_key, n), prompt=prompt,
                           spool_dir=config.spool.asterisk_path, on_recording=on_recording,
                           append_recording=append_recording, channels=config.archive.channels,
                           objected=objected)

    def consent_route():
        from agi.handlers.consent import consent

        deps = consent_deps()
        return lambda s: consent(s, deps)

    def callee_route():
        from agi.handlers.callee import CalleeDeps, callee

        deps = CalleeDeps(consent=consent_deps(), ledger=ledger)
        return lambda s: callee(s, deps)

    def revoke_route():
        from agi.handlers.revoke import RevokeDeps, revoke

        deps = RevokeDeps(catalog=catalog, append=append, stop_mixmonitor=stop_mixmonitor, prompt=prompt)
        return lambda s: revoke(s, deps)

    def pci_route(paused: bool):
        from agi.handlers.pci import PciDeps, pci

        deps = PciDeps(catalog=catalog, append=append, mute=mute_mixmonitor, prompt=prompt)
        return lambda s: pci(s, deps, paused)

    def status_route():
        from agi.handlers.status import StatusDeps, status

        deps = StatusDeps(ledger=ledger)
        return lambda s: status(s, deps)

    builders = {"consent": consent_route, "callee": callee_route, "revoke": revoke_route,
                "pause": lambda: pci_route(True), "resume": lambda: pci_route(False), "status": status_route}
    return RouteTable([(name, build()) for name, build in builders.items() if only in (None, name)])


def _blocking_append(ledger: Ledger):
    async def append(kind: str, body: dict, *, call_id: str | None = None,
                     recording_id: str | None = None) -> object:
        return ledger.append(kind, body, call_id=call_id, recording_id=recording_id)

    return append
