"""Mid-call controls over AMI: PCI pause/resume.

Pausing uses ``MixMonitorMute`` (Asterisk 21+ has no PauseMonitor): MixMonitor
keeps writing silence, so the timeline of the recording is kept and the paused span
is exactly what the ledger says. Every control is written to the ledger after
Asterisk confirmed it. The agent page and `callvault call pause` find the recording
by its channel (:func:`set_paused`); the feature codes and the IVR's Gosub by the
call (``agi.handlers.pci``); both end in :func:`apply_pause`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from storage.catalog import Catalog, Recording
from storage.entries import PauseBody

from .errors import AgiError
from .handlers.consent import AppendEvent
from .inline import to_thread

if TYPE_CHECKING:  # AMI (panoramisk) only where a caller has a client: not in classic AGI
    from .ami import AmiClient

# Mutes (True) or unmutes the MixMonitor on a channel; raises if Asterisk refused.
MuteMixMonitor = Callable[[str, bool], Awaitable[None]]


class ControlError(AgiError):
    """A mid-call control could not be applied (no such call, nothing recording)."""


def ami_mute(ami: AmiClient) -> MuteMixMonitor:
    async def mute(channel: str, paused: bool) -> None:
        await ami.action("MixMonitorMute", Channel=channel, Direction="both", State="1" if paused else "0")

    return mute


def _active(catalog: Catalog, channel: str) -> Recording:
    # The product's channel name is what MixMonitor runs on; match it exactly.
    found = [r for r in catalog.search(state="recording", limit=1000) if r.channel == channel]
    if not found:
        raise ControlError(f"no recording in progress on channel {channel!r}")
    return found[-1]


async def apply_pause(mute: MuteMixMonitor, catalog: Catalog, append: AppendEvent, rec: Recording,
                      paused: bool, *, actor: str, trigger: str) -> Recording:
    """Mute or unmute ``rec``'s MixMonitor, then store the interval and the ledger entry."""
    if trigger not in PauseBody.TRIGGERS:
        raise ValueError(f"unknown pause trigger {trigger!r}")
    sent = time.time()
    await mute(rec.channel, paused)
    # Asterisk acted between the request and its answer: the midpoint is closest.
    now = (sent + time.time()) / 2
    await to_thread(catalog.add_pause if paused else catalog.end_pause, rec.recording_id, now)
    body = PauseBody(rec.recording_id, rec.channel, now, actor, trigger)
    await append(PauseBody.kind(paused), body.to_body(), call_id=rec.linkedid, recording_id=rec.recording_id)
    return await to_thread(catalog.get, rec.recording_id)


async def set_paused(ami: AmiClient, catalog: Catalog, append: AppendEvent, channel: str,
                     paused: bool, *, actor: str, trigger: str) -> Recording:
    rec = await to_thread(_active, catalog, channel)
    return await apply_pause(ami_mute(ami), catalog, append, rec, paused, actor=actor, trigger=trigger)
