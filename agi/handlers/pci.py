"""PCI pause and resume from the dialplan: an agent's feature code, or an IVR's Gosub.

The channel that runs the route need not be the recorded one (an agent's feature
code runs on the agent's channel, MixMonitor on the caller's): every recording of
the call (by linkedid) still being written is muted or unmuted. The outcome is left
in ``CALLVAULT_PCI`` for the dialplan: an IVR collects card digits only when it is
``paused`` or ``not-recorded``; ``failed`` (Asterisk refused, no AMI) means the
recording is still running. A ``CallvaultPci`` user event tells the agent page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from storage import logcontext
from storage.catalog import Catalog
from storage.entries import PauseBody

from .. import variables as v
from ..controls import ControlError, MuteMixMonitor, apply_pause
from ..errors import AmiError
from ..inline import to_thread
from ..interface import AgiSession
from .consent import AppendEvent, PromptResolver, play_optional

log = logging.getLogger(__name__)

# The first route argument says what ran it: the generated features.conf passes
# "dtmf", the generated Gosub "ivr"; anything else is an administrator's own "agi".
DIALPLAN_TRIGGERS = ("dtmf", "ivr")


@dataclass(frozen=True)
class PciDeps:
    catalog: Catalog
    append: AppendEvent
    mute: MuteMixMonitor
    prompt: PromptResolver


async def pci(session: AgiSession, deps: PciDeps, paused: bool) -> None:
    env = session.env
    trigger = env.args[0] if env.args and env.args[0] in DIALPLAN_TRIGGERS else "agi"
    linkedid = await session.get_variable("CHANNEL(linkedid)") or env.uniqueid
    logcontext.bind(linkedid=linkedid)
    recordings = await to_thread(deps.catalog.by_linkedid, linkedid)
    live = [r for r in recordings if r.state == "recording" and not r.erase_requested]
    outcome = v.PCI_NOT_RECORDED if not live else v.PCI_PAUSED if paused else v.PCI_RECORDING
    done = []
    for rec in live:
        try:
            await apply_pause(deps.mute, deps.catalog, deps.append, rec, paused, actor=env.channel, trigger=trigger)
            done.append(rec.recording_id)
        except (AmiError, ControlError, TimeoutError) as e:  # the dialplan must know it still records
            log.warning("%s: could not %s recording %s on %s (%s)", trigger, PauseBody.kind(paused),
                        rec.recording_id, rec.channel, e)
            outcome = v.PCI_FAILED
    await session.set_variable(v.PCI, outcome)
    if done:
        await session.exec("UserEvent", v.user_event(
            v.PCI_EVENT, (v.EVENT_PCI_STATE, outcome), (v.EVENT_PCI_TRIGGER, trigger),
            (v.EVENT_RECORDING_ID, ",".join(done))))
    if trigger == "dtmf":  # the agent hears that it took; an IVR says what it wants itself
        name = "recording-paused" if paused else "recording-resumed"
        if outcome in (v.PCI_PAUSED, v.PCI_RECORDING):
            await play_optional(session, deps.prompt, env.language or "en", name)
