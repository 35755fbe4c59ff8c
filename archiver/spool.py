"""The spool directory: which files are recordings and when one is complete.

MixMonitor writes ``<spool>/<recording_id>.wav`` (``.raw`` for stereo) and keeps it
open while it records. After closing it, its post-command touches ``<file>.done``. A file is
*closed* (safe to encrypt and later delete) when:

1. its ``.done`` marker exists; or
2. no process on the host holds it open (checked through ``/proc/*/fd`` by device
   and inode, so a chroot's or container's view of the path does not matter) and it
   has not changed for ``settle`` seconds. This covers orphans: Asterisk crashed or
   was restarted before the post-command ran. MixMonitor writes a running file at
   least every half second, so a file nobody holds open that is quiet for a few
   seconds is finished; or
3. when ``/proc`` cannot tell (not running as root, ``hidepid``), only a quiet period
   of ``quiet`` seconds counts.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from storage.spool_names import done_marker

RECORDING_SUFFIXES = (".wav", ".WAV", ".gsm", ".sln", ".sln16", ".raw")


@dataclass(frozen=True)
class SpoolRules:
    settle: float = 5.0  # seconds a file nobody holds open must be unchanged
    quiet: float = 120.0  # the same when /proc cannot tell who holds it open
    missing_grace: float = 10.0  # a file still absent this long after the call ended never comes


DEFAULT_RULES = SpoolRules()


def marker_for(path: Path) -> Path:
    return Path(done_marker(str(path)))


def is_recording_file(path: Path) -> bool:
    return path.suffix in RECORDING_SUFFIXES and not path.name.startswith(".")


def open_by_any_process(path: Path) -> bool | None:
    """True if some process has ``path`` open, False if none, None if we cannot tell."""
    st = os.stat(path)
    target = (st.st_dev, st.st_ino)
    unsure = False
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            unsure = True
            continue
        except OSError:  # the process exited meanwhile
            continue
        for fd in fds:
            try:
                s = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (s.st_dev, s.st_ino) == target:
                return True
    return None if unsure else False


def closed(path: Path, rules: SpoolRules, now: float | None = None) -> bool:
    """The module docstring's rule. A missing file is not closed."""
    if marker_for(path).exists():
        return True
    now = time.time() if now is None else now
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < min(rules.settle, rules.quiet):
        return False  # cheap answer first: it is still changing
    held = open_by_any_process(path)
    if held:
        return False
    return age >= (rules.quiet if held is None else rules.settle)


def ended_at(path: Path) -> float | None:
    """When the recording finished, as well as the files can tell."""
    for candidate in (marker_for(path), path):
        with contextlib.suppress(OSError):
            return candidate.stat().st_mtime
    return None


def unlink_quietly(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
