"""How recordings are named in the spool directory, for the consent handler that
starts MixMonitor and the archiver that picks the files up.

MixMonitor writes ``<spool>/<recording_id>.wav``; after closing it, its post-command
touches ``<recording_id>.wav.done`` (the *done marker*).
"""

from __future__ import annotations

import re

RECORDING_EXT = ".wav"
DONE_SUFFIX = ".done"
# The consent handler's recording ids ("r" and 24 hex digits): the only names the
# archiver adopts without a catalog row.
RECORDING_ID_RE = re.compile(r"r[0-9a-f]{24}")


def recording_file(recording_id: str) -> str:
    """The spool file name of a recording: ``<recording_id>.wav``."""
    return f"{recording_id}{RECORDING_EXT}"


def done_marker(path: str) -> str:
    """The done marker's path (or name) for a recording's path (or name)."""
    return f"{path}{DONE_SUFFIX}"
