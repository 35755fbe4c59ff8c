"""Mid-call controls against the real Asterisk: revoke, and PCI pause/resume."""

from __future__ import annotations

import array
import asyncio
import io
import wave

import pytest

from agi.controls import ControlError, set_paused
from appliance.keys import AppKeys as K

from callhelpers import (OPT_IN, after_revoke, archived_wav, finish, mixmonitor_stopped, run_call, wait_path,
                         wait_state)

pytestmark = pytest.mark.asterisk


def window_levels(wav: bytes, window_s: float = 0.1) -> list[float]:
    """Mean absolute sample value per window of a 16-bit mono WAV."""
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        rate = w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    n = int(rate * window_s)
    return [sum(abs(s) for s in samples[i:i + n]) / n for i in range(0, len(samples) - n + 1, n)]


async def test_revoke_stops_recording_and_flags_it(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls, ["1"])
        assert started and event.get("Record") == "yes"
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        async with mixmonitor_stopped(ami, call) as stopped, after_revoke(ami, call) as revoked:
            await calls.send_dtmf(call, "0")
            await asyncio.wait_for(stopped, 15)
            after = await asyncio.wait_for(revoked, 15)
        assert (after.get("Consent"), after.get("Record")) == ("revoked", "no")
        rec = app[K.catalog].get(rec.recording_id)
        assert rec.erase_requested == 1 and rec.consent_state == "revoked"
        [entry] = app[K.ledger].find(kind="revoke", call_id=call.caller_uniqueid)
        assert entry.data["recording_ids"] == entry.data["stopped"] == [rec.recording_id]
        assert entry.data["not_stopped"] == []
        await finish(app, ami, calls, call)


async def test_revoke_with_ami_down_still_erases_the_recording_at_hang_up(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls, ["1"])
        assert started
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        await app[K.ami].close()  # the appliance loses AMI: StopMixMonitor cannot be sent
        async with after_revoke(ami, call) as revoked:
            await calls.send_dtmf(call, "0")
            after = await asyncio.wait_for(revoked, 15)
        assert (after.get("Consent"), after.get("Record")) == ("revoked", "no")
        [entry] = app[K.ledger].find(kind="revoke", call_id=call.caller_uniqueid)
        assert entry.data["stopped"] == [] and entry.data["not_stopped"] == [rec.recording_id]
        assert app[K.catalog].get(rec.recording_id).erase_requested == 1
        await finish(app, ami, calls, call)
        # No AMI, no Hangup event: the spool scan finds the end once MixMonitor has closed
        # the file (its post-command writes the .done marker).
        await wait_path(appliance.spool / f"{rec.recording_id}.wav.done")
        await app[K.archiver].scan()
        await wait_state(app, rec.recording_id, "erased")
        assert list(appliance.payload().list()) == []
        assert not (appliance.spool / f"{rec.recording_id}.wav").exists()


async def test_pause_then_resume_leaves_a_muted_span_and_ledger_intervals(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls, ["1"])
        assert started
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        catalog, append, product_ami = app[K.catalog], app[K.ledger].append_async, app[K.ami]
        # Audio has to accumulate on each side of the pause: these sleeps are the
        # durations being recorded, not waits for an event.
        await asyncio.sleep(1.0)
        await set_paused(product_ami, catalog, append, rec.channel, True, actor="test", trigger="cli")
        await asyncio.sleep(1.5)
        rec = await set_paused(product_ami, catalog, append, rec.channel, False, actor="test", trigger="cli")
        await asyncio.sleep(1.0)
        await finish(app, ami, calls, call)

        [[paused_at, resumed_at]] = rec.pause_intervals
        assert 1.2 < resumed_at - paused_at < 3.0
        kinds = [e.kind for e in app[K.ledger].find(recording_id=rec.recording_id)]
        assert kinds == ["consent", "pause", "resume"]

        levels = window_levels(await archived_wav(app, appliance, rec.recording_id))
        # MixMonitorMute writes digital silence: the longest run of silent windows is
        # the pause (~1.5 s), and the tone is there again after it.
        runs, start = [], None
        for i, level in enumerate(levels + [1e9]):
            if level < 5 and start is None:
                start = i
            elif level >= 5 and start is not None:
                runs.append((i - start, start, i))
                start = None
        length, first, after = max(runs)
        detail = " ".join(str(round(x)) for x in levels)
        assert 12 <= length <= 25, detail
        assert min(levels[after:after + 5]) > 500, detail


async def test_pause_on_a_channel_without_recording_is_refused(appliance):
    async with appliance(rules=[OPT_IN]) as app:
        with pytest.raises(ControlError, match="no recording in progress"):
            await set_paused(app[K.ami], app[K.catalog], app[K.ledger].append_async,
                             "Local/none-00000000;2", True, actor="test", trigger="cli")


async def test_generated_revoke_feature_is_loaded_by_asterisk(ami):
    out = await ami.command("features show")
    assert "callvault-revoke" in out and "*0" in out
    for feature, code in (("callvault-pause", "*1"), ("callvault-resume", "*2")):
        [line] = [x for x in out.splitlines() if feature in x]
        assert code in line, out
