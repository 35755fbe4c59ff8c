"""Composition: the pieces from agi/, archiver/, announcements/ and storage/ wired for serve."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

from aiohttp import web

from agi.ami import AmiClient, AmiEvent
from agi.handlers.consent import CORE_FALLBACK, ConsentDeps, RecordingStart, consent
from agi.handlers.revoke import RevokeDeps, revoke
from agi.handlers.status import StatusDeps, status
from agi.routes import RouteTable
from announcements.errors import AnnouncementError
from announcements.library import fallback_chain, resolve
from archiver.service import Archiver
from storage.catalog import Catalog, Recording
from storage.hmac_index import caller_hmac

from .keys import AppKeys as K

log = logging.getLogger(__name__)


def load_hmac_key(path: Path) -> bytes:
    """The key for caller-number HMACs: created once (0600), then never changed.

    Changing it would make earlier recordings unfindable by phone number.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
    if len(key) < 16:
        raise ValueError(f"{path}: HMAC key is {len(key)} bytes; expected 32 (delete it only "
                         "if no recordings exist yet)")
    return key


def prompt_resolver(sounds_dir: Path):
    """callvault/<lang>/<name> along the language's fallback chain, else a core sound."""

    def prompt(language: str, name: str) -> str:
        try:
            return resolve(fallback_chain(language), name, sounds_dir)
        except AnnouncementError:
            return CORE_FALLBACK[name]

    return prompt


def build_routes(app: web.Application) -> RouteTable:
    config = app[K.config]
    ledger, catalog, key = app[K.ledger], app[K.catalog], app[K.hmac_key]
    prompt = prompt_resolver(config.prompts.sounds_dir)

    async def on_recording(start: RecordingStart) -> None:
        await asyncio.to_thread(catalog.add, Recording(
            recording_id=start.recording_id, consent_id=start.consent_id, uniqueid=start.uniqueid,
            linkedid=start.linkedid, channel=start.channel,
            spool_path=str(config.spool.dir / Path(start.path).name), caller_hmac=start.caller_hmac,
            did=start.did, agent="", rule=start.rule.name, jurisdiction=start.rule.jurisdiction,
            retention_class=start.rule.retention, consent_state="granted", started_at=start.started_at))

    async def stop_mixmonitor(channel: str) -> None:
        await app[K.ami].action("StopMixMonitor", Channel=channel)

    consent_deps = ConsentDeps(policy=config.consent, append=ledger.append_async,
                               caller_hmac=lambda n: caller_hmac(key, n), prompt=prompt,
                               spool_dir=config.spool.asterisk_path, on_recording=on_recording)
    revoke_deps = RevokeDeps(catalog=catalog, append=ledger.append_async,
                             stop_mixmonitor=stop_mixmonitor, prompt=prompt)
    status_deps = StatusDeps(ledger=ledger)
    return RouteTable([
        ("consent", lambda s: consent(s, consent_deps)),
        ("revoke", lambda s: revoke(s, revoke_deps)),
        ("status", lambda s: status(s, status_deps)),
    ])


def connect_intake(ami: AmiClient, archiver: Archiver) -> None:
    """A recording is complete when its channel hangs up or MixMonitor is stopped.

    Asterisk raises no MixMonitorStop for a MixMonitor still running at hangup,
    so both events count; the spool scan catches anything missed while AMI was down.
    """

    async def ended(event: AmiEvent) -> None:
        uniqueid = event.get("Uniqueid")
        if uniqueid:
            await archiver.recording_ended(uniqueid=uniqueid)

    ami.on_event("Hangup", ended)
    ami.on_event("MixMonitorStop", ended)


def build_archiver(app: web.Application) -> Archiver:
    config = app[K.config]
    return Archiver(config.spool.dir, scan_interval=config.spool.scan_interval)
