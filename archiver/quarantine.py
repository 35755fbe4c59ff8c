"""Dead letters' spool files: out of the spool into a private quarantine, and back.

A dead letter (state ``failed``) still has its spool file: the plaintext WAV that
Asterisk wrote, readable by whoever may read the spool (Asterisk's user, often its
group). It is never deleted unasked (it may be the only copy of a call), so it moves
to ``<spool>/.callvault-quarantine/`` (0700, same file system: a rename, never a
copy) and the catalog notes when (``quarantined_at``). There it waits for the
operator: ``callvault recordings retry ID`` puts it back and queues it again;
``callvault recordings erase ID`` puts it back flagged for erasure, so the pipeline
destroys it (and anything already stored) and writes the ``erase`` ledger entry.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from storage import private
from storage.catalog import Catalog, Recording

from . import spool
from .errors import ArchiverError

log = logging.getLogger(__name__)

DIR_NAME = ".callvault-quarantine"


class NotQuarantined(ArchiverError):
    """The recording is not a dead letter whose file is in quarantine."""


def location(spool_path: str | os.PathLike[str]) -> Path:
    """Where the quarantined copy of ``spool_path`` lives."""
    path = Path(spool_path)
    return path.parent / DIR_NAME / path.name


def isolate(catalog: Catalog, rec: Recording) -> bool:
    """Move a dead letter's spool file and its ``.done`` marker into quarantine; True
    if a file was moved. A file already gone (nothing was recorded) is noted nowhere."""
    src = Path(rec.spool_path)
    if not src.exists():
        return False
    target = location(src)
    private.make_dirs(target.parent)
    os.chmod(target.parent, private.DIR_MODE)  # ours by name: never wider, whoever made it
    for path in (src, spool.marker_for(src)):
        try:
            os.rename(path, target.parent / path.name)
        except FileNotFoundError:
            continue
    catalog.update(rec.recording_id, quarantined_at=time.time())
    log.warning("archive %s: dead letter; spool file moved to %s (plaintext: retry or erase it)",
                rec.recording_id, target)
    return True


def release(catalog: Catalog, rec: Recording, *, erase: bool = False) -> Path:
    """Put a quarantined dead letter's file back in the spool and queue the job again
    (flagged for erasure if ``erase``). Returns the spool path. The job is not fresh
    (``attempts`` 1): an earlier run may have stored its header or payload, so the
    pipeline looks before it writes."""
    if rec.state != "failed" or rec.quarantined_at is None:
        why = (f"it is {rec.state}" if rec.state != "failed"
               else "it is a dead letter without a spool file (nothing was recorded)")
        raise NotQuarantined(f"recording {rec.recording_id} is not in quarantine: {why}; "
                             "only a dead letter whose spool file is quarantined can be released")
    src, dst = location(rec.spool_path), Path(rec.spool_path)
    if dst.exists():
        raise NotQuarantined(f"{dst} exists; move it away before releasing {rec.recording_id}")
    if not src.exists():
        raise NotQuarantined(f"{src} is missing: the quarantined file was removed by hand")
    os.rename(src, dst)
    marker = spool.marker_for(src)
    if marker.exists():
        os.rename(marker, spool.marker_for(dst))
    changes = {"state": "pending", "attempts": 1, "next_try_at": 0, "lease_until": 0, "last_error": "",
               "quarantined_at": None}
    if erase:
        changes["erase_requested"] = 1
    catalog.update(rec.recording_id, **changes)
    return dst
