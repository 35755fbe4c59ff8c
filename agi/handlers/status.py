"""Status: set the consent variables on a channel from what the ledger holds.

For dialplan on the agent's side (or after a transfer): ``AGI(agi://.../status)``
sets ``CALLVAULT_CONSENT``, ``CALLVAULT_RECORD`` and ``CALLVAULT_CONSENT_ID`` for
the call this channel belongs to (by linkedid), or ``none``/``no`` if there is none.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.entries import ConsentBody, RevokeBody
from storage.ledger import Ledger

from .. import variables as v
from ..inline import to_thread
from ..interface import AgiSession


@dataclass(frozen=True)
class StatusDeps:
    ledger: Ledger


async def status(session: AgiSession, deps: StatusDeps) -> None:
    linkedid = await session.get_variable("CHANNEL(linkedid)") or session.env.uniqueid
    entries = await to_thread(deps.ledger.find, call_id=linkedid)
    consent, record, consent_id = "none", "no", ""
    for entry in entries:  # oldest first: later facts (revoke) override
        if entry.kind == ConsentBody.KIND:
            body = ConsentBody.from_body(entry.data)
            consent, consent_id = body.outcome, body.consent_id
            record = "yes" if body.record else "no"
        elif entry.kind == RevokeBody.KIND:
            consent, record = "revoked", "no"
    await session.set_variable(v.CONSENT, consent)
    await session.set_variable(v.RECORD, record)
    await session.set_variable(v.CONSENT_ID, consent_id)
