"""How recordings are named in the spool directory, for the consent handler that
starts MixMonitor and the archiver that picks the files up.

MixMonitor writes ``<spool>/<recording_id>.wav`` (mono: both sides mixed) or, for
stereo, ``<recording_id>.raw`` (its ``D`` option: the two sides interleaved, 16-bit
8 kHz, no header; the archiver adds the WAV header). After closing the file, its
post-command touches ``<file>.done`` (the *done marker*).
"""

from __future__ import annotations

import re

RECORDING_EXT = ".wav"
STEREO_EXT = ".raw"
DONE_SUFFIX = ".done"
# The consent handler's recording ids ("r" and 24 hex digits): the only names the
# archiver adopts without a catalog row.
RECORDING_ID_RE = re.compile(r"r[0-9a-f]{24}")


def recording_file(recording_id: str, stereo: bool = False) -> str:
    """The spool file name of a recording: ``<recording_id>.wav`` or, stereo, ``.raw``."""
    return f"{recording_id}{STEREO_EXT if stereo else RECORDING_EXT}"


def done_marker(path: str) -> str:
    """The done marker's path (or name) for a recording's path (or name)."""
    return f"{path}{DONE_SUFFIX}"
