"""Files only this account may read: the database, ledger exports, keys, quarantine.

The database holds password hashes, CSRF tokens and caller HMACs; the HMAC key makes
those HMACs reversible for a small number space; identities decrypt recordings. Each
such file is created 0600 (whatever the umask), and each directory made for one 0700.
Directories that already exist are left as the administrator made them: loosening or
tightening them could break another service's access they arranged on purpose.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` where each directory created is 0700 (existing ones are untouched)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile: theirs, not ours to change
        os.chmod(d, DIR_MODE)  # mkdir's mode passes through the umask
    return path


def create_file(path: str | os.PathLike[str], *, exclusive: bool = False) -> int:
    """Open ``path`` for writing, creating it 0600 if missing; returns the descriptor.

    An existing file keeps its mode (it may be the administrator's); ``exclusive``
    refuses one instead.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    existed = not exclusive and os.path.exists(path)
    fd = os.open(path, flags, FILE_MODE)
    if not existed:
        try:
            os.fchmod(fd, FILE_MODE)  # a umask such as 0277 could otherwise leave it unwritable
        except BaseException:
            os.close(fd)
            raise
    return fd


def touch(path: str | os.PathLike[str]) -> bool:
    """Create an empty 0600 file unless ``path`` exists; True if this call created it."""
    try:
        os.close(create_file(path, exclusive=True))
    except FileExistsError:
        return False
    return True


def exposure(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is readable by others than its owner (``"mode 0644"``), or None.
    A missing file is None: whoever checks for existence says so."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        return f"mode {mode:04o}: {'others' if mode & 0o007 else 'its group'} can get at it"
    return None
