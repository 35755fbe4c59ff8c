"""Composition: the pieces from agi/, archiver/, announcements/ and storage/ wired for serve."""

from __future__ import annotations

import logging

from aiohttp import web

from agi.ami import AmiClient, AmiEvent
from agi.routes import RouteTable
from archiver.service import Archiver

from .archivecli import build_archiver as archive_setup
from .classicagi import agi_routes
from .keys import AppKeys as K

log = logging.getLogger(__name__)


def build_routes(app: web.Application) -> RouteTable:
    async def stop_mixmonitor(channel: str) -> bool:
        await app[K.ami].action("StopMixMonitor", Channel=channel)
        return True

    return agi_routes(app[K.config], ledger=app[K.ledger], catalog=app[K.catalog],
                      hmac_key=app[K.hmac_key], stop_mixmonitor=stop_mixmonitor)


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
    """Raises ``archiver.errors.SetupError`` naming the config key to fix."""
    return archive_setup(app[K.config], app[K.catalog], app[K.ledger])
