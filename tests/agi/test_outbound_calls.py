"""Outbound calls under an all-party rule, and a rule with its own keys: real Asterisk 22,
the generated callvault-outbound and callvault-callee contexts, our FastAGI.

The lab's outbound context runs ``Gosub(callvault-outbound,...)`` then
``Dial(Local/<number>@callvault-lab-far/n,30,U(callvault-callee))``: the called
party is the far Local channel, whose ``;1`` half runs the subroutine and whose
``;2`` half is where the called party's keys come from (AMI PlayDTMF).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from callhelpers import finish, run_call, wait_path

from announcements.library import text_sha256
from announcements.manifest import MANIFEST_NAME
from appliance.keys import AppKeys as K
from appliance.lab.calls import CallDriver
from appliance.lab.harness import LAB_FAR_CONTEXT, LAB_OUT_CONTEXT

pytestmark = pytest.mark.asterisk

NUMBER = "14155550100"
ALL_PARTIES = {"name": "us-ca-all", "match_dialled": ["1415"], "parties": "all", "mode": "opt-in",
               "jurisdiction": "US-CA", "timeout": 4.0, "repeats": 0, "callee_refuses": "hangup"}
OWN_KEYS = {"name": "za-keys", "mode": "opt-in", "allow_key": 5, "refuse_key": "6", "timeout": 1.5}


def on_far_leg(call, name: str, half: str = ";1", **headers: str):
    """A predicate for an event on the called party's channel of ``call`` (for
    AGIExecStart: GET DATA, the notice)."""
    def match(e) -> bool:
        if name == "AGIExecStart" and not str(e.get("Command", "")).upper().startswith("GET DATA"):
            return False
        return (e.name == name and e.get("Linkedid") == call.caller_uniqueid
                and str(e.get("Channel", "")).startswith(f"Local/{NUMBER}@{LAB_FAR_CONTEXT}")
                and str(e.get("Channel")).endswith(half)
                and all(e.get(k) == v for k, v in headers.items()))
    return match


async def outbound_call(ami, calls, call, callee_key: str):
    """Dial NUMBER; the caller presses 1, then the called party ``callee_key``.
    Returns (the called party's consent event, whether MixMonitor started on its leg)."""
    async with ami.expect(on_far_leg(call, "AGIExecStart")) as far_asks, \
            ami.expect(on_far_leg(call, "UserEvent", UserEvent="CallvaultConsent")) as decided, \
            ami.expect(on_far_leg(call, "MixMonitorStart")) as mixmon:
        async with calls.agi_command(call, "GET DATA") as asked:
            await calls.place(call)
            await asyncio.wait_for(asked, 15)
            await calls.send_dtmf(call, "1")
        started_cmd = await asyncio.wait_for(far_asks, 20)
        far2 = started_cmd.get("Channel")[:-1] + "2"
        await ami.action("PlayDTMF", Channel=far2, Digit=callee_key, Duration="150", timeout=60)
        event = await asyncio.wait_for(decided, 20)
        await asyncio.sleep(0)
        return event, mixmon.done()


def new_call(ami):
    calls = CallDriver(ami, LAB_OUT_CONTEXT)
    return calls, calls.new_call(did=NUMBER, caller_id="2001")


def entries(app, call):
    return [e.data for e in app[K.ledger].find(call_id=call.caller_uniqueid, kind="consent")]


async def test_outbound_all_parties_records_once_the_callee_allows(appliance, ami):
    async with appliance(rules=[ALL_PARTIES]) as app:
        calls, call = new_call(ami)
        event, started = await outbound_call(ami, calls, call, "1")
        assert (event.get("Consent"), event.get("Record")) == ("granted", "yes") and started
        caller, callee = entries(app, call)
        assert (caller["party"], caller["outcome"], caller["record"], caller["recording_id"]) == (
            "caller", "granted", False, None)
        assert caller["dialled"] == NUMBER and caller["did"] == "" and caller["rule"] == "us-ca-all"
        assert (callee["party"], callee["outcome"], callee["record"]) == ("callee", "granted", True)
        assert callee["linkedid"] == caller["linkedid"] == call.caller_uniqueid
        assert callee["channel"].startswith(f"Local/{NUMBER}@{LAB_FAR_CONTEXT}")
        rid = callee["recording_id"]
        await wait_path(appliance.spool / f"{rid}.wav")
        [row] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        assert (row.recording_id, row.consent_id) == (rid, callee["consent_id"])
        await finish(app, ami, calls, call)


async def test_outbound_callee_refusal_records_nothing_and_hangs_up(appliance, ami):
    async with appliance(rules=[ALL_PARTIES]) as app:
        before = set(appliance.spool.iterdir())
        calls, call = new_call(ami)
        async with calls.hangup_of(call) as hung_up:  # callee_refuses = "hangup": Dial ends the call
            event, started = await outbound_call(ami, calls, call, "2")
            assert (event.get("Consent"), event.get("Record")) == ("declined", "no") and not started
            await asyncio.wait_for(hung_up, 10)
        caller, callee = entries(app, call)
        assert (caller["party"], caller["outcome"]) == ("caller", "granted")
        assert (callee["party"], callee["outcome"], callee["reason"], callee["record"]) == (
            "callee", "declined", "pressed-refuse", False)
        assert callee["recording_id"] is None
        await app[K.agi].wait_idle(15)
        assert app[K.catalog].by_linkedid(call.caller_uniqueid) == []
        assert set(appliance.spool.iterdir()) == before


async def test_a_rule_with_its_own_keys_plays_their_notice_and_5_grants(appliance, ami, calls, english_prompts,
                                                                        lab_state):
    async with appliance(rules=[OWN_KEYS]) as app:
        call, event, started = await run_call(app, ami, calls, ["5"])
        assert (event.get("Consent"), event.get("Record")) == ("granted", "yes") and started
        [body] = [e.data for e in app[K.ledger].find(kind="consent") if e.data["uniqueid"] == call.callee_uniqueid]
        assert (body["digits"], body["allow_key"], body["refuse_key"]) == ("5", "5", "6")
        text = english_prompts.catalog.spoken("en", "notice-opt-in-k56")
        assert "5" in text and "6" in text and "1" not in text and "2" not in text
        assert (body["notice"], body["notice_version"]) == ("callvault/en/notice-opt-in-k56",
                                                            f"text-sha256:{text_sha256(text)}")
        manifest = json.loads((Path(lab_state.sounds_host) / "callvault" / MANIFEST_NAME).read_text())
        [ulaw] = [f for f in manifest["files"] if f["path"] == "en/notice-opt-in-k56.ulaw"]
        assert ulaw["keys"] == {"allow": "5", "refuse": "6"} and body["notice_sha256"]["ulaw"] == ulaw["sha256"]
        await finish(app, ami, calls, call)
