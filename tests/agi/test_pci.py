"""PCI pause and resume from the dialplan, against the real Asterisk with a SIP caller
who talks: the agent's feature codes (dialled on the agent's leg of a bridged call)
and an IVR's Gosub pair. The archived recording must be digital silence exactly in
the interval the ledger holds (within 100 ms), with audio on both sides of it.
"""

from __future__ import annotations

import array
import asyncio
import io
import wave

import pytest
from callhelpers import OPT_IN, archived_wav

from agi import variables as v
from appliance.keys import AppKeys as K
from appliance.lab.harness import (
    AGENT_DID_PREFIX,
    IVR_DID_PREFIX,
    IVR_PAUSE_SECONDS,
    LAB_AGENT_CONTEXT,
)
from appliance.lab.sip import CallerScript, SipCall, place_sip_calls
from appliance.web.state import WebKeys as W

pytestmark = pytest.mark.asterisk

CALLER = "27215550123"
TOLERANCE = 0.1  # seconds: silent span vs. logged interval


def samples_of(wav: bytes) -> tuple[int, array.array]:
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return w.getframerate(), array.array("h", w.readframes(w.getnframes()))


def longest_zero_run(samples: array.array) -> tuple[int, int]:
    """[start, end) of the longest run of samples that are exactly 0."""
    best, start = (0, 0), None
    for i, s in enumerate([*samples, 1]):
        if s == 0 and start is None:
            start = i
        elif s != 0 and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def level(samples: array.array) -> float:
    return sum(abs(s) for s in samples) / max(len(samples), 1)


def assert_silent_exactly(wav: bytes, started: float, ended: float, interval: list[float]) -> None:
    """The recording, written from ``started`` to ``ended`` (Asterisk's clock), is
    digital silence in ``interval`` and not silent for half a second around it.

    Each edge is measured from the nearer end of the file: MixMonitor's timeline
    follows the audio frames, and on a busy machine Asterisk's audiohook drops a few
    to resynchronise the two directions, so the file can come out up to ~0.2 s shorter
    than the wall-clock time it spans.
    """
    rate, samples = samples_of(wav)
    first, end = longest_zero_run(samples)
    silent_from, silent_to_end = first / rate, (len(samples) - end) / rate
    logged_from, logged_to_end = interval[0] - started, ended - interval[1]
    detail = (f"silence from {silent_from:.3f} s after the start to {silent_to_end:.3f} s before the end; "
              f"ledger {logged_from:.3f} s and {logged_to_end:.3f} s")
    assert abs(silent_from - logged_from) <= TOLERANCE, detail
    assert abs(silent_to_end - logged_to_end) <= TOLERANCE, detail
    half = rate // 2
    before, after = samples[max(first - half, 0):first], samples[end:end + half]
    assert len(before) == len(after) == half, detail
    assert level(before) > 200 and level(after) > 200, (detail, level(before), level(after))
    frame = rate // 50
    assert all(any(before[i:i + frame]) and any(after[i:i + frame]) for i in range(0, half, frame)), \
        f"{detail}: a silent 20 ms frame next to the pause"


def pci_event(ami, state: str):
    return ami.expect(lambda e: e.name == "UserEvent" and e.get("UserEvent") == v.PCI_EVENT
                      and e.get(v.EVENT_PCI_STATE) == state)


def mixmonitor_started_on_sip(ami):
    return ami.expect(lambda e: e.name == "MixMonitorStart" and str(e.get("Channel")).startswith("PJSIP/lab-phone-"))


async def press(ami, channel: str, digits: str) -> None:
    for digit in digits:
        await ami.action("PlayDTMF", Channel=channel, Digit=digit, Duration="120", timeout=30)


def assert_on_the_agent_page(app, linkedid: str, by: str) -> None:
    [shown] = app[W.live].calls[linkedid].public()["pauses"]
    assert shown["by"] == by and shown["until"] is not None and shown["until"] > shown["from"]


def pauses(app, rid: str):
    return [(e.kind, e.data) for e in app[K.ledger].find(recording_id=rid) if e.kind in ("pause", "resume")]


async def test_agent_dials_the_pause_and_resume_codes(appliance, lab_state, ami):
    did = AGENT_DID_PREFIX + "5550101"
    agent_leg = f"Local/s@{LAB_AGENT_CONTEXT}-"
    async with appliance(rules=[OPT_IN]) as app:
        async with mixmonitor_started_on_sip(ami) as started, ami.expect(
                lambda e: e.name == "BridgeEnter" and str(e.get("Channel")).startswith(agent_leg)) as bridged:
            sipp = asyncio.create_task(place_sip_calls(
                lab_state.sip_port, [SipCall(CALLER, did)], CallerScript("1", wait=1.0, hangup_after=8.5, talk=True)))
            start = await asyncio.wait_for(started, 20)
            t0, sip_channel = float(start.get("Timestamp")), start.get("Channel")
            leg = (await asyncio.wait_for(bridged, 20)).get("Channel")
        agent = leg.removesuffix(";1") + ";2"  # what the agent's phone sends arrives on ;1, in the bridge
        # The sleeps are the audio recorded around the pause, not waits for an event.
        await asyncio.sleep(1.0)
        async with pci_event(ami, v.PCI_PAUSED) as paused:
            await press(ami, agent, app[K.config].pci.pause_code)
            event = await asyncio.wait_for(paused, 15)
        assert event.get(v.EVENT_PCI_TRIGGER) == "dtmf" and event.get("Channel") == leg
        await asyncio.sleep(1.5)
        async with pci_event(ami, v.PCI_RECORDING) as resumed:
            await press(ami, agent, app[K.config].pci.resume_code)
            await asyncio.wait_for(resumed, 15)
        async with ami.expect(lambda e: e.name == "Hangup" and e.get("Channel") == sip_channel) as hung_up:
            run = await sipp
            t_end = float((await asyncio.wait_for(hung_up, 15)).get("Timestamp"))
        assert run.ok, f"SIPp exited {run.returncode}: {run.errors}"
        await app[K.agi].wait_idle(15)

        [consent] = [e for e in app[K.ledger].find(kind="consent") if e.data["did"] == did]
        rid = consent.data["recording_id"]
        entries = pauses(app, rid)
        assert [k for k, _ in entries] == ["pause", "resume"]
        assert {(d["trigger"], d["actor"], d["channel"]) for _, d in entries} == \
            {("dtmf", leg, consent.data["channel"])}
        [interval] = app[K.catalog].get(rid).pause_intervals
        assert interval == [entries[0][1]["at"], entries[1][1]["at"]]
        assert_on_the_agent_page(app, consent.data["linkedid"], "dtmf")
        assert_silent_exactly(await archived_wav(app, appliance, rid), t0, t_end, interval)


async def test_ivr_gosub_pair_pauses_and_resumes(appliance, lab_state, ami):
    did = IVR_DID_PREFIX + "5550102"
    async with appliance(rules=[OPT_IN]) as app:
        async with mixmonitor_started_on_sip(ami) as started, \
                ami.expect(lambda e: e.name == "UserEvent" and e.get("UserEvent") == "CallvaultLabPci"
                           and e.get(v.EVENT_PCI_STATE) == v.PCI_RECORDING) as resumed:
            sipp = asyncio.create_task(place_sip_calls(
                lab_state.sip_port, [SipCall(CALLER, did)], CallerScript("1", wait=1.0, hangup_after=7.0, talk=True)))
            start = await asyncio.wait_for(started, 20)
            t0, sip_channel = float(start.get("Timestamp")), start.get("Channel")
            await asyncio.wait_for(resumed, 20)
        async with ami.expect(lambda e: e.name == "Hangup" and e.get("Channel") == sip_channel) as hung_up:
            run = await sipp
            t_end = float((await asyncio.wait_for(hung_up, 15)).get("Timestamp"))
        assert run.ok, f"SIPp exited {run.returncode}: {run.errors}"
        await app[K.agi].wait_idle(15)

        [consent] = [e for e in app[K.ledger].find(kind="consent") if e.data["did"] == did]
        rid = consent.data["recording_id"]
        entries = pauses(app, rid)
        assert [(k, d["trigger"], d["actor"]) for k, d in entries] == \
            [("pause", "ivr", consent.data["channel"]), ("resume", "ivr", consent.data["channel"])]
        [interval] = app[K.catalog].get(rid).pause_intervals
        assert IVR_PAUSE_SECONDS - 0.1 < interval[1] - interval[0] < IVR_PAUSE_SECONDS + 1.0
        assert_on_the_agent_page(app, consent.data["linkedid"], "ivr")
        assert_silent_exactly(await archived_wav(app, appliance, rid), t0, t_end, interval)
