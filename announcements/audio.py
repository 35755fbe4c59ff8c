"""Turn any audio file ffmpeg reads into prompts in the formats Asterisk plays.

Pipeline (``prepare``), in this order, each step refusing bad input with
``BadAudio(file, reason)``:

1. Decode with ffmpeg (first audio stream only) to 16-bit PCM twice in one run: at
   the source's own rate and channels (for the clipping check) and as 16 kHz mono
   (everything after). Decoding stops at ``max_duration + 10 s``.
   Refused: a missing or empty file, anything ffmpeg cannot decode (a text file
   renamed ``.wav``), a file without an audio stream or without samples.
2. Clipping: a clipped waveform sits flat at its rail for several samples; a
   clean one, even peak-normalised to 0 dBFS, touches its peak for a sample or
   two. The rails are the file's largest and smallest 16-bit sample values, when
   within 0.9 dB of full scale (so G.711 and 8-bit sources, whose decoded maximum
   is below 32767, are judged by their own ceiling). The file is refused when more
   than ``CLIP_FRACTION`` (0.1 %) of all samples lie in runs of ``CLIP_RUN`` (3) or
   more consecutive samples at a rail in one channel.
3. Trim leading and trailing silence: 10 ms chunks quieter than
   ``SILENCE_THRESHOLD_DBFS`` (-50 dBFS RMS) are silence; ``EDGE_PADDING_MS``
   (100 ms) of it is kept at each end so the first syllable is not clipped.
   Refused: a file with nothing louder than the threshold ("silent").
4. Duration: the trimmed prompt may last at most ``max_duration`` (default
   ``MAX_DURATION_S``, 60 s). A file whose decoding reached the cap is refused
   with its real length.
5. Loudness: one gain for the whole prompt bringing its RMS level to
   ``TARGET_RMS_DBFS`` (-20 dBFS), lowered if needed so the peak stays at or
   below ``PEAK_CEILING_DBFS`` (-3 dBFS). No compression or limiting: a prompt
   with a very high peak-to-RMS ratio simply ends up a little quieter.

The result (the "master") is 16 kHz mono 16-bit. ``encode_all`` derives each
Asterisk format from it in one ffmpeg run (resampling with ffmpeg's filter,
not audioop's): ``wav`` 8 kHz 16-bit mono RIFF, ``sln16`` raw 16 kHz s16le, ``ulaw``
and ``alaw`` raw G.711 at 8 kHz (one byte per sample), ``g722`` raw G.722 from
16 kHz (8000 bytes/s), ``gsm`` raw GSM 06.10 (libgsm), 33-byte frames of 20 ms.

Everything here blocks (ffmpeg subprocesses, CPU); event-loop code calls
``convert_async``, which runs ``convert`` in a thread with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from array import array
from typing import TYPE_CHECKING

# pydub is imported where it is used: the consent flow reads FORMATS through
# announcements.library.resolve and must not pay for pydub (classic AGI, one
# process per call).
if TYPE_CHECKING:
    from pydub import AudioSegment

from .errors import AnnouncementError, BadAudio

TARGET_RMS_DBFS = -20.0
PEAK_CEILING_DBFS = -3.0
SILENCE_THRESHOLD_DBFS = -50.0
EDGE_PADDING_MS = 100
MAX_DURATION_S = 60.0
CLIP_RUN = 3
CLIP_FRACTION = 0.001
MASTER_RATE = 16000
NARROW_RATE = 8000
FORMATS: tuple[str, ...] = ("wav", "sln16", "ulaw", "alaw", "g722", "gsm")
CONCURRENCY = max(1, min(4, os.cpu_count() or 1))

_DECODE_SLACK_S = 10.0
_DECODE_TIMEOUT_S = 120.0
_FULL_SCALE = 32767
_RAIL_MIN = 29491  # 0.9 of full scale, -0.9 dBFS
# extension: (ffmpeg muxer, ffmpeg encoder, sample rate)
_FFMPEG_FORMATS = {
    "ulaw": ("mulaw", "pcm_mulaw", NARROW_RATE),
    "alaw": ("alaw", "pcm_alaw", NARROW_RATE),
    "gsm": ("gsm", "libgsm", NARROW_RATE),
    "g722": ("g722", "g722", MASTER_RATE),
}


def ffmpeg_binary() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise AnnouncementError("ffmpeg is not installed (apt-get install ffmpeg)")
    return path


def duration_s(seg: AudioSegment) -> float:
    return seg.frame_count() / seg.frame_rate


def prepare(src: str | os.PathLike[str], *, max_duration: float = MAX_DURATION_S) -> AudioSegment:
    """Decode, check, trim and normalise ``src``; return the 16 kHz mono master."""
    name = os.fspath(src)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise BadAudio(name, "does not exist") from None
    except OSError as e:
        raise BadAudio(name, f"cannot be read ({e.strerror})") from None
    if not os.path.isfile(name):
        raise BadAudio(name, "is not a regular file")
    if st.st_size == 0:
        raise BadAudio(name, "is empty (0 bytes)")
    cap = max_duration + _DECODE_SLACK_S
    native, mono = _decode(name, cap)
    if native.frame_count() == 0 or mono.frame_count() == 0:
        raise BadAudio(name, "contains no audio samples")
    if duration_s(native) >= cap - 0.05:
        total = _probe_duration(name)
        length = f"{total:.1f} s" if total else f"over {cap:g} s"
        raise BadAudio(name, f"is too long ({length}); the maximum is {max_duration:g} s")
    _check_clipping(name, native)
    trimmed = _trim(name, mono)
    if duration_s(trimmed) > max_duration:
        raise BadAudio(
            name,
            f"is too long ({duration_s(trimmed):.1f} s after trimming silence); "
            f"the maximum is {max_duration:g} s",
        )
    return normalise(trimmed)


def normalise(seg: AudioSegment) -> AudioSegment:
    """One gain: RMS to TARGET_RMS_DBFS, but peak no higher than PEAK_CEILING_DBFS."""
    gain = min(TARGET_RMS_DBFS - seg.dBFS, PEAK_CEILING_DBFS - seg.max_dBFS)
    return seg.apply_gain(gain)


def encode_all(master: AudioSegment, formats: tuple[str, ...] = FORMATS) -> dict[str, bytes]:
    """Every requested Asterisk format of ``master``, as bytes, keyed by extension.

    One ffmpeg run writes all the coded formats (and the 8 kHz PCM for ``wav``),
    each output resampled by ffmpeg itself, so they all have the same length.
    """
    _check_master(master)
    for fmt in formats:
        if fmt not in FORMATS:
            raise AnnouncementError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    outputs = {fmt: spec for fmt, spec in _FFMPEG_FORMATS.items() if fmt in formats}
    if "wav" in formats:
        outputs["narrow"] = ("s16le", "pcm_s16le", NARROW_RATE)
    coded: dict[str, bytes] = {}
    if outputs:
        with tempfile.TemporaryDirectory(prefix="callvault-encode-") as tmp:
            source = os.path.join(tmp, "master.wav")
            write_master(master, source)
            cmd = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-v", "error", "-f", "wav", "-i", source]
            for key, (muxer, codec, rate) in outputs.items():
                cmd += ["-map", "0:a:0", "-ar", str(rate), "-ac", "1", "-c:a", codec, "-f", muxer,
                        os.path.join(tmp, f"out.{key}")]
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=_DECODE_TIMEOUT_S)
            if proc.returncode != 0:
                detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
                raise AnnouncementError(f"ffmpeg could not encode {', '.join(outputs)}: {detail[0]}")
            for key in outputs:
                with open(os.path.join(tmp, f"out.{key}"), "rb") as f:
                    coded[key] = f.read()
    out: dict[str, bytes] = {}
    for fmt in formats:
        if fmt == "sln16":
            out[fmt] = master.raw_data
        elif fmt == "wav":
            from pydub import AudioSegment

            narrow = AudioSegment(data=coded["narrow"], sample_width=2, frame_rate=NARROW_RATE, channels=1)
            buf = io.BytesIO()
            narrow.export(buf, format="wav")  # pydub's own writer: plain 44-byte RIFF header
            out[fmt] = buf.getvalue()
        else:
            out[fmt] = coded[fmt]
    return out


def convert(
    src: str | os.PathLike[str], formats: tuple[str, ...] = FORMATS, *, max_duration: float = MAX_DURATION_S
) -> dict[str, bytes]:
    return encode_all(prepare(src, max_duration=max_duration), formats)


_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def convert_async(
    src: str | os.PathLike[str], formats: tuple[str, ...] = FORMATS, *, max_duration: float = MAX_DURATION_S
) -> dict[str, bytes]:
    """``convert`` in a worker thread; at most CONCURRENCY at once per event loop."""
    loop = asyncio.get_running_loop()
    sem = _semaphores.get(loop)
    if sem is None:
        sem = _semaphores[loop] = asyncio.Semaphore(CONCURRENCY)
    async with sem:
        return await asyncio.to_thread(convert, src, formats, max_duration=max_duration)


def write_master(master: AudioSegment, path: str | os.PathLike[str]) -> None:
    _check_master(master)
    with open(path, "wb") as f:
        master.export(f, format="wav")


def read_master(path: str | os.PathLike[str]) -> AudioSegment:
    name = os.fspath(path)
    try:
        seg = _read_wav(name)
    except OSError as e:
        raise BadAudio(name, f"cannot be read ({e.strerror})") from None
    except Exception as e:  # pydub raises bare Exceptions and wave.Error alike
        raise BadAudio(name, f"is not a readable prompt master ({e}); rebuild or re-import it") from None
    try:
        _check_master(seg)
    except AnnouncementError as e:
        raise BadAudio(name, f"{e}; rebuild or re-import it") from None
    return seg


def _check_master(seg: AudioSegment) -> None:
    if (seg.frame_rate, seg.channels, seg.sample_width) != (MASTER_RATE, 1, 2):
        raise AnnouncementError(
            f"a master must be {MASTER_RATE} Hz mono 16-bit, not "
            f"{seg.frame_rate} Hz, {seg.channels} channel(s), {8 * seg.sample_width}-bit"
        )


def _decode(name: str, cap: float) -> tuple[AudioSegment, AudioSegment]:
    with tempfile.TemporaryDirectory(prefix="callvault-decode-") as tmp:
        native_path = os.path.join(tmp, "native.wav")
        mono_path = os.path.join(tmp, "mono.wav")
        limit = f"{cap:.3f}"
        cmd = [
            ffmpeg_binary(), "-nostdin", "-hide_banner", "-v", "error",
            # file: stops a name like "-" or "x:y" being read as a protocol
            "-i", "file:" + os.path.abspath(name),
            "-map", "0:a:0", "-t", limit, "-c:a", "pcm_s16le", "-f", "wav", native_path,
            "-map", "0:a:0", "-t", limit, "-ac", "1", "-ar", str(MASTER_RATE),
            "-c:a", "pcm_s16le", "-f", "wav", mono_path,
        ]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=_DECODE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BadAudio(name, f"took longer than {_DECODE_TIMEOUT_S:g} s to decode") from None
        if proc.returncode != 0:
            raise BadAudio(name, _decode_failure(name, proc.stderr.decode(errors="replace")))
        try:
            return _read_wav(native_path), _read_wav(mono_path)
        except Exception as e:  # pydub's wav reader raises several kinds
            raise BadAudio(name, f"decoded to unreadable audio ({e})") from None


def _read_wav(path: str) -> AudioSegment:
    from pydub import AudioSegment

    # Not AudioSegment.from_wav(path): pydub 0.25.1 leaves that file open.
    with open(path, "rb") as f:
        return AudioSegment(data=f.read())


def _decode_failure(name: str, stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if any("matches no streams" in ln for ln in lines):
        return "contains no audio stream"
    detail = lines[0] if lines else "no message"
    for prefix in ("file:" + os.path.abspath(name) + ": ", os.path.abspath(name) + ": "):
        detail = detail.replace(prefix, "")
    return f"is not audio that ffmpeg can decode ({detail})"


def _probe_duration(name: str) -> float | None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    cmd = [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", "file:" + os.path.abspath(name)]
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30).stdout
        return float(out.decode().strip())
    except (subprocess.TimeoutExpired, ValueError):
        return None


def _check_clipping(name: str, seg: AudioSegment) -> None:
    samples = array("h")
    samples.frombytes(seg.raw_data)
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return
    # The rails are the file's own extremes, when they are near full scale: a
    # G.711 recording clips at +-32124 (u-law) or +-32256 (A-law), 8-bit at 32512.
    top, bottom = max(samples), min(samples)
    top = top if top >= _RAIL_MIN else _FULL_SCALE + 1
    bottom = bottom if bottom <= -_RAIL_MIN else -_FULL_SCALE - 2
    limit = len(samples) * CLIP_FRACTION
    # Cheap test first: clipped samples are a subset of those at a rail.
    if samples.count(top) + samples.count(bottom) <= limit:
        return
    clipped = 0
    for ch in range(seg.channels):
        run = 0
        for s in samples[ch :: seg.channels]:
            if s >= top or s <= bottom:
                run += 1
                continue
            if run >= CLIP_RUN:
                clipped += run
            run = 0
        if run >= CLIP_RUN:
            clipped += run
    if clipped > limit:
        share = 100.0 * clipped / len(samples)
        raise BadAudio(
            name,
            f"is clipped: {share:.2f}% of samples sit at full scale in runs of {CLIP_RUN} or more "
            f"(limit {100 * CLIP_FRACTION:g}%); record it again at a lower input level",
        )


def _trim(name: str, mono: AudioSegment) -> AudioSegment:
    from pydub.silence import detect_leading_silence

    lead = detect_leading_silence(mono, silence_threshold=SILENCE_THRESHOLD_DBFS, chunk_size=10)
    if lead >= len(mono):
        raise BadAudio(name, f"is silent: nothing in it is louder than {SILENCE_THRESHOLD_DBFS:g} dBFS")
    trail = detect_leading_silence(mono.reverse(), silence_threshold=SILENCE_THRESHOLD_DBFS, chunk_size=10)
    start = max(0, lead - EDGE_PADDING_MS)
    end = min(len(mono), len(mono) - trail + EDGE_PADDING_MS)
    return mono[start:end]
