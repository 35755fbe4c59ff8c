"""Identity and recipient files on top of ``storage.age`` (no primitives here).

Identity files use age-keygen's format, so ``age -d -i FILE`` reads ours and we
read theirs::

    # created: 2024-05-01T12:00:00Z
    # public key: age1...
    AGE-SECRET-KEY-1...

A passphrase-protected identity file is that text encrypted as an age file
with the scrypt recipient, which is what ``age -p`` produces and what
``age -d -i`` accepts (it prompts for the passphrase).
"""

from __future__ import annotations

import datetime
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from storage.age import (
    VERSION_LINE,
    Identity,
    KeyFormatError,
    Recipient,
    decrypt_with_passphrase,
    encrypt_with_passphrase,
)
from storage.errors import NotFound

_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"


def identity_file_text(identity: Identity, *, created: datetime.datetime | None = None) -> str:
    when = (created or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    return (f"# created: {when.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
            f"# public key: {identity.recipient}\n"
            f"{identity.secret_string()}\n")


def write_identity(path: str | os.PathLike, identity: Identity, passphrase: str | bytes | None = None,
                   *, work_factor: int = 18) -> None:
    """Create ``path`` (mode 0600) holding ``identity``; never overwrites.

    Written to a 0600 temp file in the same directory, fsynced, then hard-linked
    into place: the name appears complete or not at all, and an existing file
    (which may be the only copy of a key) makes this fail with FileExistsError.
    """
    path = Path(path)
    data = identity_file_text(identity).encode("ascii")
    if passphrase is not None:
        data = encrypt_with_passphrase(data, passphrase, work_factor=work_factor)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)  # mkstemp already uses 0600; make it explicit
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def parse_identities(text: str) -> list[Identity]:
    """Identities from age-keygen text: ``#`` comments and blank lines skipped."""
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(Identity.parse(line))
        except KeyFormatError as exc:
            # Never echo the line: it may be a secret key with a typo.
            raise KeyFormatError(f"identity file line {number}: {exc}") from None
    if not identities:
        raise KeyFormatError("no identity found")
    return identities


def load_identities(path: str | os.PathLike, passphrase: str | bytes | None = None,
                    *, max_work_factor: int = 22) -> list[Identity]:
    """Read an age-keygen identity file, or one encrypted with a passphrase."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"identity file {os.fspath(path)!r} does not exist") from None
    if data.lstrip().startswith(_ARMOR):
        raise KeyFormatError("armored identity files are not supported; re-encrypt without -a")
    if data.startswith(VERSION_LINE):
        if passphrase is None:
            raise KeyFormatError(f"identity file {os.fspath(path)!r} is encrypted; a passphrase is needed")
        data = decrypt_with_passphrase(data, passphrase, max_work_factor=max_work_factor)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFormatError("identity file is not text") from None
    return parse_identities(text)


def load_recipients(items: Iterable[str | os.PathLike]) -> list[Recipient]:
    """Recipients from ``age1...`` strings and/or recipients files (one per
    line, ``#`` comments; ``age-keygen -y`` output works). Order kept,
    duplicates dropped; an empty result is an error."""
    found: list[Recipient] = []
    for item in items:
        if isinstance(item, str) and item.strip().startswith("age1"):
            candidates = [(item, None)]
        else:
            try:
                lines = Path(item).read_text("utf-8").splitlines()
            except FileNotFoundError:
                raise NotFound(f"recipients file {os.fspath(item)!r} does not exist") from None
            candidates = [(ln, n) for n, ln in enumerate(lines, 1)
                          if ln.strip() and not ln.strip().startswith("#")]
        for text, number in candidates:
            try:
                recipient = Recipient.parse(text)
            except KeyFormatError as exc:
                where = f"{os.fspath(item)}:{number}: " if number else ""
                raise KeyFormatError(f"{where}{exc}") from None
            if recipient not in found:
                found.append(recipient)
    if not found:
        raise KeyFormatError("no recipient given")
    return found
