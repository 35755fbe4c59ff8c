"""Revoke: the caller or the agent withdraws consent mid-call (feature code).

The recording is flagged for erasure first (the archiver shreds the spool file
instead of archiving it), so a revoke holds even when MixMonitor cannot be stopped.
Then MixMonitor is stopped (over AMI under `serve`: the feature may run on the
agent's channel, not the one recording), and the revoke is written to the ledger
with what was stopped and what goes on being written until its channel hangs up
(``not_stopped``: AMI down, or classic AGI on the other leg).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storage import logcontext
from storage.catalog import Catalog
from storage.entries import RevokeBody

from .. import variables as v
from ..inline import to_thread
from ..interface import AgiSession
from .consent import AppendEvent, PromptResolver, play_optional


@dataclass(frozen=True)
class RevokeDeps:
    catalog: Catalog
    append: AppendEvent
    # Stops the MixMonitor on a channel; False (or an exception) when it could not.
    stop_mixmonitor: Callable[[str], Awaitable[bool]]
    prompt: PromptResolver


log = logging.getLogger(__name__)


async def revoke(session: AgiSession, deps: RevokeDeps) -> None:
    env = session.env
    linkedid = await session.get_variable("CHANNEL(linkedid)") or env.uniqueid
    logcontext.bind(linkedid=linkedid)  # this connection's task only
    recordings = await to_thread(deps.catalog.by_linkedid, linkedid)
    live = [r for r in recordings if r.state == "recording" and not r.erase_requested]
    stopped, not_stopped = [], []
    for rec in live:
        await to_thread(deps.catalog.update, rec.recording_id, erase_requested=1,
                                consent_state="revoked")
        try:
            ok = await deps.stop_mixmonitor(rec.channel)
        except Exception as e:  # AMI down or refused: the erase flag above still holds
            log.warning("revoke: could not stop MixMonitor on %s (%s); recording %s is erased at hang-up",
                        rec.channel, e, rec.recording_id)
            ok = False
        (stopped if ok else not_stopped).append(rec.recording_id)
    body = RevokeBody(linkedid=linkedid, by_channel=env.channel, at=time.time(),
                      recording_ids=tuple(r.recording_id for r in live), stopped=tuple(stopped),
                      not_stopped=tuple(not_stopped))
    await deps.append(RevokeBody.KIND, body.to_body(), call_id=linkedid,
                      recording_id=live[0].recording_id if live else None)
    await session.set_variable(v.CONSENT, v.REVOKED)
    await session.set_variable(v.RECORD, v.NO)
    await session.exec("UserEvent", v.user_event(
        v.USER_EVENT, (v.EVENT_CONSENT, v.REVOKED), (v.EVENT_RECORD, v.NO),
        (v.EVENT_RECORDING_ID, ",".join(body.recording_ids))))
    await play_optional(session, deps.prompt, env.language or "en", "recording-stopped")
