"""The age v1 header: recipient stanzas, then a MAC line keyed from the file key.

``build_header`` writes one, ``parse_header``/``read_header`` read one from
untrusted bytes, and ``unwrap_file_key`` gets the file key out with an identity
and verifies the MAC with it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from storage.age.errors import (
    HeaderError,
    HeaderMacError,
    KeyFormatError,
    NoMatchingIdentity,
)
from storage.age.primitives import b64decode, b64encode, hkdf

__all__ = ["FILE_KEY_SIZE", "FORMAT", "MAX_HEADER_SIZE", "VERSION_LINE", "Stanza", "Unwrapper", "Wrapper",
           "build_header", "header_with_mac", "parse_header", "read_header", "unwrap_file_key"]

FILE_KEY_SIZE = 16
VERSION_LINE = b"age-encryption.org/v1\n"
FORMAT = "age-encryption.org/v1"
MAX_HEADER_SIZE = 1 << 20  # refuse absurd headers from untrusted input
_MAC_LINE_SIZE = len(b"--- ") + 43 + 1


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: ``-> type args...`` and its binary body."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        b64 = b64encode(self.body)
        lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
        if len(b64) % 64 == 0:
            lines.append(b"")  # the body always ends with a short line
        arg_line = " ".join((self.type, *self.args)).encode("ascii")
        return b"-> " + arg_line + b"\n" + b"".join(line + b"\n" for line in lines)



class Unwrapper(Protocol):
    def _unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None: ...


class Wrapper(Protocol):
    """A recipient (``storage.age.keys.Recipient``): wraps a file key into its stanza."""

    def _wrap(self, file_key: bytes, ephemeral: bytes | None = None) -> Stanza: ...



def header_with_mac(file_key: bytes, stanzas: Sequence[Stanza]) -> bytes:
    body = VERSION_LINE + b"".join(s.encode() for s in stanzas) + b"---"
    mac = hmac.new(hkdf(file_key, b"", b"header"), body, hashlib.sha256).digest()
    return body + b" " + b64encode(mac) + b"\n"


def build_header(file_key: bytes, recipients: Sequence[Wrapper], *,
                 _ephemeral_secrets: Sequence[bytes] | None = None) -> bytes:
    """The age header wrapping ``file_key`` to every recipient, MAC line included.
    ``_ephemeral_secrets`` is a test hook for deterministic vectors."""
    if len(file_key) != FILE_KEY_SIZE:
        raise ValueError("file key must be 16 bytes")
    if not recipients:
        raise KeyFormatError("at least one recipient is required")
    ephs = list(_ephemeral_secrets) if _ephemeral_secrets else [None] * len(recipients)
    return header_with_mac(file_key, [r._wrap(file_key, e) for r, e in zip(recipients, ephs)])


def _next_line(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b"\n", pos, MAX_HEADER_SIZE)
    if end < 0:
        raise HeaderError("header truncated or larger than the limit")
    return data[pos:end], end + 1


def parse_header(data: bytes) -> tuple[int, list[Stanza], bytes]:
    """Parse the header at the start of ``data`` (which may continue with the
    payload). Returns (header length in bytes, stanzas, 32-byte MAC). Does not
    verify the MAC: that needs the file key (see ``unwrap_file_key``)."""
    if not data.startswith(VERSION_LINE):
        if data.startswith(b"age-encryption.org/"):
            raise HeaderError("unsupported age version")
        if data.lstrip().startswith(b"-----BEGIN AGE ENCRYPTED FILE-----"):
            raise HeaderError("ASCII-armored age files are not supported")
        raise HeaderError("not an age v1 file")
    pos = len(VERSION_LINE)
    stanzas: list[Stanza] = []
    while True:
        start = pos
        line, pos = _next_line(data, pos)
        if line.startswith(b"---"):
            if not stanzas:
                raise HeaderError("header has no recipient stanza")
            if len(line) != 47 or line[3:4] != b" ":
                raise HeaderError("malformed header MAC line")
            mac = b64decode(line[4:], "header MAC")
            assert pos - start == _MAC_LINE_SIZE
            return pos, stanzas, mac
        if not line.startswith(b"-> "):
            raise HeaderError("malformed header line")
        args = line[3:].split(b" ")
        if any(not a or any(not 0x21 <= c <= 0x7E for c in a) for a in args):
            raise HeaderError("malformed stanza arguments")
        body_lines = []
        while True:
            body_line, pos = _next_line(data, pos)
            if len(body_line) > 64:
                raise HeaderError("stanza body line longer than 64 columns")
            body_lines.append(body_line)
            if len(body_line) < 64:
                break
        body = b64decode(b"".join(body_lines), "stanza body")
        decoded = tuple(a.decode("ascii") for a in args)
        stanzas.append(Stanza(decoded[0], decoded[1:], body))


def read_header(stream: BinaryIO) -> bytes:
    """Read exactly the header from a binary stream (line by line), leaving the
    stream positioned at the start of the payload: splits an age file into the
    two objects without reading the payload."""
    out = bytearray()
    while True:
        line = stream.readline(MAX_HEADER_SIZE - len(out) + 1)
        out += line
        if not line.endswith(b"\n") or len(out) > MAX_HEADER_SIZE:
            raise HeaderError("header truncated or larger than the limit")
        if line.startswith(b"---"):
            n, _, _ = parse_header(bytes(out))
            return bytes(out[:n])


def unwrap_file_key(header_bytes: bytes, identities: Sequence[Unwrapper]) -> bytes:
    """Unwrap the file key with the first identity that matches, then verify the
    header MAC with it. ``header_bytes`` must be exactly the header."""
    n, stanzas, mac = parse_header(header_bytes)
    if n != len(header_bytes):
        raise HeaderError(f"{len(header_bytes) - n} bytes follow the header MAC "
                          "(pass only the header; split with parse_header)")
    if any(s.type == "scrypt" for s in stanzas) and len(stanzas) != 1:
        raise HeaderError("an scrypt stanza must be the only stanza")
    for identity in identities:
        file_key = identity._unwrap(stanzas)
        if file_key is not None:
            break
    else:
        kinds = ", ".join(sorted({s.type for s in stanzas}))
        raise NoMatchingIdentity(f"none of the {len(identities)} identities matches any of "
                                 f"the header's {len(stanzas)} stanza(s) ({kinds})")
    if len(file_key) != FILE_KEY_SIZE:
        raise HeaderError("unwrapped file key has the wrong length")
    expected = hmac.new(hkdf(file_key, b"", b"header"), header_bytes[:n - _MAC_LINE_SIZE + 3],
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise HeaderMacError("header MAC mismatch: the header was modified")
    return file_key
