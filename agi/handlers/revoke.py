"""Revoke: the caller or the agent withdraws consent mid-call (feature code).

MixMonitor is stopped over AMI (the feature may run on the agent's channel, not
the one recording), the recording is flagged for erasure (the archiver shreds the
spool file instead of archiving it), and the revoke is written to the ledger.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from storage.catalog import Catalog

from .. import variables as v
from ..session import AgiSession
from .consent import AppendEvent, PromptResolver


@dataclass(frozen=True)
class RevokeDeps:
    catalog: Catalog
    append: AppendEvent
    stop_mixmonitor: Callable[[str], Awaitable[None]]
    prompt: PromptResolver


async def revoke(session: AgiSession, deps: RevokeDeps) -> None:
    env = session.env
    linkedid = await session.get_variable("CHANNEL(linkedid)") or env.uniqueid
    recordings = await asyncio.to_thread(deps.catalog.by_linkedid, linkedid)
    live = [r for r in recordings if r.state == "recording" and not r.erase_requested]
    for rec in live:
        await deps.stop_mixmonitor(rec.channel)
        await asyncio.to_thread(deps.catalog.update, rec.recording_id, erase_requested=1,
                                consent_state="revoked")
    await deps.append("revoke", {
        "linkedid": linkedid, "by_channel": env.channel, "at": time.time(),
        "recording_ids": [r.recording_id for r in live], "action": "stop-and-erase",
    }, call_id=linkedid, recording_id=live[0].recording_id if live else None)
    await session.set_variable(v.CONSENT, "revoked")
    await session.set_variable(v.RECORD, "no")
    await session.exec("UserEvent", f"{v.USER_EVENT},Consent: revoked,Record: no,"
                       f"RecordingId: {','.join(r.recording_id for r in live)}")
    language = env.language or "en"
    await session.stream_file(deps.prompt(language, "recording-stopped"))
