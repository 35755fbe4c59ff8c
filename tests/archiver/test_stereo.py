"""Stereo recordings: ``[archive] channels = "stereo"``.

MixMonitor's ``D`` option writes the two sides of the channel interleaved (a
headerless ``.raw`` file); the archiver's intake puts a WAV header in front, so what
is archived, played and exported is a standard 2-channel WAV. The real call has a
different tone on each side: the caller plays 1000 Hz, the channel running the
dialplan hears the lab's 440 Hz "conversation".
"""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import pytest
from callhelpers import IMPLIED, archived_wav, finish, run_call
from stereohelpers import (
    AGENT_HZ,
    CALLER_HZ,
    caller_tone,
    power,
    silent_runs,
    split,
    window_levels,
)

from agi.controls import set_paused
from appliance import config as cfg
from appliance.keys import AppKeys as K
from archiver import intake


def _plaintext(path: Path) -> bytes:
    with intake.plaintext(path) as (size, src):
        data = b"".join(iter(lambda: src.read(1000), b""))  # short reads, as from a file
    assert len(data) == size
    return data


def test_a_raw_stereo_file_is_archived_as_a_two_channel_wav(tmp_path):
    frames = b"".join(i.to_bytes(2, "little", signed=True) + (-i).to_bytes(2, "little", signed=True)
                      for i in range(1000))
    raw = tmp_path / "r0123456789abcdef01234567.raw"
    raw.write_bytes(frames + b"\x01\x02\x03")  # a torn last frame (crash mid-write) is left out
    wav = _plaintext(raw)
    assert len(wav) == 44 + len(frames) and wav[44:] == frames
    params, left, right = split(wav)
    assert (params.nchannels, params.sampwidth, params.framerate, params.nframes) == (2, 2, 8000, 1000)
    assert list(left) == list(range(1000)) and list(right) == [-i for i in range(1000)]
    # An empty recording is a valid, empty WAV.
    raw.write_bytes(b"")
    with wave.open(io.BytesIO(_plaintext(raw))) as w:
        assert (w.getnchannels(), w.getnframes()) == (2, 0)


def test_a_mono_file_is_archived_as_it_is(tmp_path):
    mono = tmp_path / "r0123456789abcdef01234567.wav"
    mono.write_bytes(b"RIFF-whatever-MixMonitor-wrote")
    assert _plaintext(mono) == mono.read_bytes()


def test_channels_must_be_mono_or_stereo():
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(None, env={}, overrides={"archive.channels": "quad"}, check_paths=False)
    assert any("[archive] channels = 'quad': expected one of mono, stereo" in p for p in e.value.problems)


@pytest.mark.asterisk
async def test_stereo_call_keeps_each_side_on_its_own_channel_and_pauses_both(appliance, ami, calls, lab_state):
    tone = caller_tone(lab_state.sounds_host)
    async with appliance(rules=[IMPLIED], **{"archive.channels": "stereo"}) as app:
        call, event, started = await run_call(app, ami, calls, caller_plays=tone)
        assert started and event.get("Record") == "yes"
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        assert rec.spool_path.endswith(".raw")
        catalog, append, product_ami = app[K.catalog], app[K.ledger].append_async, app[K.ami]
        # The sleeps are the durations being recorded: sound, a pause, sound again.
        await asyncio.sleep(1.5)
        await set_paused(product_ami, catalog, append, rec.channel, True, actor="test", trigger="agi")
        await asyncio.sleep(1.5)
        await set_paused(product_ami, catalog, append, rec.channel, False, actor="test", trigger="agi")
        await asyncio.sleep(1.5)
        await finish(app, ami, calls, call)
        wav = await archived_wav(app, appliance, rec.recording_id)

    params, left, right = split(wav)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    assert 4.0 < params.nframes / 8000 < 8.0, params.nframes
    # One timeline: the pause is the same silent span on both channels.
    runs = [max(silent_runs(window_levels(side))) for side in (left, right)]
    detail = f"left {window_levels(left)} right {window_levels(right)}"
    (length, first, end), other = runs
    assert 12 <= length <= 20 and abs(first - other[1]) <= 1 and abs(end - other[2]) <= 1, detail
    before = slice((first - 8) * 800, (first - 1) * 800)
    after = slice((end + 1) * 800, (end + 8) * 800)
    for part in (before, after):
        l, r = left[part], right[part]
        # The caller's tone on the left, the other side's on the right, each clearly.
        assert power(l, CALLER_HZ) > 100 * power(l, AGENT_HZ), detail
        assert power(r, AGENT_HZ) > 100 * power(r, CALLER_HZ), detail
