"""Fixtures for the announcements tests: audio files made with ffmpeg, and a
prompt library generated once per session (en, af, tn) and copied per test."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from announcements import audio
from announcements.library import PromptLibrary


def ffmpeg_make(dest: Path, lavfi: str, *args: str) -> Path:
    """Write ``dest`` from an ffmpeg lavfi source graph, extra output args after."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", lavfi, *args, str(dest)]
    subprocess.run(cmd, check=True, capture_output=True)
    return dest


@pytest.fixture
def make_audio(tmp_path: Path):
    def make(name: str, lavfi: str, *args: str) -> Path:
        return ffmpeg_make(tmp_path / name, lavfi, *args)

    return make


@pytest.fixture
def stereo_mp3(make_audio) -> Path:
    """2 s of a 440 Hz tone, 44.1 kHz stereo MP3, with 1 s of silence either side."""
    return make_audio(
        "notice.mp3",
        "aevalsrc=0.3*sin(440*2*PI*t)|0.3*sin(440*2*PI*t):s=44100:d=2",
        "-af", "adelay=1000|1000,apad=pad_dur=1", "-ac", "2", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "128k",
    )


def _check_formats(out: dict[str, bytes]) -> float:
    """Assert every Asterisk format is well-formed and consistent; return seconds."""
    assert set(out) == set(audio.FORMATS)

    with wave.open(io.BytesIO(out["wav"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        frames = w.getnframes()
    assert out["wav"][:4] == b"RIFF" and out["wav"][8:12] == b"WAVE"
    assert len(out["wav"]) == 44 + 2 * frames
    assert frames > 0
    seconds = frames / 8000
    # G.711: one byte per 8 kHz sample, same length as the wav.
    assert len(out["ulaw"]) == frames
    assert len(out["alaw"]) == frames
    # sln16: 16 kHz s16le, twice the samples of the 8 kHz wav.
    assert len(out["sln16"]) % 2 == 0
    assert abs(len(out["sln16"]) / 2 - 2 * frames) <= 16
    # G.722: 64 kbit/s, i.e. 8000 bytes per second of audio.
    assert abs(len(out["g722"]) - seconds * 8000) <= 16
    # GSM 06.10: 33-byte frames of 160 samples (the last one padded).
    assert len(out["gsm"]) % 33 == 0
    assert len(out["gsm"]) // 33 == math.ceil(frames / 160)
    return seconds


@pytest.fixture
def check_formats():
    return _check_formats


@pytest.fixture(scope="session")
def built_library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("library-built")
    PromptLibrary(root).build(["en", "af", "tn"])
    return root


@pytest.fixture
def library(built_library: Path, tmp_path: Path) -> PromptLibrary:
    root = tmp_path / "library"
    shutil.copytree(built_library, root)
    return PromptLibrary(root)


@pytest.fixture
def sounds_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sounds"
    d.mkdir()
    return d
