"""The called party's consent, in the pre-bridge subroutine of ``Dial(..., U(callvault-callee))``.

Asterisk runs the subroutine on the called channel once it answers and before the
two are bridged. The caller's consent entry (same linkedid) names the rule:

* a one-party rule (``parties = "one"``): nothing to do, the caller's answer stands;
* an all-party rule whose caller did not allow recording: nothing is asked, the
  call is not recorded;
* an all-party rule whose caller allowed it: the called party hears the rule's
  notice and answers with its keys. Their entry (``party = "callee"``) is appended,
  durably, and only then, if they allowed it, MixMonitor starts on the called
  channel (it hears both sides once they are bridged). A refusal leaves the call
  unrecorded; with ``callee_refuses = "hangup"`` the subroutine sets
  ``GOSUB_RESULT=ABORT`` and Dial hangs up both legs.

No caller entry (the caller's side never ran the consent route) or a rule no longer
configured: nothing is recorded and the variables say ``error``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from storage.entries import ConsentBody
from storage.ledger import Ledger

from .. import variables as v
from ..inline import to_thread
from ..interface import AgiSession
from .consent import Asked, ConsentDeps, ask_party, dialplan_tail, linkedid_of

log = logging.getLogger(__name__)

HANGUP_RESULT = "ABORT"  # Dial's U() subroutine: hang up both legs


@dataclass(frozen=True)
class CalleeDeps:
    consent: ConsentDeps
    ledger: Ledger


def _caller_entry(ledger: Ledger, linkedid: str) -> ConsentBody | None:
    found = [ConsentBody.from_body(e.data) for e in ledger.find(call_id=linkedid, kind=ConsentBody.KIND)]
    callers = [c for c in found if not c.by_callee]
    return callers[-1] if callers else None


async def callee(session: AgiSession, deps: CalleeDeps) -> None:
    linkedid = await linkedid_of(session, 0)
    first = await to_thread(_caller_entry, deps.ledger, linkedid)
    rule = deps.consent.policy.named(first.rule) if first is not None else None
    if first is None or rule is None:
        why = "no consent entry for this call" if first is None else f"rule {first.rule!r} is not configured"
        log.warning("called party not asked: %s; not recorded", why)
        await _set(session, v.ERROR, v.NO)
        return
    if not rule.all_parties:
        await _set(session, first.outcome, v.YES if first.record else v.NO)
        return
    if first.outcome not in (v.GRANTED, v.IMPLIED):
        log.info("called party not asked: the caller's answer was %s; not recorded", first.outcome)
        await _set(session, first.outcome, v.NO)
        return
    asked = Asked(ConsentBody.CALLEE, rule, linkedid, first.did, first.dialled, first.caller_hmac,
                  starts_recording=True, dialplan_tail=dialplan_tail(session))
    outcome = await ask_party(session, deps.consent, asked)
    if (outcome is None or not outcome.record) and rule.callee_refuses == "hangup":
        await session.set_variable("GOSUB_RESULT", HANGUP_RESULT)


async def _set(session: AgiSession, consent: str, record: str) -> None:
    await session.set_variables((v.CONSENT, consent), (v.RECORD, record))


