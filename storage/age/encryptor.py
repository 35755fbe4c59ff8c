"""Encrypting one recording: ``Encryptor`` (the header at once, then the payload,
streamed or, with ``encrypt_to``, sealed in parallel into reused buffers) and
``encrypt_file``. What the encryption produced (sizes, digests, recipients) is an
``EncryptionSummary``; the archiver's manifest is built from it."""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from storage.age.header import FILE_KEY_SIZE, build_header
from storage.age.keys import Recipient
from storage.age.stream import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    Sealer,
    chunk_nonce,
    iter_source,
)

__all__ = ["BLOCK_CHUNKS", "INLINE_BYTES", "EncryptionSummary", "Encryptor", "encrypt_file"]

BLOCK_CHUNKS = 16  # chunks per block in Encryptor.encrypt_to (1 MiB of plaintext)
INLINE_BYTES = 8 << 20  # encrypt_to runs everything on the calling thread up to here
KEEP_PAIRS = 4  # buffer pairs kept mapped between encrypt_to calls (two concurrent jobs' first two)

# Buffer pairs a finished encrypt_to left for the next: mapping, faulting in and
# unmapping fresh ones cost about 1.7 ms of CPU, a third of encrypting a one-minute
# recording (docs/performance.md, "Encryption efficiency").
_free_pairs: list[tuple[mmap.mmap, mmap.mmap]] = []
_free_lock = threading.Lock()
_ZEROS = bytes(BLOCK_CHUNKS * CHUNK_SIZE)


@dataclass(frozen=True)
class EncryptionSummary:
    """What encrypting one recording produced: the SHA-256 digests (hex) of the
    plaintext, the payload and the header, the sizes, and the fingerprints of the
    recipients, in order."""

    plaintext_sha256: str
    payload_sha256: str
    header_sha256: str
    plaintext_size: int
    payload_size: int
    recipient_fingerprints: tuple[str, ...]


class Encryptor:
    """Encrypt one recording to ``recipients`` as an age v1 file, streaming.

    ``header`` is available at once; the payload comes from ``update()`` and
    ``finalize()`` (or ``payload_chunks(source)``). After finalizing,
    ``summary`` has the sizes and SHA-256 digests. The ``_file_key``,
    ``_nonce`` and ``_ephemeral_secrets`` hooks exist only for test vectors."""

    def __init__(self, recipients: Sequence[Recipient], *, _file_key: bytes | None = None,
                 _nonce: bytes | None = None,
                 _ephemeral_secrets: Sequence[bytes] | None = None) -> None:
        recipients = list(recipients)
        file_key = os.urandom(FILE_KEY_SIZE) if _file_key is None else _file_key
        self.header: bytes = build_header(file_key, recipients, _ephemeral_secrets=_ephemeral_secrets)
        self.recipient_fingerprints = tuple(r.fingerprint for r in recipients)
        self._sealer = Sealer(file_key, os.urandom(NONCE_SIZE) if _nonce is None else _nonce)

    def update(self, data) -> bytes:
        return self._sealer.update(data)

    def finalize(self) -> bytes:
        return self._sealer.finalize()

    def payload_chunks(self, source) -> Iterator[bytes]:
        """Payload pieces for ``source``: a binary file, an iterable of bytes, or bytes."""
        for piece in iter_source(source):
            if out := self.update(piece):
                yield out
        yield self.finalize()

    def encrypt_to(self, source, write: Callable[[memoryview], object], *,
                   progress: Callable[[int], None] | None = None, blocks: int = 4) -> EncryptionSummary:
        """Encrypt all of the binary file ``source`` and pass the payload to ``write``
        in pieces of about 1 MiB; return the summary. Byte for byte what
        ``payload_chunks`` gives, but made for whole files: chunks are sealed straight
        into reused buffers on the calling thread.

        The first ``INLINE_BYTES`` of payload are also hashed and written on the
        calling thread: most recordings end there, and for them starting helper
        threads and mapping more buffers costs more than running side by side saves.
        Beyond that the SHA-256 of the plaintext, the SHA-256 of the payload and
        ``write`` each run on a helper thread of their own (hashlib and file writes
        release the GIL; ChaCha20-Poly1305 does not), so they use the cores side by
        side instead of taking turns on one.

        ``write(piece)`` is called one piece at a time and in order (on the calling
        thread, then on a helper thread) and must be done with ``piece`` when it
        returns: the buffer is reused. ``progress(payload bytes written so far)`` is
        called on the calling thread after each piece is handed over, and once more at
        the end with the total. An exception from either stops the encryption and
        propagates (all helper threads have ended by then); the Encryptor is then
        spent. Memory: ``blocks`` (>= 2) pairs of 1 MiB buffers, whatever the size of
        ``source``; up to ``KEEP_PAIRS`` of them stay mapped for the next call (the
        plaintext ones wiped), the rest are unmapped. Needs a fresh Encryptor (no
        ``update``)."""
        s = self._sealer
        if s.done or not s._prefix:
            raise RuntimeError("encrypt_to() needs a fresh Encryptor")
        block, sealed_block = BLOCK_CHUNKS * CHUNK_SIZE, BLOCK_CHUNKS * ENC_CHUNK_SIZE
        # Anonymous mappings rather than bytearrays: the ones not kept for the next call
        # are unmapped when done, so they do not stay in the allocator's arenas (and in
        # RSS) for the upload that follows. Two pairs at first (kept ones when there
        # are); the rest only once the payload outgrows INLINE_BYTES.
        pairs: list[tuple[mmap.mmap, mmap.mmap]] = []

        def add_pairs(count: int) -> None:
            while len(pairs) < count:
                with _free_lock:
                    kept = _free_pairs.pop() if _free_pairs else None
                pairs.append(kept or (mmap.mmap(-1, block), mmap.mmap(-1, sealed_block)))

        add_pairs(2)
        hashing: dict[int, list[Future]] = {}  # pair -> its hashing and writing, under way
        pools: list[ThreadPoolExecutor] = []
        pt_pool = ct_pool = out_pool = None
        written = 0

        def put(piece: memoryview) -> None:
            nonlocal written
            write(piece)
            written += len(piece)

        def run(i: int, pool: ThreadPoolExecutor | None, fn, *args) -> None:
            if pool is None:
                fn(*args)
            else:
                hashing.setdefault(i, []).append(pool.submit(fn, *args))

        def settle(i: int) -> None:  # pair i is hashed and written: its buffers may be refilled
            for f in hashing.pop(i, ()):
                f.result()

        try:
            prefix, s._prefix = s._prefix, b""
            s.payload_size += len(prefix)
            s.ct_hash.update(prefix)
            put(memoryview(prefix))
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
                    s._aead.encrypt_into(chunk_nonce(s._index, last and k == count - 1), pt[p:p + size],
                                         None, ct[c:c + size + TAG_SIZE])
                    s._index += 1
                    p, c = p + size, c + size + TAG_SIZE
                run(i, pt_pool, s.pt_hash.update, pt[:n])
                run(i, ct_pool, s.ct_hash.update, ct[:c])
                run(i, out_pool, put, ct[:c])
                s.plaintext_size += n
                s.payload_size += c
                if progress is not None:
                    progress(written)
                if last:
                    break
                if pt_pool is None and s.payload_size >= INLINE_BYTES:
                    pools = [ThreadPoolExecutor(1, thread_name_prefix=f"age-{name}")
                             for name in ("sha256-pt", "sha256-ct", "write")]
                    pt_pool, ct_pool, out_pool = pools
                    add_pairs(max(2, blocks))  # j still names the pair holding the next block
                i, n = j, following
            for i in list(hashing):
                settle(i)
            if progress is not None:
                progress(written)
            s.done = True
        finally:
            for pool in pools:
                pool.shutdown(wait=True, cancel_futures=True)
            hashing.clear()
            pt = ct = None  # views of the maps: let them go before closing the maps
            _release(pairs)
        return self.summary

    @property
    def summary(self) -> EncryptionSummary:
        s = self._sealer
        if not s.done:
            raise RuntimeError("summary is known only after finalize()")
        return EncryptionSummary(plaintext_sha256=s.pt_hash.hexdigest(), payload_sha256=s.ct_hash.hexdigest(),
                                 header_sha256=hashlib.sha256(self.header).hexdigest(),
                                 plaintext_size=s.plaintext_size, payload_size=s.payload_size,
                                 recipient_fingerprints=self.recipient_fingerprints)


def _release(pairs: list[tuple[mmap.mmap, mmap.mmap]]) -> None:
    """Keep up to ``KEEP_PAIRS`` buffer pairs for the next call, plaintext wiped; unmap
    the rest (the extra pairs of a large recording: RSS goes back down)."""
    for pair in pairs:
        keep = len(_free_pairs) < KEEP_PAIRS
        if keep:
            pair[0][:] = _ZEROS
            with _free_lock:
                keep = len(_free_pairs) < KEEP_PAIRS
                if keep:
                    _free_pairs.append(pair)
        if not keep:
            for m in pair:
                with contextlib.suppress(BufferError):  # a view still held elsewhere: GC unmaps it
                    m.close()


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
        self._f = target if self._path is None else open(self._path, "wb")  # noqa: SIM115 (closed in __exit__)

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


def encrypt_file(src_path, header_out, payload_out, recipients: Sequence[Recipient]) -> EncryptionSummary:
    """Encrypt the file at ``src_path``; header and payload go to two separate
    paths or binary streams. Memory use is bounded by a few chunks."""
    enc = Encryptor(recipients)
    with open(src_path, "rb") as src, _Sink(header_out) as h, _Sink(payload_out) as p:
        h.write(enc.header)
        for piece in enc.payload_chunks(src):
            p.write(piece)
    return enc.summary


