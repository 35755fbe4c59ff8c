"""age v1 encryption for recordings: the project's cryptographic trust boundary.

This is the only module that imports ``cryptography`` primitives. It implements
the subset of the age v1 format (C2SP age spec) that callvault needs: X25519
recipients, the scrypt recipient for passphrase-protected identity files, the
header MAC and the 64 KiB ChaCha20-Poly1305 STREAM payload. The byte layout,
what is authenticated and the random-access arithmetic are written down in
``docs/recording-format.md``; the real ``age`` and ``rage`` tools are the
reference (tests check interop both ways).

Header and payload are produced separately because callvault stores them as
two objects (crypto-shredding under WORM); ``header || payload`` is a valid age
file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import mmap
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import BinaryIO, NamedTuple, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from storage.blobstore import PartDigests, PartHasher
from storage.errors import IntegrityError, PermanentError

CHUNK_SIZE = 64 * 1024  # plaintext bytes per STREAM chunk (fixed by age v1)
TAG_SIZE = 16
NONCE_SIZE = 16  # payload nonce prefix
ENC_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
FILE_KEY_SIZE = 16
VERSION_LINE = b"age-encryption.org/v1\n"
MAX_HEADER_SIZE = 1 << 20  # refuse absurd headers from untrusted input
BLOCK_CHUNKS = 16  # chunks per block in Encryptor.encrypt_to (1 MiB of plaintext)
FORMAT = "age-encryption.org/v1"
_MAC_LINE_SIZE = len(b"--- ") + 43 + 1
_ZERO_NONCE = bytes(12)
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"


# --- errors -------------------------------------------------------------------

class KeyFormatError(PermanentError, ValueError):
    """A key, recipient or identity string/file is malformed (local misuse)."""


class HeaderError(IntegrityError):
    """The age header is malformed, unsupported or violates the spec."""


class HeaderMacError(HeaderError):
    """The header MAC does not verify: the header was modified."""


class NoMatchingIdentity(IntegrityError):
    """None of the given identities (or the passphrase) unwraps the file key."""


class PayloadError(IntegrityError):
    """The payload does not verify under the header's file key."""


class TruncatedPayload(PayloadError):
    """The payload ends before its final chunk."""


class TrailingData(PayloadError):
    """Bytes follow the chunk that is authenticated as final."""


class ChunkAuthError(PayloadError):
    """A chunk fails authentication: corrupted, reordered, or another file's."""


# --- bech32 (BIP173, no length limit, as age uses it) ---------------------------

_B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_B32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _B32_GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Iterable[int], frm: int, to: int, pad: bool) -> bytes:
    acc = bits = 0
    out = bytearray()
    for v in data:
        acc = (acc << frm) | v
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & ((1 << to) - 1))
    if pad:
        if bits:
            out.append((acc << (to - bits)) & ((1 << to) - 1))
    elif bits >= frm or (acc << (to - bits)) & ((1 << to) - 1):
        raise KeyFormatError("bech32: invalid padding")
    return bytes(out)


def bech32_encode(hrp: str, data: bytes) -> str:
    """Encode; an all-uppercase ``hrp`` gives an all-uppercase string (as age does)."""
    lower = hrp.lower()
    words = list(_convert_bits(data, 8, 5, pad=True))
    chk = _polymod(_hrp_expand(lower) + words + [0] * 6) ^ 1
    words += [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    s = lower + "1" + "".join(_B32[w] for w in words)
    return s.upper() if hrp.isupper() else s


def bech32_decode(s: str) -> tuple[str, bytes]:
    """Decode to (lowercase hrp, data); checks case, charset and checksum."""
    if s.lower() != s and s.upper() != s:
        raise KeyFormatError("bech32: mixed case")
    if any(not 33 <= ord(c) <= 126 for c in s):
        raise KeyFormatError("bech32: invalid character")
    s = s.lower()
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise KeyFormatError("bech32: missing separator or checksum")
    hrp, part = s[:pos], s[pos + 1:]
    try:
        words = [_B32.index(c) for c in part]
    except ValueError:
        raise KeyFormatError("bech32: invalid data character") from None
    if _polymod(_hrp_expand(hrp) + words) != 1:
        raise KeyFormatError("bech32: bad checksum")
    return hrp, _convert_bits(words[:-6], 5, 8, pad=False)


# --- small helpers --------------------------------------------------------------

_B64_RE = re.compile(rb"[A-Za-z0-9+/]*")


def _b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text: bytes, what: str) -> bytes:
    """Unpadded, canonical base64 only (the spec requires rejecting the rest)."""
    if not _B64_RE.fullmatch(text) or len(text) % 4 == 1:
        raise HeaderError(f"{what}: invalid base64")
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise HeaderError(f"{what}: invalid base64") from None
    if _b64encode(raw) != text:
        raise HeaderError(f"{what}: non-canonical base64")
    return raw


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _chunk_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _payload_aead(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))


# --- keys -----------------------------------------------------------------------

@dataclass(frozen=True)
class Recipient:
    """An X25519 age recipient (public key), ``age1...``."""

    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise KeyFormatError("X25519 recipient must be 32 bytes")

    @classmethod
    def parse(cls, text: str) -> Recipient:
        text = text.strip()
        if text.startswith("ssh-"):
            raise KeyFormatError("SSH recipients are not supported; use an age1... recipient")
        hrp, data = bech32_decode(text)
        if hrp != "age":  # also rejects age1pq1.../age1tag1...: hrp is up to the last "1"
            raise KeyFormatError(f"not a native X25519 age recipient (bech32 type {hrp!r})")
        return cls(data)

    def __str__(self) -> str:
        return bech32_encode("age", self.public_key)

    def __repr__(self) -> str:
        return f"Recipient({str(self)!r})"

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 of the ``age1...`` string: a stable,
        public, short id for manifests and the catalog (not a secret, not
        collision-resistant enough to authenticate anything)."""
        return hashlib.sha256(str(self).encode("ascii")).hexdigest()[:16]

    def _wrap(self, file_key: bytes, ephemeral: bytes | None = None) -> Stanza:
        eph = (X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral is not None
               else X25519PrivateKey.generate())
        share = eph.public_key().public_bytes_raw()
        try:
            shared = eph.exchange(X25519PublicKey.from_public_bytes(self.public_key))
        except ValueError:
            raise KeyFormatError("recipient is a low-order point") from None
        wrap_key = _hkdf(shared, share + self.public_key, _X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return Stanza("X25519", (_b64encode(share).decode(),), body)


class _Unwrapper(Protocol):
    def _unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None: ...


class Identity:
    """An X25519 age identity (private key). ``repr``/``str`` never show the
    secret; ``secret_string()`` is the one explicit way to get it."""

    __slots__ = ("_key", "recipient")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise KeyFormatError("X25519 identity must be 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self.recipient = Recipient(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> Identity:
        try:
            hrp, data = bech32_decode(text.strip())
        except KeyFormatError:
            # The message must not echo the (possibly secret) input.
            raise KeyFormatError("malformed age identity (AGE-SECRET-KEY-1...)") from None
        if hrp != "age-secret-key-":
            raise KeyFormatError("not an age X25519 identity (AGE-SECRET-KEY-1...)")
        return cls(data)

    def secret_string(self) -> str:
        return bech32_encode("AGE-SECRET-KEY-", self._key.private_bytes_raw())

    @property
    def fingerprint(self) -> str:
        return self.recipient.fingerprint

    def __repr__(self) -> str:
        return f"Identity(recipient={str(self.recipient)!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and self.recipient == other.recipient

    def __hash__(self) -> int:
        return hash(self.recipient)

    def __reduce__(self):  # pickling would copy the secret somewhere unplanned
        raise TypeError("Identity is not picklable")

    def _unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for s in stanzas:
            if s.type != "X25519":
                continue
            if len(s.args) != 1:
                raise HeaderError("X25519 stanza must have exactly two arguments")
            share = _b64decode(s.args[0].encode("ascii"), "X25519 share")
            if len(share) != 32 or len(s.body) != 32:
                raise HeaderError("X25519 stanza: bad share or body length")
            try:
                shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:
                raise HeaderError("X25519 stanza: low-order ephemeral share") from None
            wrap_key = _hkdf(shared, share + self.recipient.public_key, _X25519_LABEL)
            try:
                return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, s.body, None)
            except InvalidTag:
                continue
        return None


@dataclass(frozen=True, repr=False)
class _ScryptIdentity:
    passphrase: bytes
    max_work_factor: int

    def _unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for s in stanzas:
            if s.type != "scrypt":
                continue
            if len(s.args) != 2 or not re.fullmatch(r"[1-9][0-9]*", s.args[1]):
                raise HeaderError("scrypt stanza: bad arguments")
            salt = _b64decode(s.args[0].encode("ascii"), "scrypt salt")
            log_n = int(s.args[1])
            if len(salt) != 16 or len(s.body) != 32:
                raise HeaderError("scrypt stanza: bad salt or body length")
            if log_n > self.max_work_factor:
                raise HeaderError(f"scrypt work factor {log_n} exceeds limit {self.max_work_factor}")
            key = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1)
            try:
                return ChaCha20Poly1305(key.derive(self.passphrase)).decrypt(_ZERO_NONCE, s.body, None)
            except InvalidTag:
                raise NoMatchingIdentity("wrong passphrase") from None
        return None


# --- header -----------------------------------------------------------------------

@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: ``-> type args...`` and its binary body."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        b64 = _b64encode(self.body)
        lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
        if len(b64) % 64 == 0:
            lines.append(b"")  # the body always ends with a short line
        arg_line = " ".join((self.type, *self.args)).encode("ascii")
        return b"-> " + arg_line + b"\n" + b"".join(line + b"\n" for line in lines)


def _header_with_mac(file_key: bytes, stanzas: Sequence[Stanza]) -> bytes:
    body = VERSION_LINE + b"".join(s.encode() for s in stanzas) + b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), body, hashlib.sha256).digest()
    return body + b" " + _b64encode(mac) + b"\n"


def build_header(file_key: bytes, recipients: Sequence[Recipient], *,
                 _ephemeral_secrets: Sequence[bytes] | None = None) -> bytes:
    """The age header wrapping ``file_key`` to every recipient, MAC line included.
    ``_ephemeral_secrets`` is a test hook for deterministic vectors."""
    if len(file_key) != FILE_KEY_SIZE:
        raise ValueError("file key must be 16 bytes")
    if not recipients:
        raise KeyFormatError("at least one recipient is required")
    ephs = list(_ephemeral_secrets) if _ephemeral_secrets else [None] * len(recipients)
    return _header_with_mac(file_key, [r._wrap(file_key, e) for r, e in zip(recipients, ephs)])


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
            mac = _b64decode(line[4:], "header MAC")
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
        body = _b64decode(b"".join(body_lines), "stanza body")
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


def unwrap_file_key(header_bytes: bytes, identities: Sequence[_Unwrapper]) -> bytes:
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
    expected = hmac.new(_hkdf(file_key, b"", b"header"), header_bytes[:n - _MAC_LINE_SIZE + 3],
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise HeaderMacError("header MAC mismatch: the header was modified")
    return file_key


# --- payload size arithmetic ---------------------------------------------------------

def chunk_count(plaintext_size: int) -> int:
    """STREAM chunks for a plaintext size (an empty plaintext is one empty chunk)."""
    return max(1, -(-plaintext_size // CHUNK_SIZE))


def payload_size_for(plaintext_size: int) -> int:
    if plaintext_size < 0:
        raise ValueError("negative plaintext size")
    return NONCE_SIZE + plaintext_size + TAG_SIZE * chunk_count(plaintext_size)


def plaintext_size(payload_size: int) -> int:
    """Plaintext size implied by a payload object's size (nonce included).
    Trust it only once the final chunk has been verified (see the format doc)."""
    body = payload_size - NONCE_SIZE
    if body < TAG_SIZE:
        raise TruncatedPayload(f"{payload_size}-byte payload cannot hold a nonce and a final chunk")
    n = -(-body // ENC_CHUNK_SIZE)
    last = body - (n - 1) * ENC_CHUNK_SIZE
    if last < TAG_SIZE or (last == TAG_SIZE and n > 1):
        raise PayloadError(f"{payload_size} bytes is not a possible age payload size")
    return body - n * TAG_SIZE


class ChunkSpan(NamedTuple):
    """Chunks covering a plaintext range and the payload bytes holding them."""

    first_chunk: int
    last_chunk: int
    payload_start: int  # offset in the payload object (the 16-byte nonce included)
    payload_end: int  # exclusive
    includes_last: bool  # last_chunk is the object's final chunk


def plaintext_range_to_chunks(start: int, end: int, payload_size: int) -> ChunkSpan:
    """Map plaintext [start, end) (end clamped to the plaintext size) to chunks.
    Chunk i covers plaintext [i*65536, (i+1)*65536) and sits at payload offset
    16 + i*65552. An empty range still names the chunk holding ``start``."""
    size = plaintext_size(payload_size)
    if start < 0 or end < start:
        raise ValueError(f"bad range [{start}, {end})")
    if start > size:
        raise ValueError(f"range start {start} is beyond the plaintext size {size}")
    end = min(end, size)
    n = chunk_count(size)
    first = min(start // CHUNK_SIZE, n - 1)
    last = first if end <= start else min((end - 1) // CHUNK_SIZE, n - 1)
    p_end = min(NONCE_SIZE + (last + 1) * ENC_CHUNK_SIZE, payload_size)
    return ChunkSpan(first, last, NONCE_SIZE + first * ENC_CHUNK_SIZE, p_end, last == n - 1)


# --- manifest ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest:
    """What the archiver records about one encrypted recording."""

    plaintext_sha256: str
    payload_sha256: str
    header_sha256: str
    plaintext_size: int
    payload_size: int
    recipient_fingerprints: tuple[str, ...]
    chunk_size: int = CHUNK_SIZE
    format: str = FORMAT

    def to_json(self) -> str:
        d = asdict(self)
        d["recipient_fingerprints"] = list(self.recipient_fingerprints)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise IntegrityError(f"manifest is not JSON: {exc}") from None
        names = set(cls.__dataclass_fields__)
        if not isinstance(d, dict) or set(d) != names:
            raise IntegrityError(f"manifest must have exactly the fields {sorted(names)}")
        hexes = ("plaintext_sha256", "payload_sha256", "header_sha256")
        fps = d["recipient_fingerprints"]
        ok = (all(isinstance(d[k], str) and re.fullmatch("[0-9a-f]{64}", d[k]) for k in hexes)
              and all(type(d[k]) is int and d[k] >= 0 for k in ("plaintext_size", "payload_size"))
              and isinstance(fps, list) and fps
              and all(isinstance(f, str) and re.fullmatch("[0-9a-f]{16}", f) for f in fps)
              and d["chunk_size"] == CHUNK_SIZE and d["format"] == FORMAT)
        if not ok or payload_size_for(d["plaintext_size"]) != d["payload_size"]:
            raise IntegrityError("manifest fields are malformed or inconsistent")
        d["recipient_fingerprints"] = tuple(fps)
        return cls(**d)


# --- streaming encryption -----------------------------------------------------------------

def _iter_source(source, read_size: int = 4 * CHUNK_SIZE) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield source
    elif hasattr(source, "read"):
        while piece := source.read(read_size):
            yield piece
    else:
        yield from source


def _full_pieces(buf: bytearray, data, size: int) -> Iterator:
    """Yield each ``size``-byte piece of ``buf + data`` that more bytes follow
    (so it is not the stream's final chunk); keep the rest (<= size) in ``buf``.
    Pieces come straight from ``data`` when nothing is buffered: no copy."""
    mv = memoryview(data)
    off = 0
    if buf:
        off = min(size - len(buf), len(mv))
        buf += mv[:off]
        if off == len(mv):
            return
        yield buf  # full, and more follows
        buf.clear()
    while len(mv) - off > size:
        yield mv[off:off + size]
        off += size
    buf += mv[off:]


class _Sealer:
    """Sans-I/O STREAM encryption: nonce prefix, then sealed chunks. Holds at
    most one chunk of plaintext because a chunk is sealed as non-final only
    once a byte beyond it has arrived."""

    def __init__(self, file_key: bytes, nonce: bytes) -> None:
        if len(nonce) != NONCE_SIZE:
            raise ValueError("payload nonce must be 16 bytes")
        self._aead = _payload_aead(file_key, nonce)
        self._prefix = bytes(nonce)
        self._buf = bytearray()
        self._index = 0
        self.done = False
        self.pt_hash, self.ct_hash = hashlib.sha256(), hashlib.sha256()
        self.plaintext_size = self.payload_size = 0

    def _emit(self, out: list[bytes], data: bytes) -> None:
        self.ct_hash.update(data)
        self.payload_size += len(data)
        out.append(data)

    def update(self, data) -> bytes:
        if self.done:
            raise RuntimeError("update() after finalize()")
        out: list[bytes] = []
        if self._prefix:
            self._emit(out, self._prefix)
            self._prefix = b""
        self.pt_hash.update(data)
        self.plaintext_size += len(data)
        for piece in _full_pieces(self._buf, data, CHUNK_SIZE):
            self._emit(out, self._aead.encrypt(_chunk_nonce(self._index, False), piece, None))
            self._index += 1
        return b"".join(out)

    def finalize(self) -> bytes:
        out: list[bytes] = [self.update(b"")]
        self._emit(out, self._aead.encrypt(_chunk_nonce(self._index, True), bytes(self._buf), None))
        self._buf.clear()
        self.done = True
        return b"".join(out)


class Encryptor:
    """Encrypt one recording to ``recipients`` as an age v1 file, streaming.

    ``header`` is available at once; the payload comes from ``update()`` and
    ``finalize()`` (or ``payload_chunks(source)``). After finalizing,
    ``manifest`` has the sizes and SHA-256 digests. The ``_file_key``,
    ``_nonce`` and ``_ephemeral_secrets`` hooks exist only for test vectors."""

    def __init__(self, recipients: Sequence[Recipient], *, _file_key: bytes | None = None,
                 _nonce: bytes | None = None,
                 _ephemeral_secrets: Sequence[bytes] | None = None) -> None:
        recipients = list(recipients)
        file_key = os.urandom(FILE_KEY_SIZE) if _file_key is None else _file_key
        self.header: bytes = build_header(file_key, recipients, _ephemeral_secrets=_ephemeral_secrets)
        self.recipient_fingerprints = tuple(r.fingerprint for r in recipients)
        self._sealer = _Sealer(file_key, os.urandom(NONCE_SIZE) if _nonce is None else _nonce)
        self.part_digests: PartDigests | None = None  # set by encrypt_to(part_size=...)

    def update(self, data) -> bytes:
        return self._sealer.update(data)

    def finalize(self) -> bytes:
        return self._sealer.finalize()

    def payload_chunks(self, source) -> Iterator[bytes]:
        """Payload pieces for ``source``: a binary file, an iterable of bytes, or bytes."""
        for piece in _iter_source(source):
            if out := self.update(piece):
                yield out
        yield self.finalize()

    def encrypt_to(self, source, write: Callable[[memoryview], object], *,
                   progress: Callable[[int], None] | None = None, blocks: int = 4,
                   part_size: int | None = None) -> Manifest:
        """Encrypt all of the binary file ``source`` and pass the payload to ``write``
        in pieces of about 1 MiB; return the manifest. Byte for byte what
        ``payload_chunks`` gives, but made for whole files: chunks are sealed straight
        into reused buffers on the calling thread, while the SHA-256 of the plaintext,
        the SHA-256 of the payload and ``write`` each run on a helper thread of their
        own (hashlib, ChaCha20-Poly1305 and file writes release the GIL), so they use
        the cores side by side instead of taking turns on one.

        ``write(piece)`` is called on a helper thread, one piece at a time and in
        order, and must be done with ``piece`` when it returns: the buffer is reused.
        ``progress(payload bytes written so far)`` is called on the calling thread
        after each piece is handed over, and once more at the end with the total. An exception from either stops the
        encryption and propagates (all helper threads have ended by then); the
        Encryptor is then spent. Memory: ``blocks`` (>= 2) pairs of 1 MiB buffers,
        whatever the size of ``source``. Needs a fresh Encryptor (no ``update``).

        With ``part_size``, a fourth helper thread also takes the SHA-256 of each
        ``part_size`` slice of the payload (payload byte offsets, the nonce included)
        from the same buffers the payload digest and ``write`` get; they are
        ``part_digests`` afterwards (``storage.blobstore.PartDigests``, what
        ``BlobStore.put(parts=...)`` takes)."""
        s = self._sealer
        if s.done or not s._prefix:
            raise RuntimeError("encrypt_to() needs a fresh Encryptor")
        block, sealed_block = BLOCK_CHUNKS * CHUNK_SIZE, BLOCK_CHUNKS * ENC_CHUNK_SIZE
        # Anonymous mappings rather than bytearrays: unmapped when done, so the buffers
        # do not stay in the allocator's arenas (and in RSS) for the upload that follows.
        maps = [mmap.mmap(-1, size) for _ in range(max(2, blocks)) for size in (block, sealed_block)]
        pairs = [(maps[k], maps[k + 1]) for k in range(0, len(maps), 2)]
        hashing: list[tuple[Future, ...] | None] = [None] * len(pairs)
        pt_pool = ThreadPoolExecutor(1, thread_name_prefix="age-sha256-pt")
        ct_pool = ThreadPoolExecutor(1, thread_name_prefix="age-sha256-ct")
        out_pool = ThreadPoolExecutor(1, thread_name_prefix="age-write")
        parts = PartHasher(part_size) if part_size is not None else None
        part_pool = ThreadPoolExecutor(1, thread_name_prefix="age-sha256-parts") if parts is not None else None

        written = 0

        def put(piece: memoryview) -> None:  # on the writer thread
            nonlocal written
            write(piece)
            written += len(piece)

        def settle(i: int) -> None:  # pair i is hashed and written: its buffers may be refilled
            if hashing[i] is not None:
                for f in hashing[i]:
                    f.result()
                hashing[i] = None

        try:
            prefix, s._prefix = s._prefix, b""
            s._emit([], prefix)
            if parts is not None:
                parts.update(prefix)
            out_pool.submit(put, memoryview(prefix)).result()
            if progress is not None:
                progress(written)
            i = 0
            n = _fill(source, pairs[0][0])
            while True:
                # Read the next block first: a chunk is final only if nothing follows it.
                j = (i + 1) % len(pairs)
                settle(j)
                following = _fill(source, pairs[j][0]) if n == block else 0
                pt, ct = (memoryview(b) for b in pairs[i])
                last = following == 0
                count = max(1, -(-n // CHUNK_SIZE)) if last else BLOCK_CHUNKS
                p = c = 0
                for k in range(count):
                    size = min(CHUNK_SIZE, n - p)
                    s._aead.encrypt_into(_chunk_nonce(s._index, last and k == count - 1), pt[p:p + size],
                                         None, ct[c:c + size + TAG_SIZE])
                    s._index += 1
                    p, c = p + size, c + size + TAG_SIZE
                hashing[i] = (pt_pool.submit(s.pt_hash.update, pt[:n]), ct_pool.submit(s.ct_hash.update, ct[:c]),
                              out_pool.submit(put, ct[:c]))
                if part_pool is not None:
                    hashing[i] += (part_pool.submit(parts.update, ct[:c]),)
                s.plaintext_size += n
                s.payload_size += c
                if progress is not None:
                    progress(written)
                if last:
                    break
                i, n = j, following
            for i in range(len(pairs)):
                settle(i)
            if progress is not None:
                progress(written)
            if parts is not None:
                self.part_digests = parts.digests()
            s.done = True
        finally:
            for pool in (pt_pool, ct_pool, out_pool, part_pool):
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
            hashing.clear()
            pt = ct = None  # noqa: F841  (views of the maps)
            for m in maps:
                with contextlib.suppress(BufferError):  # a view still held elsewhere: GC unmaps it
                    m.close()
        return self.manifest

    @property
    def manifest(self) -> Manifest:
        s = self._sealer
        if not s.done:
            raise RuntimeError("manifest is known only after finalize()")
        return Manifest(plaintext_sha256=s.pt_hash.hexdigest(), payload_sha256=s.ct_hash.hexdigest(),
                        header_sha256=hashlib.sha256(self.header).hexdigest(),
                        plaintext_size=s.plaintext_size, payload_size=s.payload_size,
                        recipient_fingerprints=self.recipient_fingerprints)


def _fill(source, buf: bytearray) -> int:
    """Read into ``buf`` until it is full or the source ends; the byte count."""
    view = memoryview(buf)
    readinto = getattr(source, "readinto", None)
    pos = 0
    while pos < len(buf):
        if readinto is not None:
            got = readinto(view[pos:])
        else:
            piece = source.read(len(buf) - pos)
            got = len(piece) if piece else 0
            view[pos:pos + got] = piece or b""
        if not got:
            break
        pos += got
    return pos


class _Sink:
    """A path (written and fsynced; removed if encryption fails) or an open stream."""

    def __init__(self, target) -> None:
        self._path = None if hasattr(target, "write") else os.fspath(target)
        self._f = target if self._path is None else open(self._path, "wb")

    def __enter__(self) -> BinaryIO:
        return self._f

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._path is None:
            return
        try:
            if exc_type is None:
                self._f.flush()
                os.fsync(self._f.fileno())
        finally:
            self._f.close()
            if exc_type is not None:
                os.unlink(self._path)


def encrypt_file(src_path, header_out, payload_out, recipients: Sequence[Recipient]) -> Manifest:
    """Encrypt the file at ``src_path``; header and payload go to two separate
    paths or binary streams. Memory use is bounded by a few chunks."""
    enc = Encryptor(recipients)
    with open(src_path, "rb") as src, _Sink(header_out) as h, _Sink(payload_out) as p:
        h.write(enc.header)
        for piece in enc.payload_chunks(src):
            p.write(piece)
    return enc.manifest


# --- decryption ---------------------------------------------------------------------------

def _open_chunk(aead: ChaCha20Poly1305, chunk, index: int, last: bool) -> bytes:
    try:
        pt = aead.decrypt(_chunk_nonce(index, last), chunk, None)
    except InvalidTag:
        pass
    else:
        if last and not pt and index > 0:
            raise PayloadError(f"final chunk {index} is empty (age v1 forbids it after a full chunk)")
        return pt
    # Failed: the opposite last-chunk flag tells truncation/trailing data apart
    # from corruption. Both flags are authenticated, so this reveals nothing.
    try:
        aead.decrypt(_chunk_nonce(index, not last), chunk, None)
    except InvalidTag:
        raise ChunkAuthError(f"chunk {index} failed authentication: corrupted, reordered, cut "
                             "mid-chunk, or not encrypted under this header") from None
    if last:
        raise TruncatedPayload(f"payload truncated: chunk {index} is not final and nothing follows it")
    raise TrailingData(f"trailing data: chunk {index} is the final chunk but more bytes follow it")


class PayloadDecryptor:
    """Sans-I/O streaming decryption of a whole payload (get it from
    ``Decryptor.payload_decryptor()``). ``finalize()`` raises unless a valid
    final chunk ended the stream. Digests/sizes are set as data streams."""

    def __init__(self, file_key: bytes) -> None:
        self._file_key = file_key
        self._aead: ChaCha20Poly1305 | None = None
        self._buf = bytearray()
        self._index = 0
        self._done = False
        self.pt_hash, self.ct_hash = hashlib.sha256(), hashlib.sha256()
        self.plaintext_size = self.payload_size = 0

    @property
    def plaintext_sha256(self) -> str:
        return self.pt_hash.hexdigest()

    @property
    def payload_sha256(self) -> str:
        return self.ct_hash.hexdigest()

    def update(self, data) -> bytes:
        if self._done:
            raise RuntimeError("update() after finalize() or after an error")
        try:
            return self._update(data)
        except Exception:
            self._done = True  # no further output once anything failed to verify
            raise

    def _update(self, data) -> bytes:
        self.ct_hash.update(data)
        self.payload_size += len(data)
        if self._aead is None:
            need = NONCE_SIZE - len(self._buf)
            self._buf += memoryview(data)[:need]
            if len(self._buf) < NONCE_SIZE:
                return b""
            self._aead = _payload_aead(self._file_key, bytes(self._buf))
            self._buf.clear()
            data = memoryview(data)[need:]
        out: list[bytes] = []
        for piece in _full_pieces(self._buf, data, ENC_CHUNK_SIZE):
            out.append(_open_chunk(self._aead, piece, self._index, False))
            self._index += 1
        pt = b"".join(out)
        self.pt_hash.update(pt)
        self.plaintext_size += len(pt)
        return pt

    def finalize(self) -> bytes:
        if self._done:
            raise RuntimeError("finalize() called twice or after an error")
        self._done = True
        if self._aead is None:
            raise TruncatedPayload(f"payload is {len(self._buf)} bytes, shorter than the 16-byte nonce")
        rest = bytes(self._buf)
        self._buf.clear()
        if len(rest) < TAG_SIZE:
            where = "has a nonce but no chunk" if not rest else f"is cut inside chunk {self._index}"
            raise TruncatedPayload(f"payload {where}")
        pt = _open_chunk(self._aead, rest, self._index, True)
        self.pt_hash.update(pt)
        self.plaintext_size += len(pt)
        return pt


def _read_exact(read_range: Callable[[int, int], bytes], start: int, end: int) -> bytes:
    data = read_range(start, end)
    if len(data) != end - start:
        raise TruncatedPayload(f"payload range [{start}, {end}) returned {len(data)} bytes")
    return data


class Decryptor:
    """Decrypt one recording: unwraps the file key from ``header_bytes`` with
    the first matching identity and verifies the header MAC at construction."""

    def __init__(self, header_bytes: bytes, identities: Iterable[Identity]) -> None:
        self._file_key = unwrap_file_key(bytes(header_bytes), list(identities))
        self.header_sha256 = hashlib.sha256(header_bytes).hexdigest()
        self._aeads: dict[bytes, ChaCha20Poly1305] = {}

    def payload_decryptor(self) -> PayloadDecryptor:
        return PayloadDecryptor(self._file_key)

    def decrypt_stream(self, source) -> Iterator[bytes]:
        """Plaintext pieces of a whole payload (file, iterable of bytes, or bytes).
        The last piece is yielded only after the final chunk verified; a
        consumer must treat earlier pieces as unconfirmed until the end."""
        pd = self.payload_decryptor()
        for piece in _iter_source(source):
            if out := pd.update(piece):
                yield out
        if out := pd.finalize():
            yield out

    def decrypt(self, payload: bytes) -> bytes:
        pd = self.payload_decryptor()
        return pd.update(payload) + pd.finalize()

    def _aead_for(self, nonce: bytes) -> ChaCha20Poly1305:
        if len(nonce) != NONCE_SIZE:
            raise ValueError("payload nonce must be 16 bytes")
        nonce = bytes(nonce)
        if nonce not in self._aeads:
            self._aeads = {nonce: _payload_aead(self._file_key, nonce)}
        return self._aeads[nonce]

    def decrypt_chunks(self, chunk_bytes, first_index: int, is_last_known: bool, *,
                       nonce: bytes) -> bytes:
        """Decrypt consecutive encrypted chunks starting at ``first_index``.
        ``is_last_known``: the bytes end at the end of the payload object, so
        their final chunk must authenticate as the file's final chunk; if
        False, every chunk must be a full non-final chunk. ``nonce`` is the
        payload's first 16 bytes."""
        aead = self._aead_for(nonce)
        mv = memoryview(chunk_bytes)
        if not mv:
            raise TruncatedPayload("no chunk bytes given")
        count = -(-len(mv) // ENC_CHUNK_SIZE)
        out = []
        for j in range(count):
            piece, index = mv[j * ENC_CHUNK_SIZE:(j + 1) * ENC_CHUNK_SIZE], first_index + j
            last = is_last_known and j == count - 1
            if (len(piece) < ENC_CHUNK_SIZE and not last) or len(piece) < TAG_SIZE:
                raise TruncatedPayload(f"chunk {index} is cut short ({len(piece)} bytes)")
            out.append(_open_chunk(aead, piece, index, last))
        return b"".join(out)

    def decrypt_range(self, read_range: Callable[[int, int], bytes], start: int, end: int,
                      payload_size: int) -> bytes:
        """Plaintext [start, end) via ``read_range(a, b) -> payload[a:b]`` (e.g. an
        S3 ranged GET): at most two reads, only the chunks that are needed."""
        span = plaintext_range_to_chunks(start, end, payload_size)
        if span.first_chunk == 0:
            data = _read_exact(read_range, 0, span.payload_end)
            nonce, chunks = data[:NONCE_SIZE], memoryview(data)[NONCE_SIZE:]
        else:
            nonce = _read_exact(read_range, 0, NONCE_SIZE)
            chunks = _read_exact(read_range, span.payload_start, span.payload_end)
        pt = self.decrypt_chunks(chunks, span.first_chunk, span.includes_last, nonce=nonce)
        base = span.first_chunk * CHUNK_SIZE
        end = min(end, plaintext_size(payload_size))
        return pt[start - base:max(start, end) - base]


# --- passphrase files (scrypt recipient) -------------------------------------------------

def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    pw = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not pw:
        raise KeyFormatError("empty passphrase")
    return pw


def encrypt_with_passphrase(data: bytes, passphrase: str | bytes, *, work_factor: int = 18) -> bytes:
    """A complete age file (like ``age -p``) for small data such as an identity
    file. ``work_factor`` is log2 of scrypt's N (age's default is 18)."""
    if not 1 <= work_factor <= 30:
        raise ValueError("scrypt work factor must be in 1..30")
    file_key, salt = os.urandom(FILE_KEY_SIZE), os.urandom(16)
    kdf = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    body = ChaCha20Poly1305(kdf.derive(_passphrase_bytes(passphrase))).encrypt(_ZERO_NONCE, file_key, None)
    header = _header_with_mac(file_key, [Stanza("scrypt", (_b64encode(salt).decode(), str(work_factor)), body)])
    sealer = _Sealer(file_key, os.urandom(NONCE_SIZE))
    return header + sealer.update(data) + sealer.finalize()


def decrypt_with_passphrase(data: bytes, passphrase: str | bytes, *, max_work_factor: int = 22) -> bytes:
    """Decrypt a passphrase-encrypted age file (binary, not armored). Wrong
    passphrase: ``NoMatchingIdentity``; a work factor over the limit: ``HeaderError``."""
    n, stanzas, _ = parse_header(data)
    if not any(s.type == "scrypt" for s in stanzas):
        raise HeaderError("not a passphrase-encrypted age file (no scrypt stanza)")
    file_key = unwrap_file_key(data[:n], [_ScryptIdentity(_passphrase_bytes(passphrase), max_work_factor)])
    pd = PayloadDecryptor(file_key)
    return pd.update(memoryview(data)[n:]) + pd.finalize()
