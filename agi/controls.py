"""Mid-call controls over AMI: PCI pause/resume and revoke.

Pausing uses ``MixMonitorMute`` (Asterisk 21+ has no PauseMonitor): MixMonitor
keeps writing silence, so the timeline of the recording is kept and the paused span
is exactly what the ledger says. Every control is written to the ledger after
Asterisk confirmed it.
"""

from __future__ import annotations

import asyncio
import time
from storage.catalog import Catalog, Recording
from storage.entries import PauseBody

from .ami import AmiClient
from .handlers.consent import AppendEvent
from .errors import AgiError


class ControlError(AgiError):
    """A mid-call control could not be applied (no such call, nothing recording)."""


def _active(catalog: Catalog, channel: str) -> Recording:
    # The product's channel name is what MixMonitor runs on; match it exactly.
    found = [r for r in catalog.search(state="recording", limit=1000) if r.channel == channel]
    if not found:
        raise ControlError(f"no recording in progress on channel {channel!r}")
    return found[-1]


async def set_paused(ami: AmiClient, catalog: Catalog, append: AppendEvent, channel: str,
                     paused: bool, *, actor: str) -> Recording:
    rec = await asyncio.to_thread(_active, catalog, channel)
    await ami.action("MixMonitorMute", Channel=channel, Direction="both", State="1" if paused else "0")
    now = time.time()
    await asyncio.to_thread(catalog.add_pause if paused else catalog.end_pause, rec.recording_id, now)
    await append(PauseBody.kind(paused), PauseBody(rec.recording_id, channel, now, actor).to_body(),
                 call_id=rec.linkedid, recording_id=rec.recording_id)
    return await asyncio.to_thread(catalog.get, rec.recording_id)
