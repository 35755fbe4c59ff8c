"""Prompts in the real Asterisk 22: every format plays, imports play, and the consent
flow picks the policy's language and falls back along the chain."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from agi.routes import RouteTable
from agi.server import FastAgiServer
from announcements.audio import FORMATS
from announcements.library import PromptLibrary
from appliance.keys import AppKeys as K
from callhelpers import OPT_IN

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> PromptLibrary:
    lib = PromptLibrary(tmp_path_factory.mktemp("prompts"))
    lib.build(langs=["en", "af"])
    return lib


@pytest.fixture
def sounds(lab_state, library, english_prompts):
    """Install into the lab Asterisk's sounds dir; put the session's English
    prompts back afterwards (shared lab)."""
    sounds_dir = Path(lab_state.sounds_host)
    library.install(sounds_dir)
    yield sounds_dir
    english_prompts.install(sounds_dir)
    shutil.rmtree(sounds_dir / "cvtest", ignore_errors=True)


async def play_all(lab_state, calls, names: list[str]) -> dict[str, tuple[str | None, int]]:
    """Run a call whose AGI streams each sound name; return STREAM FILE results."""
    results: dict[str, tuple[str | None, int]] = {}
    finished = asyncio.Event()

    async def probe(session):
        try:
            for name in names:
                results[name] = await session.stream_file(name)
        finally:
            finished.set()

    server = FastAgiServer(RouteTable([("consent", probe)]), "127.0.0.1", lab_state.agi_port)
    await server.start()
    try:
        call = calls.new_call()
        await calls.place(call)
        async with calls.hangup_of(call) as gone:
            await asyncio.wait_for(finished.wait(), 60)
            await calls.hangup(call)
            await asyncio.wait_for(gone, 10)
    finally:
        server.close()
        await server.drain(5)
    return results


async def test_every_generated_format_plays(sounds, lab_state, calls):
    names = []
    for fmt in FORMATS:
        # One directory per format holding only that format, so Asterisk must decode it.
        d = sounds / "cvtest" / fmt
        d.mkdir(parents=True)
        shutil.copy(sounds / "callvault" / "en" / f"will-record.{fmt}", d / f"p.{fmt}")
        names.append(f"cvtest/{fmt}/p")
    results = await play_all(lab_state, calls, names + ["callvault/af/notice-opt-in"])
    for name, (_digit, endpos) in results.items():
        assert endpos > 0, f"{name} did not play: {results}"


async def test_prompt_imported_from_44k_stereo_mp3_plays(sounds, lab_state, calls, library, tmp_path):
    mp3 = tmp_path / "notice.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=330:sample_rate=44100:duration=2", "-ac", "2", "-ar", "44100",
                    "-b:a", "128k", str(mp3)], check=True)
    library.import_prompt("en", "recording-paused", mp3)
    library.install(sounds)
    results = await play_all(lab_state, calls, ["callvault/en/recording-paused"])
    assert results["callvault/en/recording-paused"][1] > 0
    assert library.status("en", "recording-paused").value == "recorded"


async def notice_played(appliance, ami, calls, rule) -> tuple[str, dict]:
    async with appliance(rules=[rule]) as app:
        call = calls.new_call()
        async with calls.agi_command(call, "GET DATA") as asked:
            await calls.place(call)
            command = (await asyncio.wait_for(asked, 20)).get("Command")
        await calls.send_dtmf(call, "2")
        async with calls.hangup_of(call) as gone:
            await calls.hangup(call)
            await asyncio.wait_for(gone, 10)
        await app[K.agi].wait_idle(15)
        [entry] = [e for e in app[K.ledger].find(kind="consent") if e.data["uniqueid"] == call.callee_uniqueid]
        assert entry.data["notice"] in command
        return command, entry.data


def installed_hashes(sounds: Path, lang: str, name: str) -> dict[str, str]:
    return {f.suffix[1:]: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in (sounds / "callvault" / lang).glob(f"{name}.*")}


async def test_consent_flow_plays_af_then_falls_back_to_en(sounds, library, appliance, ami, calls, lab_state):
    rule = {**OPT_IN, "name": "za-af", "prompt_language": "af", "timeout": 3.0}
    command, body = await notice_played(appliance, ami, calls, rule)
    assert command.split()[2].strip('"') == "callvault/af/notice-opt-in"
    assert body["notice_language"] == "af"
    assert body["notice_sha256"] == installed_hashes(sounds, "af", "notice-opt-in") != {}
    # The Afrikaans notice removed from the library and the set installed again: the
    # same call falls back to en, and the entry says so.
    library.master_path("af", "notice-opt-in").unlink()
    library.install(sounds)
    command, body = await notice_played(appliance, ami, calls, rule)
    assert command.split()[2].strip('"') == "callvault/en/notice-opt-in"
    assert body["notice_language"] == "en"
    assert body["notice_sha256"] == installed_hashes(sounds, "en", "notice-opt-in") != {}
    library.build(["af"])  # the module's library as it was
