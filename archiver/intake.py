"""What the archiver encrypts for a spool file: the file itself, or for a stereo
recording the WAV it stands for.

A stereo recording is MixMonitor's ``D`` output (``<recording_id>.raw``): 16-bit
little-endian samples at 8 kHz, two channels interleaved frame by frame: left the
audio read from the channel (the caller, on an inbound call), right the audio
written to it (the agent, or whatever the channel hears). Asterisk interleaves the
two sides of one audiohook itself, so they share one timeline: a side that is quiet
(or shorter) is silence in its channel, and a pause (``MixMonitorMute``, both
directions) is silence in both. The archiver puts the 44-byte WAV header in front,
as a stream: the encrypted plaintext is a standard 2-channel WAV and the raw file is
never copied. A torn final frame (a crash mid-write) is left out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from storage.errors import PermanentError
from storage.spool_names import STEREO_EXT

STEREO_RATE = 8000
STEREO_CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_BYTES = STEREO_CHANNELS * SAMPLE_BYTES
WAV_HEADER_SIZE = 44
# RIFF sizes are 32-bit: at 32,000 bytes a second, about 37 hours of stereo.
MAX_DATA = 0xFFFFFFFF - (WAV_HEADER_SIZE - 8)


def wav_header(data_size: int, *, channels: int = STEREO_CHANNELS, rate: int = STEREO_RATE,
               sample_bytes: int = SAMPLE_BYTES) -> bytes:
    """A canonical 44-byte PCM WAV header for ``data_size`` bytes of samples."""
    block = channels * sample_bytes
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", WAV_HEADER_SIZE - 8 + data_size, b"WAVE",
                       b"fmt ", 16, 1, channels, rate, rate * block, block, 8 * sample_bytes,
                       b"data", data_size)


def is_stereo_raw(path: Path) -> bool:
    return path.suffix == STEREO_EXT


class _Prefixed:
    """``prefix`` then at most ``limit`` bytes of ``f``, as a readable binary file."""

    def __init__(self, prefix: bytes, f: BinaryIO, limit: int):
        self.prefix, self.f, self.left = memoryview(prefix), f, limit

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        if self.prefix:
            n = min(len(view), len(self.prefix))
            view[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        if self.left <= 0:
            return 0
        got = self.f.readinto(view[:min(len(view), self.left)]) or 0
        self.left -= got
        return got

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(n if n >= 0 else len(self.prefix) + max(0, self.left))
        return bytes(buf[:self.readinto(buf)])


@contextmanager
def plaintext(path: Path) -> Iterator[tuple[int, BinaryIO]]:
    """``(size, readable)``: the bytes to encrypt for the spool file at ``path``."""
    with open(path, "rb", buffering=0) as f:
        size = f.seek(0, 2)
        f.seek(0)
        if not is_stereo_raw(path):
            yield size, f
            return
        data = size - size % FRAME_BYTES
        if data > MAX_DATA:
            raise PermanentError(f"{path}: {data} bytes of stereo audio do not fit one WAV file "
                                 f"(at most {MAX_DATA}, about 37 hours)")
        yield WAV_HEADER_SIZE + data, _Prefixed(wav_header(data), f, data)
