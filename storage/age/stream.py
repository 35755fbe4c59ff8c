"""The age v1 payload: a 16-byte nonce, then the plaintext in 64 KiB chunks, each
sealed with ChaCha20-Poly1305 under a key derived from the file key and that
nonce (STREAM). The last chunk's nonce carries a "final" flag, so truncation and
trailing data are detected.

Here: the chunk nonces, the payload/plaintext size arithmetic and the mapping of a
plaintext range to the chunks that hold it (random access), the sans-I/O sealer
and decryptor, and ``Decryptor`` (whole payloads, streams and ranges)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from storage.age.errors import (
    ChunkAuthError,
    PayloadError,
    TrailingData,
    TruncatedPayload,
)
from storage.age.header import unwrap_file_key
from storage.age.primitives import hkdf

if TYPE_CHECKING:
    from storage.age.keys import Identity

__all__ = ["CHUNK_SIZE", "ENC_CHUNK_SIZE", "NONCE_SIZE", "TAG_SIZE", "ChunkSpan", "Decryptor",
           "PayloadDecryptor", "Sealer", "chunk_count", "chunk_nonce", "full_pieces", "iter_source",
           "payload_aead", "payload_size_for", "plaintext_range_to_chunks", "plaintext_size"]

CHUNK_SIZE = 64 * 1024  # plaintext bytes per STREAM chunk (fixed by age v1)
TAG_SIZE = 16
NONCE_SIZE = 16  # payload nonce prefix
ENC_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE


def chunk_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def payload_aead(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))



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



# --- streaming encryption -----------------------------------------------------------------

def iter_source(source, read_size: int = 4 * CHUNK_SIZE) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield source
    elif hasattr(source, "read"):
        while piece := source.read(read_size):
            yield piece
    else:
        yield from source


def full_pieces(buf: bytearray, data, size: int) -> Iterator:
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


class Sealer:
    """Sans-I/O STREAM encryption: nonce prefix, then sealed chunks. Holds at
    most one chunk of plaintext because a chunk is sealed as non-final only
    once a byte beyond it has arrived."""

    def __init__(self, file_key: bytes, nonce: bytes) -> None:
        if len(nonce) != NONCE_SIZE:
            raise ValueError("payload nonce must be 16 bytes")
        self._aead = payload_aead(file_key, nonce)
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
        for piece in full_pieces(self._buf, data, CHUNK_SIZE):
            self._emit(out, self._aead.encrypt(chunk_nonce(self._index, False), piece, None))
            self._index += 1
        return b"".join(out)

    def finalize(self) -> bytes:
        out: list[bytes] = [self.update(b"")]
        self._emit(out, self._aead.encrypt(chunk_nonce(self._index, True), bytes(self._buf), None))
        self._buf.clear()
        self.done = True
        return b"".join(out)


# --- decryption ---------------------------------------------------------------------------

def _open_chunk(aead: ChaCha20Poly1305, chunk, index: int, last: bool) -> bytes:
    try:
        pt = aead.decrypt(chunk_nonce(index, last), chunk, None)
    except InvalidTag:
        pass
    else:
        if last and not pt and index > 0:
            raise PayloadError(f"final chunk {index} is empty (age v1 forbids it after a full chunk)")
        return pt
    # Failed: the opposite last-chunk flag tells truncation/trailing data apart
    # from corruption. Both flags are authenticated, so this reveals nothing.
    try:
        aead.decrypt(chunk_nonce(index, not last), chunk, None)
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
            self._aead = payload_aead(self._file_key, bytes(self._buf))
            self._buf.clear()
            data = memoryview(data)[need:]
        out: list[bytes] = []
        for piece in full_pieces(self._buf, data, ENC_CHUNK_SIZE):
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
        for piece in iter_source(source):
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
            self._aeads = {nonce: payload_aead(self._file_key, nonce)}
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


