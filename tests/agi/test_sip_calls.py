"""Real SIP calls: SIPp calls the lab Asterisk's PJSIP endpoint, presses keys as RFC 4733
events, and the consent flow (the generated context, our FastAGI server) answers them.

The DID is the Request-URI user, routed into the consent context as a trunk's call
would be; the callers hang up themselves with a BYE.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from callhelpers import OPT_IN, OPT_OUT, archived_wav, wait_state
from prometheus_client.parser import text_string_to_metric_families

from agi.dialplan import AMI_EVENTS
from appliance.keys import AppKeys as K
from appliance.lab.sip import CallerScript, SipCall, place_sip_calls
from appliance.web.state import WebKeys as W

pytestmark = pytest.mark.asterisk

DID = "27215550100"
CALLER = "27215550123"


async def call(lab_state, app, script: CallerScript, did: str = DID):
    run = await place_sip_calls(lab_state.sip_port, [SipCall(CALLER, did)], script)
    assert run.ok, f"SIPp exited {run.returncode}: {run.errors}"
    await app[K.agi].wait_idle(15)
    return [e for e in app[K.ledger].find(kind="consent") if e.data["did"] == did]


async def sip_channels(ami) -> list[dict]:
    return [c for c in await ami.action_list("CoreShowChannels")
            if str(c.get("Channel", "")).startswith("PJSIP/")]


async def no_sip_channels_left(ami, timeout: float = 5.0) -> None:
    """Nothing left dangling in Asterisk: the channels' teardown may trail the ledger
    entry by a moment (the BYE and the AGI hang-up race), never by seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := await sip_channels(ami)) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    assert left == [], [c.get("Channel") for c in left]


async def test_key_1_grants_records_and_archives(appliance, lab_state):
    async with appliance(rules=[OPT_IN]) as app:
        [entry] = await call(lab_state, app, CallerScript("1", wait=1.0, hangup_after=3.0))
        body = entry.data
        assert (body["outcome"], body["reason"], body["digits"]) == ("granted", "pressed-allow", "1")
        assert body["channel"].startswith("PJSIP/lab-phone-") and body["did"] == DID
        wav = await archived_wav(app, appliance, body["recording_id"])
        assert wav[:4] == b"RIFF" and len(wav) > 8000  # seconds of call audio, not a bare header
        assert app[K.catalog].get(body["recording_id"]).consent_id == body["consent_id"]


async def test_key_2_refuses_and_records_nothing(appliance, lab_state):
    async with appliance(rules=[OPT_IN]) as app:
        before = set(appliance.spool.iterdir())
        [entry] = await call(lab_state, app, CallerScript("2", wait=1.0, hangup_after=2.5))
        assert (entry.data["outcome"], entry.data["reason"], entry.data["digits"]) == \
            ("declined", "pressed-refuse", "2")
        assert entry.data["recording_id"] is None
        assert set(appliance.spool.iterdir()) == before
        assert app[K.catalog].by_linkedid(entry.data["linkedid"]) == []
        # callvault_ami_events_total: the call's real events, counted by name, nothing the
        # generated stanza's eventfilter lines keep out.
        text = (await app[W.metrics].render(catalog=None, ami_connected=True, agi={}, archiver={}, live_calls=0,
                                            ami_events=app[K.ami].events_received)).decode()
        [family] = [f for f in text_string_to_metric_families(text) if f.name == "callvault_ami_events"]
        counted = {s.labels["event"]: s.value for s in family.samples if s.name.endswith("_total")}
        assert {"Newchannel", "Hangup", "UserEvent"} <= set(counted) <= set(AMI_EVENTS), counted
        assert counted == dict(app[K.ami].events_received)


@pytest.mark.parametrize("rule, outcome, reason", [(OPT_IN, "declined", "no-answer"),
                                                   (OPT_OUT, "implied", "no-objection")],
                         ids=["opt-in", "opt-out"])
async def test_no_key_gets_the_rules_default(appliance, lab_state, rule, outcome, reason):
    async with appliance(rules=[{**rule, "timeout": 1.0, "repeats": 0}]) as app:
        [entry] = await call(lab_state, app, CallerScript(None, hangup_after=4.5))
        assert (entry.data["outcome"], entry.data["reason"], entry.data["digits"]) == (outcome, reason, "")
        if entry.data["record"]:
            await wait_state(app, entry.data["recording_id"], "archived")
        else:
            assert entry.data["recording_id"] is None


async def test_hangup_during_the_notice_is_abandoned(appliance, lab_state, ami):
    async with appliance(rules=[OPT_IN]) as app:
        before = set(appliance.spool.iterdir())
        [entry] = await call(lab_state, app, CallerScript("1", wait=5.0, hangup_after=0.8))
        assert (entry.data["outcome"], entry.data["reason"]) == ("abandoned", "hangup-during-notice")
        assert entry.data["record"] is False and entry.data.get("recording_id") is None
        assert set(appliance.spool.iterdir()) == before
        await no_sip_channels_left(ami)


CALLS = 50


async def test_fifty_concurrent_sip_calls(appliance, lab_state, ami):
    """25 callers press 1 and 25 press 2, all at once: one ledger entry per call,
    every granted recording archived."""
    pressed = {f"2721560{i:04d}": "1" if i % 2 == 0 else "2" for i in range(CALLS)}
    async with appliance(rules=[{**OPT_IN, "timeout": 10.0}]) as app:
        runs = await asyncio.gather(*(
            place_sip_calls(lab_state.sip_port,
                            [SipCall(f"2782555{did[-4:]}", did) for did, d in pressed.items() if d == key],
                            CallerScript(key, wait=3.0, hangup_after=5.5))
            for key in "12"))
        for run in runs:
            assert run.ok, f"SIPp exited {run.returncode}: {run.errors}"
        await app[K.agi].wait_idle(30)

        entries = [e for e in app[K.ledger].find(kind="consent") if e.data["did"] in pressed]
        assert sorted(e.data["did"] for e in entries) == sorted(pressed)  # exactly one each
        for entry in entries:
            key = pressed[entry.data["did"]]
            assert entry.data["digits"] == key
            assert entry.data["outcome"] == ("granted" if key == "1" else "declined")
        assert app[K.ledger].verify().ok
        granted = [e.data["recording_id"] for e in entries if e.data["outcome"] == "granted"]
        assert len(set(granted)) == CALLS // 2
        await asyncio.gather(*(wait_state(app, rid, "archived", timeout=60) for rid in granted))
        await no_sip_channels_left(ami)


async def test_lab_call_sip_command(appliance, lab_state):
    """`callvault lab call --sip` places the same kind of call by hand and prints the outcome."""
    async with appliance(rules=[OPT_IN]) as app:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "callvault"), "lab", "call", "--sip", "--name", lab_state.name,
            "--did", "27215550177", "--digit", "2", "--wait", "1", "--hangup-after", "2.5",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
        assert proc.returncode == 0, out
        assert "consent: declined  record: no" in out, out
        await app[K.agi].wait_idle(15)
        [entry] = [e for e in app[K.ledger].find(kind="consent") if e.data["did"] == "27215550177"]
        assert entry.data["channel"].startswith("PJSIP/") and entry.data["digits"] == "2"
