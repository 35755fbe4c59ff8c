"""The consent flow end to end: real Asterisk 22, the generated dialplan, our FastAGI.

Each test places a Local-channel call into the lab's inbound context, which runs the
generated ``callvault-consent`` context exactly as an administrator would include it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from announcements.library import text_sha256
from appliance.keys import AppKeys as K
from callhelpers import (IMPLIED, OPT_IN, OPT_OUT, archived_wav, consent_entries, finish, run_call,
                         wait_path)

pytestmark = pytest.mark.asterisk


async def test_press_1_grants_and_records(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls, ["1"])
        assert (event.get("Consent"), event.get("Record")) == ("granted", "yes")
        assert started, "MixMonitor did not start"
        [entry] = consent_entries(app, call)
        body = entry.data
        assert body["outcome"] == "granted" and body["digits"] == "1" and body["rule"] == "za-opt-in"
        assert body["mode"] == "opt-in" and body["did"] == call.did
        assert "27215550123" not in entry.body  # caller kept only as a keyed HMAC
        assert len(body["caller_hmac"]) == 64
        await wait_path(appliance.spool / f"{body['recording_id']}.wav")  # MixMonitor writes the spool
        await finish(app, ami, calls, call)
        wav = await archived_wav(app, appliance, body["recording_id"])
        assert wav[:4] == b"RIFF" and len(wav) > 44
        rec = app[K.catalog].get(body["recording_id"])
        assert rec.consent_id == body["consent_id"] and rec.linkedid == call.caller_uniqueid


async def test_press_2_declines_and_records_nothing(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls, ["2"])
        assert (event.get("Consent"), event.get("Record")) == ("declined", "no")
        assert not started
        [entry] = consent_entries(app, call)
        assert entry.data["reason"] == "pressed-refuse" and entry.data["recording_id"] is None
        await finish(app, ami, calls, call)
        assert app[K.catalog].by_linkedid(call.caller_uniqueid) == []


async def test_opt_in_without_answer_is_not_recorded(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls)
        assert (event.get("Consent"), event.get("Record")) == ("declined", "no")
        assert not started
        [entry] = consent_entries(app, call)
        assert entry.data["reason"] == "no-answer" and entry.data["attempts"] == 2  # one repeat
        await finish(app, ami, calls, call)


async def test_opt_out_without_answer_is_recorded(appliance, ami, calls):
    async with appliance(rules=[OPT_OUT]) as app:
        call, event, started = await run_call(app, ami, calls)
        assert (event.get("Consent"), event.get("Record")) == ("implied", "yes")
        assert started
        assert consent_entries(app, call)[0].data["reason"] == "no-objection"
        await finish(app, ami, calls, call)


async def test_implied_records_after_the_notice(appliance, ami, calls, lab_state, english_prompts):
    async with appliance(rules=[IMPLIED]) as app:
        call, event, started = await run_call(app, ami, calls)
        assert (event.get("Consent"), event.get("Record")) == ("implied", "yes")
        assert started
        [entry] = consent_entries(app, call)
        body = entry.data
        assert body["jurisdiction"] == "US-NY" and body["reason"] == "notice-played"
        # What the caller heard, provably: the hashes of the files installed in Asterisk.
        installed = Path(lab_state.sounds_host) / "callvault" / "en"
        on_disk = {f.suffix[1:]: hashlib.sha256(f.read_bytes()).hexdigest()
                   for f in installed.glob("notice-implied.*")}
        assert len(on_disk) == 6 and body["notice_sha256"] == on_disk
        text = english_prompts.catalog.language("en").texts["notice-implied"]
        assert (body["notice"], body["notice_id"], body["notice_language"], body["notice_version"]) == (
            "callvault/en/notice-implied", "notice-implied", "en", f"text-sha256:{text_sha256(text)}")
        await finish(app, ami, calls, call)


async def test_notice_gone_at_runtime_fails_closed(appliance, ami, calls, lab_state, english_prompts):
    """Prompts removed while serving: no stand-in sound, the call is not recorded."""
    link = Path(lab_state.sounds_host) / "callvault"
    async with appliance(rules=[IMPLIED]) as app:
        aside = link.with_name("callvault-aside")
        os.rename(link, aside)
        try:
            call, event, started = await run_call(app, ami, calls)
        finally:
            os.rename(aside, link)
        assert (event.get("Consent"), event.get("Record")) == ("error", "no")
        assert not started and consent_entries(app, call) == []
        await finish(app, ami, calls, call)


async def test_invalid_digit_then_1_grants(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls, ["7", "1"])
        assert (event.get("Consent"), event.get("Record")) == ("granted", "yes")
        assert started
        [entry] = consent_entries(app, call)
        assert entry.data["digits"] == "71" and entry.data["attempts"] == 2
        await finish(app, ami, calls, call)


async def test_hangup_during_notice_is_abandoned(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        before = set(appliance.spool.iterdir())
        call, _, started = await run_call(app, ami, calls, hangup_at_notice=True)
        assert not started
        [entry] = consent_entries(app, call)
        assert entry.data["outcome"] == "abandoned" and entry.data["record"] is False
        assert set(appliance.spool.iterdir()) == before


async def test_the_consent_context_answers_before_the_notice(appliance, ami, calls):
    """The lab's inbound context does not answer (a trunk context need not): the generated
    consent context does, so GET DATA plays the notice on an answered channel."""
    async with appliance(rules=[OPT_IN]) as app:
        call = calls.new_call()
        async with calls.agi_command(call, "GET DATA") as asked:
            await calls.place(call)
            event = await asyncio.wait_for(asked, 15)
        assert event.get("ChannelStateDesc") == "Up"
        await calls.hangup(call)
        await app[K.agi].wait_idle(15)


async def test_the_context_raises_the_consent_event_and_plays_the_confirmation_after_the_agi(appliance, ami, calls):
    """The generated context's tail (``consent?tail=dialplan``): the AGI sends three
    commands and names the confirmation; Asterisk then raises CallvaultConsent from the
    channel variables and plays that sound, in the caller's language."""
    async with appliance(rules=[OPT_IN]) as app:
        call = calls.new_call()

        def on_callee(name: str, **fields: str):
            return ami.expect(lambda e: e.name == name and call.is_callee(e)
                              and all(str(e.get(k)).startswith(v) for k, v in fields.items()))

        async with on_callee("UserEvent", UserEvent="CallvaultConsent") as consent_event, \
                on_callee("Newexten", Application="Playback") as played, \
                on_callee("AGIExecStart", Command="EXEC UserEvent") as agi_event, \
                on_callee("AGIExecStart", Command="STREAM FILE") as agi_sound:
            call, event, started = await run_call(app, ami, calls, ["1"], call=call)
            consent = await asyncio.wait_for(consent_event, 10)
            playback = await asyncio.wait_for(played, 10)
            assert not agi_event.done() and not agi_sound.done()  # neither came from the AGI
        [entry] = consent_entries(app, call)
        body = entry.data
        assert {k: consent.get(k) for k in ("ConsentId", "Consent", "Record", "RecordingId", "Rule")} == {
            "ConsentId": body["consent_id"], "Consent": "granted", "Record": "yes",
            "RecordingId": body["recording_id"], "Rule": "za-opt-in"}
        assert playback.get("AppData") == "callvault/en/will-record,noanswer"
        assert started
        await finish(app, ami, calls, call)
