"""The pages as people use them, in headless Debian Chromium against the real lab.

An agent watches a real call through the lab Asterisk change consent state live and
pauses its recording; a supervisor finds a recording, plays it, seeks to the middle
(fetching a small fraction of the object) and downloads it; an admin sees health and
places a lab test call. Each page is saved to docs/screenshots/ for the README.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import secrets
import time
from pathlib import Path

import pytest
from browser import chromium
from callhelpers import IMPLIED, OPT_IN, finish, run_call, wait_state
from stereohelpers import AGENT_HZ, CALLER_HZ, caller_tone, power, split
from waiting import until

from appliance.keys import AppKeys as K
from appliance.web.state import WebKeys as W
from archiver.manifest import Manifest
from storage.catalog import Recording

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
async def sign_in(page, h, name: str, *, shot: str | None = None) -> None:
    await page.goto(h.url + "/login")
    await page.fill("#name", name)
    await page.fill("#password", f"correct-horse-{name}")
    if shot:
        await save(page, shot)
    await page.click("#sign-in")
    await page.wait_for_selector("#who")


async def save(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_agent_sees_consent_change_live_and_pauses_the_recording(webapp, ami, calls):
    async with webapp(rules=[OPT_IN]) as h, chromium() as page:
        await sign_in(page, h, "alice", shot="login")
        assert page.url.endswith("/agent")
        await page.wait_for_selector("#live-state[data-state=live]")

        call = calls.new_call(did="27215550100")
        async with calls.agi_command(call, "GET DATA") as asked:
            await calls.place(call)
            await asyncio.wait_for(asked, 15)
        # The notice is playing: the call is on the page, consent still pending.
        await page.wait_for_selector("tr[data-call-id] td.consent[data-state=pending]")
        row = page.locator("tr[data-call-id]")
        assert await row.count() == 1
        call_id = await row.get_attribute("data-call-id")

        async with ami.expect(lambda e: e.name == "UserEvent" and e.get("UserEvent") == "CallvaultConsent"
                              and call.is_callee(e)) as decided:
            await calls.send_dtmf(call, "1")
            await asyncio.wait_for(decided, 20)
        seen = time.monotonic()
        await page.wait_for_selector("tr[data-call-id] td.consent[data-state=granted]")
        await page.wait_for_selector("tr[data-call-id] td.recording[data-state=recording]")
        assert time.monotonic() - seen < 1.0, "the page took more than 1 s to show the consent decision"

        await page.click("button.pause")
        await page.wait_for_selector("td.recording[data-state=paused]")
        rid = h.app[W.live].calls[call_id].recording_ids[-1]
        # The page shows Asterisk's MixMonitorMute event, which may come before the entry is committed.
        await until(lambda: h.app[K.ledger].find(recording_id=rid, kind="pause"), what="the pause entry")
        pauses = h.app[K.ledger].find(recording_id=rid, kind="pause")
        assert [(e.data["trigger"], e.data["actor"]) for e in pauses] == [("web", "alice")]
        assert h.app[K.catalog].get(rid).pause_intervals[0][1] is None  # open pause span
        await page.wait_for_selector("td.recording ul.pauses li[data-by=web]")  # the interval, with who paused
        await page.click("button.pause")  # resume
        await page.wait_for_selector("td.recording[data-state=recording]")
        await until(lambda: h.app[K.ledger].find(recording_id=rid, kind="resume"), what="the resume entry")
        assert h.app[K.catalog].get(rid).pause_intervals[0][1] is not None
        await save(page, "agent")

        # Attribution reached the catalog: the supervisor can search by agent.
        assert h.app[K.catalog].get(rid).agent == "alice"
        async with calls.hangup_of(call) as gone:
            await calls.hangup(call)
            await asyncio.wait_for(gone, 10)
        await page.wait_for_selector("tr.ended td.recording[data-state=stopped]")
        await h.app[K.agi].wait_idle(15)


async def test_supervisor_finds_plays_seeks_and_downloads(webapp):
    async with webapp() as h, chromium() as page:
        rid, wav = await asyncio.to_thread(h.recording, 3600)  # an hour: 57.6 MB of WAV
        other, _ = await asyncio.to_thread(h.recording, 20, agent="bob", did="27215550199", caller="27825550000")
        payload_size = Manifest.from_json(h.app[K.catalog].get(rid).manifest).payload_size
        await sign_in(page, h, "sam")
        assert page.url.endswith("/supervisor")

        today = datetime.date.today()
        await page.fill("input[name=since]", (today - datetime.timedelta(days=1)).isoformat())
        await page.fill("input[name=until]", today.isoformat())
        await page.select_option("select[name=agent]", "alice")
        await page.fill("input[name=phone]", "+27 21 555 0123")  # found through the HMAC index
        await page.click("#search-button")
        await page.wait_for_selector(f'#results tr[data-id="{rid}"]')
        assert await page.locator(f'#results tr[data-id="{other}"]').count() == 0

        await page.fill("#reason", "complaint 4711: quality review")
        metrics = h.app[W.metrics]
        await page.click(f'#results tr[data-id="{rid}"] button.play')
        player = page.locator("#player")
        await page.wait_for_function("() => { const p = document.getElementById('player');"
                                     " return p.readyState >= 3 && p.duration > 0; }")
        assert abs(await player.evaluate("p => p.duration") - 3600) < 1
        audit = h.app[K.ledger].find(recording_id=rid, kind="audit.play")
        assert [(e.data["actor"], e.data["reason"]) for e in audit] == [("sam", "complaint 4711: quality review")]

        # Seek to the middle: the element's time moves there; only chunks near it are fetched.
        moved = await player.evaluate("""p => new Promise(resolve => {
            p.addEventListener('seeked', () => resolve(p.currentTime), {once: true});
            p.currentTime = p.duration / 2; })""")
        assert 1799 <= moved <= 1805
        await page.wait_for_function("() => document.getElementById('player').readyState >= 3")
        await page.wait_for_function("() => document.getElementById('player').currentTime > 1800.2")
        fetched = metrics.playback_fetched_bytes
        # Chromium buffers a few MB ahead of the play position; we fetch no more than it asks for.
        assert fetched < payload_size * 0.15, f"fetched {fetched} of {payload_size} bytes"
        await player.evaluate("p => p.pause()")
        await save(page, "supervisor")

        async with page.expect_download() as info:
            await page.click(f'#results tr[data-id="{rid}"] button.download[data-format=wav]')
        download = await info.value
        saved = h.tmp / "downloaded.wav"
        await download.save_as(saved)
        assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(wav.read_bytes()).digest()
        assert [e.data["format"] for e in h.app[K.ledger].find(recording_id=rid, kind="audit.download")] == ["wav"]


async def test_stereo_call_plays_with_two_channels_and_seeks(webapp, ami, calls, lab_state):
    """A real stereo call: archived as a 2-channel WAV that Chromium decodes as such,
    plays for the length of the call (a mono reading of the header would double it),
    seeks, and downloads byte for byte with the caller on the left."""
    tone = caller_tone(lab_state.sounds_host)
    async with webapp(rules=[IMPLIED], archive_={"channels": "stereo"}) as h, chromium() as page:
        call, _, started = await run_call(h.app, ami, calls, caller_plays=tone)
        assert started
        [rec] = h.app[K.catalog].by_linkedid(call.caller_uniqueid)
        await asyncio.sleep(2.0)  # two seconds of conversation to record
        await finish(h.app, ami, calls, call)
        await wait_state(h.app, rec.recording_id, "archived", timeout=60)
        rid = rec.recording_id
        manifest = Manifest.from_json(h.app[K.catalog].get(rid).manifest)

        await sign_in(page, h, "sam")
        await page.click("#search-button")
        await page.fill("#reason", "stereo check")
        await page.click(f'#results tr[data-id="{rid}"] button.play')
        player = page.locator("#player")
        await page.wait_for_function("() => { const p = document.getElementById('player');"
                                     " return p.readyState >= 3 && p.duration > 0; }")
        duration = await player.evaluate("p => p.duration")
        decoded = await player.evaluate("""async p => {
            const body = await (await fetch(p.currentSrc)).arrayBuffer();
            const audio = await new OfflineAudioContext(1, 1, 8000).decodeAudioData(body);
            return [audio.numberOfChannels, audio.sampleRate, audio.duration]; }""")
        moved = await player.evaluate("""p => new Promise(resolve => {
            p.addEventListener('seeked', () => resolve(p.currentTime), {once: true});
            p.currentTime = p.duration / 2; })""")
        await player.evaluate("p => p.pause()")

        async with page.expect_download() as info:
            await page.click(f'#results tr[data-id="{rid}"] button.download[data-format=wav]')
        saved = h.tmp / "stereo.wav"
        await (await info.value).save_as(saved)

    wav = saved.read_bytes()
    assert hashlib.sha256(wav).hexdigest() == manifest.plaintext_sha256
    params, left, right = split(wav)
    seconds = params.nframes / params.framerate
    assert (params.nchannels, params.framerate) == (2, 8000) and 2.0 < seconds < 6.0, params
    assert abs(duration - seconds) < 0.05, (duration, seconds)
    assert decoded[0] == 2 and abs(decoded[2] - seconds) < 0.05, decoded
    assert abs(moved - seconds / 2) < 0.5, (moved, seconds)
    tail = slice(-8000, -800)  # the last second before the hangup
    assert power(left[tail], CALLER_HZ) > 100 * power(left[tail], AGENT_HZ)
    assert power(right[tail], AGENT_HZ) > 100 * power(right[tail], CALLER_HZ)


async def test_admin_sees_health_and_places_a_lab_test_call(webapp):
    async with webapp(rules=[{"name": "us-implied", "mode": "implied", "jurisdiction": "US-NY"}]) as h, \
            chromium() as page:
        # Before sign-in: up or down per part, nothing more.
        await page.goto(h.url + "/")
        assert await page.inner_text("#overall") == "callvault is up"
        assert await page.inner_text("#storage-state") == "up"
        assert "22." not in await page.inner_text("main")
        await save(page, "status")
        # A dead letter whose WAV is still in the spool: the scan quarantines it, the page says so.
        rid = "r" + secrets.token_hex(12)
        wav = h.app[K.config].spool.dir / f"{rid}.wav"
        wav.write_bytes(b"RIFF plaintext")
        h.app[K.catalog].add(Recording(recording_id=rid, consent_id="c", uniqueid="u", linkedid="l", channel="",
                                       spool_path=str(wav), caller_hmac="", did="", agent="", rule="",
                                       jurisdiction="ZA", retention_class="default", consent_state="granted",
                                       started_at=time.time(), state="failed", last_error="gave up"))
        await h.app[K.archiver].scan()
        await sign_in(page, h, "ada")
        assert page.url.endswith("/admin")
        alert = await page.inner_text("#quarantine-alert")
        assert alert.startswith("1 dead-lettered recording(s) keep unencrypted audio") and "recordings retry" in alert
        assert "quarantined" in await page.inner_text("#dead-letters")
        health = await page.inner_text("#health")
        assert "connected" in health and "22." in health and "reachable" in health and "available" in health
        assert "Database" in health and "answers" in health
        assert "exten => s,1" in await page.inner_text("main")
        assert await page.locator("#keys code").count() >= 2
        await page.click("#test-call-form button")
        await page.wait_for_selector("#test-call-result.ok")
        text = await page.inner_text("#test-call-result")
        assert "test call cvtest-" in text
        await save(page, "admin")
        call_id = text.split()[2]
        # The test call runs the real consent flow (implied: recorded after the notice).
        await until(lambda: h.app[W.live].calls.get(call_id) is not None
                    and h.app[W.live].calls[call_id].consent == "implied", 20,
                    what=f"live call {call_id} with implied consent",
                    detail=lambda: h.app[W.live].calls.get(call_id))
        await h.app[K.ami].action("Hangup", Channel=next(iter(h.app[W.live].calls[call_id].channels.values())))
        await h.app[K.agi].wait_idle(15)
