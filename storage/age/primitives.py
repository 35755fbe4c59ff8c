"""Small pieces shared by the header, the keys and the payload: unpadded canonical
base64 (as the age header writes it) and HKDF-SHA-256."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage.age.errors import HeaderError

_B64_RE = re.compile(rb"[A-Za-z0-9+/]*")


def b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def b64decode(text: bytes, what: str) -> bytes:
    """Unpadded, canonical base64 only (the spec requires rejecting the rest)."""
    if not _B64_RE.fullmatch(text) or len(text) % 4 == 1:
        raise HeaderError(f"{what}: invalid base64")
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise HeaderError(f"{what}: invalid base64") from None
    if b64encode(raw) != text:
        raise HeaderError(f"{what}: non-canonical base64")
    return raw


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)

