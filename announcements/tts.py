"""Speech synthesis with espeak-ng, then the same pipeline as recorded prompts.

espeak-ng runs as a subprocess with an argument list (no shell) and reads the text
on standard input, so no text can become an option or a shell word. Its output is
a WAV file (22.05 kHz mono) that ``audio.prepare`` trims and normalises like any
import. espeak-ng speaks every built-in language, including ``af`` and ``tn``,
but not ``zu`` or ``xh``: prompts in those must be recorded and imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydub is imported by audio where it is used
    from pydub import AudioSegment

from . import audio
from .errors import BadAudio, SynthesisError

RATE_WPM = 150  # espeak-ng's default 175 is brisk for a notice heard once on a phone
TIMEOUT_S = 30.0


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SynthesisError("espeak-ng is not installed (apt-get install espeak-ng)")
    return path


def synthesize(text: str, voice: str, dest: str | os.PathLike[str]) -> None:
    """Speak ``text`` with espeak-ng ``voice`` into the WAV file ``dest``."""
    if not text.strip():
        raise SynthesisError("nothing to speak: the text is empty")
    if voice.startswith("-"):
        raise SynthesisError(f"invalid espeak-ng voice {voice!r}")
    cmd = [espeak_binary(), "-v", voice, "-s", str(RATE_WPM), "-b", "1", "-w", os.fspath(dest), "--stdin"]
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"espeak-ng took longer than {TIMEOUT_S:g} s (voice {voice!r})") from None
    message = proc.stderr.decode(errors="replace").strip()
    if "voice does not exist" in message:
        raise SynthesisError(
            f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`; fix the catalog's voice, "
            'or set voice = "" and record the prompts)'
        )
    if proc.returncode != 0 or not os.path.exists(dest) or os.path.getsize(dest) == 0:
        raise SynthesisError(f"espeak-ng failed (voice {voice!r}, exit {proc.returncode}): {message or 'no output'}")


def generate(text: str, voice: str, *, max_duration: float = audio.MAX_DURATION_S) -> AudioSegment:
    """The normalised 16 kHz master for ``text`` spoken by ``voice``."""
    with tempfile.TemporaryDirectory(prefix="callvault-tts-") as tmp:
        wav = os.path.join(tmp, "speech.wav")
        synthesize(text, voice, wav)
        try:
            return audio.prepare(wav, max_duration=max_duration)
        except BadAudio as e:
            raise SynthesisError(f"espeak-ng voice {voice!r} gave unusable audio for {text[:40]!r}: {e.reason}") from None
