"""Stereo recordings in tests: a tone for the lab caller to play, and which side of a
2-channel WAV carries which tone (Goertzel power at the frequencies in question)."""

from __future__ import annotations

import array
import io
import math
import struct
import wave
from pathlib import Path

CALLER_HZ = 1000  # what the lab caller plays (caller_tone)
AGENT_HZ = 440  # the lab's "conversation": Playtones(440) on the channel that runs the dialplan
RATE = 8000


def caller_tone(sounds_dir: str | Path, seconds: int = 30, hz: int = CALLER_HZ) -> str:
    """Install an 8 kHz mono tone into Asterisk's sounds dir; returns its sound name."""
    folder = Path(sounds_dir) / "callvault-lab-tones"
    folder.mkdir(mode=0o755, exist_ok=True)
    path = folder / f"tone-{hz}.wav"
    if not path.exists():
        second = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / RATE))) for i in range(RATE))
        part = path.with_suffix(".part")
        with wave.open(str(part), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(second * seconds)
        part.chmod(0o644)
        part.rename(path)
    return f"callvault-lab-tones/tone-{hz}"


def split(wav: bytes) -> tuple[wave._wave_params, array.array, array.array]:
    """(params, left samples, right samples) of a 16-bit stereo WAV."""
    with wave.open(io.BytesIO(wav)) as w:
        params = w.getparams()
        frames = array.array("h", w.readframes(w.getnframes()))
    return params, frames[0::2], frames[1::2]


def power(samples, hz: float, rate: int = RATE) -> float:
    """Goertzel: the power of ``hz`` in ``samples``, normalised by their count."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / max(1, len(samples)) ** 2


def level(samples) -> float:
    return sum(abs(s) for s in samples) / max(1, len(samples))


def window_levels(samples, rate: int = RATE, window_s: float = 0.1) -> list[float]:
    n = int(rate * window_s)
    return [level(samples[i:i + n]) for i in range(0, len(samples) - n + 1, n)]


def silent_runs(levels: list[float], below: float = 5) -> list[tuple[int, int, int]]:
    """(length, first, end) of each run of windows quieter than ``below``."""
    runs, start = [], None
    for i, lv in enumerate([*levels, 1e9]):
        if lv < below and start is None:
            start = i
        elif lv >= below and start is not None:
            runs.append((i - start, start, i))
            start = None
    return runs
