"""storage.age.encryptor: Encryptor, encrypt_to (the archiver's whole-file path) and
encrypt_file; what they write is read by the real ``age`` and by pyrage (rage).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import tracemalloc
from pathlib import Path

import pyrage
import pytest
from agehelpers import SIZES, age, data, encrypt

from storage.age import (
    BLOCK_CHUNKS,
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    INLINE_BYTES,
    ChunkAuthError,
    Decryptor,
    Encryptor,
    KeyFormatError,
    encrypt_file,
    parse_header,
    payload_size_for,
    plaintext_range_to_chunks,
    plaintext_size,
)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_and_age_decrypts_ours(size, ident, keyfile, tmp_path):
    pt = data(size, size)
    header, payload, enc = encrypt(pt, ident.recipient)
    assert len(payload) == payload_size_for(size)
    assert plaintext_size(len(payload)) == size
    assert Decryptor(header, [ident]).decrypt(payload) == pt
    m = enc.summary
    assert (m.plaintext_size, m.payload_size) == (size, len(payload))
    assert m.plaintext_sha256 == hashlib.sha256(pt).hexdigest()
    assert m.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert m.header_sha256 == hashlib.sha256(header).hexdigest()
    assert m.recipient_fingerprints == (ident.fingerprint,)
    (tmp_path / "f.age").write_bytes(header + payload)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "f.age")) == pt


@pytest.mark.parametrize("size", [0, 5, CHUNK_SIZE, 2 * CHUNK_SIZE + 3])
def test_pyrage_interop_both_ways(size, ident):
    pt = data(size, 99)
    header, payload, _ = encrypt(pt, ident.recipient)
    rage_identity = pyrage.x25519.Identity.from_str(ident.secret_string())
    assert pyrage.decrypt(header + payload, [rage_identity]) == pt
    blob = pyrage.encrypt(pt, [pyrage.x25519.Recipient.from_str(str(ident.recipient))])
    n = parse_header(blob)[0]
    assert Decryptor(blob[:n], [ident]).decrypt(blob[n:]) == pt


def test_encrypt_file_writes_two_objects(tmp_path, ident, keyfile):
    src = tmp_path / "call.wav"
    src.write_bytes(data(300_000, 3))
    m = encrypt_file(src, tmp_path / "h", tmp_path / "p", [ident.recipient])
    h, p = (tmp_path / "h").read_bytes(), (tmp_path / "p").read_bytes()
    assert m.header_sha256 == hashlib.sha256(h).hexdigest()
    assert m.payload_sha256 == hashlib.sha256(p).hexdigest()
    assert m.payload_size == len(p) and m.plaintext_size == 300_000
    (tmp_path / "joined.age").write_bytes(h + p)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "joined.age")) == src.read_bytes()
    hbuf, pbuf = io.BytesIO(), io.BytesIO()  # streams work too
    m2 = encrypt_file(src, hbuf, pbuf, [ident.recipient])
    assert Decryptor(hbuf.getvalue(), [ident]).decrypt(pbuf.getvalue()) == src.read_bytes()
    assert m2.plaintext_sha256 == m.plaintext_sha256 and m2.payload_sha256 != m.payload_sha256


def test_encrypt_file_leaves_no_partial_object(tmp_path, ident):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 1000)
    with pytest.raises(FileNotFoundError):
        encrypt_file(src, tmp_path / "h", tmp_path / "missing-dir" / "p", [ident.recipient])
    assert not (tmp_path / "h").exists()


def test_misuse_is_reported(tmp_path, ident):
    with pytest.raises(KeyFormatError, match="at least one recipient"):
        Encryptor([])
    enc = Encryptor([ident.recipient])
    with pytest.raises(RuntimeError, match="after finalize"):
        _ = enc.summary
    payload = enc.update(b"abc") + enc.finalize()
    with pytest.raises(RuntimeError):
        enc.update(b"more")
    pd = Decryptor(enc.header, [ident]).payload_decryptor()
    with pytest.raises(ChunkAuthError):
        pd.update(payload[:16] + bytes(ENC_CHUNK_SIZE + 1))
    with pytest.raises(RuntimeError):  # no further output after a failure
        pd.update(payload[16:])
    with pytest.raises(ValueError):
        plaintext_range_to_chunks(10, 5, len(payload))
    with pytest.raises(ValueError):
        plaintext_range_to_chunks(4, 4, len(payload))  # beyond the 3-byte plaintext


# --- encrypt_to: the archiver's whole-file path ------------------------------------------------

BLOCK = BLOCK_CHUNKS * CHUNK_SIZE


class ShortReads(io.RawIOBase):
    """A file that returns at most ``most`` bytes per call, through read() only."""

    def __init__(self, payload: bytes, most: int):
        self._f, self._most = io.BytesIO(payload), most

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(self._most, n if n >= 0 else self._most))

    readinto = None  # type: ignore[assignment]  # read() only: the other path of _fill


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, BLOCK - 1, BLOCK, BLOCK + 1,
                                  2 * BLOCK, 3 * BLOCK + CHUNK_SIZE + 7])
@pytest.mark.parametrize("source", ["file", "short-reads"])
def test_encrypt_to_is_byte_for_byte_the_streaming_encryption(size, source, ident):
    pt = data(size, 5)
    key, nonce = os.urandom(16), os.urandom(16)
    ref = Encryptor([ident.recipient], _file_key=key, _nonce=nonce)
    expected = b"".join(ref.payload_chunks(pt))
    enc = Encryptor([ident.recipient], _file_key=key, _nonce=nonce)
    src = io.BytesIO(pt) if source == "file" else ShortReads(pt, 100_001)
    out, seen = io.BytesIO(), []
    summary = enc.encrypt_to(src, out.write, progress=seen.append)
    assert out.getvalue() == expected
    assert summary == enc.summary
    assert (summary.plaintext_sha256, summary.payload_sha256) == (
        hashlib.sha256(pt).hexdigest(), hashlib.sha256(expected).hexdigest())
    assert (summary.plaintext_size, summary.payload_size) == (size, len(expected))
    assert seen == sorted(seen) and seen[-1] == len(expected)


# Past INLINE_BYTES of payload the digests and the writes move to helper threads, and the
# two buffer pairs become ``blocks``: the switch after an even and an odd block, and at once.
@pytest.mark.parametrize("inline", [0, BLOCK, 2 * BLOCK, INLINE_BYTES])
def test_encrypt_to_is_the_same_after_moving_to_helper_threads(inline, ident, monkeypatch):
    from storage.age import encryptor

    monkeypatch.setattr(encryptor, "INLINE_BYTES", inline)
    size = INLINE_BYTES + 2 * BLOCK + 7
    pt = data(size, 11)
    key, nonce = os.urandom(16), os.urandom(16)
    expected = b"".join(Encryptor([ident.recipient], _file_key=key, _nonce=nonce).payload_chunks(pt))
    enc = Encryptor([ident.recipient], _file_key=key, _nonce=nonce)
    out, writers = io.BytesIO(), set()

    def write(piece) -> None:
        writers.add(threading.current_thread().name.split("_")[0])
        out.write(piece)

    summary = enc.encrypt_to(ShortReads(pt, 700_001), write)
    assert out.getvalue() == expected
    assert (summary.plaintext_sha256, summary.payload_sha256) == (
        hashlib.sha256(pt).hexdigest(), hashlib.sha256(expected).hexdigest())
    assert writers == {"MainThread", "age-write"}  # the nonce (and the first blocks) inline


def test_encrypt_to_runs_a_small_source_on_the_calling_thread(ident):
    # Most recordings are a few MB: starting three threads (and mapping eight buffers)
    # for them cost more than it saved.
    before = threading.active_count()
    seen = set()

    def write(piece) -> None:
        seen.add((threading.current_thread() is threading.main_thread(), threading.active_count()))

    size = INLINE_BYTES - 2 * ENC_CHUNK_SIZE
    enc = Encryptor([ident.recipient])
    enc.encrypt_to(io.BytesIO(bytes(size)), write)
    assert seen == {(True, before)}




@pytest.mark.parametrize("size", [0, BLOCK, 2 * BLOCK + 3])
def test_encrypt_to_output_is_read_by_age_and_rage(size, ident, keyfile, tmp_path):
    pt = data(size, 6)
    enc = Encryptor([ident.recipient])
    out = io.BytesIO()
    enc.encrypt_to(io.BytesIO(pt), out.write)
    blob = enc.header + out.getvalue()
    assert pyrage.decrypt(blob, [pyrage.x25519.Identity.from_str(ident.secret_string())]) == pt
    (tmp_path / "f.age").write_bytes(blob)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "f.age")) == pt


def test_encrypt_to_memory_is_bounded(ident):
    size = 64 << 20

    class Noise(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:
            n = min(len(buf), self.left, CHUNK_SIZE + 5)
            buf[:n] = b"\x5a" * n
            self.left -= n
            return n

    def rss() -> int:  # the buffers are anonymous maps, which tracemalloc does not see
        return int(re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) << 10

    grew = 0

    def write(piece) -> None:
        nonlocal grew
        grew = max(grew, rss() - before)

    before = rss()
    tracemalloc.start()
    try:
        Encryptor([ident.recipient]).encrypt_to(Noise(), write)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak >> 20} MiB of objects for a {size >> 20} MiB stream"
    assert grew < 24 << 20, f"RSS grew {grew >> 20} MiB for a {size >> 20} MiB stream"


@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.parametrize("where", ["progress", "write"])
def test_encrypt_to_stops_on_an_error_and_leaves_no_thread(where, inline, ident, monkeypatch):
    from storage.age import encryptor

    if not inline:
        monkeypatch.setattr(encryptor, "INLINE_BYTES", BLOCK)

    class Stop(Exception):
        pass

    def fail(*_):
        raise Stop

    before = threading.active_count()
    kw = {"progress": lambda n: fail() if n > 2 * BLOCK else None} if where == "progress" else {}
    write = fail if where == "write" else (lambda piece: None)
    enc = Encryptor([ident.recipient])
    with pytest.raises(Stop):
        enc.encrypt_to(io.BytesIO(data(4 * BLOCK, 7)), write, **kw)
    assert threading.active_count() == before
    with pytest.raises(RuntimeError):
        _ = enc.summary  # spent, not finished
    with pytest.raises(RuntimeError):
        enc.encrypt_to(io.BytesIO(b"x"), write)


def test_encrypt_to_reuses_its_buffers_wiped_and_keeps_few(ident, monkeypatch):
    # Mapping and faulting in fresh buffers cost most of encrypting a one-minute
    # recording: a finished call leaves its first pairs for the next, plaintext wiped,
    # and unmaps the rest. A short recording after a long one in the same buffers is
    # still byte for byte the streaming encryption (no stale byte of the long one).
    from storage.age import encryptor

    monkeypatch.setattr(encryptor, "INLINE_BYTES", 0)  # the long one maps ``blocks`` pairs
    maps = []
    real_mmap = encryptor.mmap.mmap

    def counting(*a, **kw):
        maps.append(a)
        return real_mmap(*a, **kw)

    monkeypatch.setattr(encryptor.mmap, "mmap", counting)
    encryptor._free_pairs.clear()
    for size, seed in ((3 * BLOCK + 5, 1), (CHUNK_SIZE + 3, 2), (BLOCK - 1, 3)):
        pt = data(size, seed)
        key, nonce = os.urandom(16), os.urandom(16)
        expected = b"".join(Encryptor([ident.recipient], _file_key=key, _nonce=nonce).payload_chunks(pt))
        out = io.BytesIO()
        Encryptor([ident.recipient], _file_key=key, _nonce=nonce).encrypt_to(io.BytesIO(pt), out.write, blocks=6)
        assert out.getvalue() == expected
        assert len(encryptor._free_pairs) == encryptor.KEEP_PAIRS
        for plain, _sealed in encryptor._free_pairs:
            assert plain[:] == bytes(len(plain))  # no plaintext left behind
    assert len(maps) == 2 * 6  # the first call's six pairs; the later calls map none
