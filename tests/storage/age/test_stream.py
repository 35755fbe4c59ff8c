"""storage.age.stream: the STREAM payload: size arithmetic, random access, decryption
and what it refuses (truncation, trailing data, reordering, corruption).
"""

from __future__ import annotations

import hashlib
import random
import tracemalloc

import pytest

from agehelpers import chunk, data, decrypt, encrypt
from storage.age import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    ChunkAuthError,
    Decryptor,
    Encryptor,
    HeaderError,
    HeaderMacError,
    Identity,
    NoMatchingIdentity,
    PayloadError,
    TrailingData,
    TruncatedPayload,
    payload_size_for,
    plaintext_range_to_chunks,
    plaintext_size,
)
from storage.errors import IntegrityError


def test_output_does_not_depend_on_how_input_is_split(ident):
    pt = data(3 * CHUNK_SIZE + 77, 5)
    hooks = dict(_file_key=bytes(16), _nonce=bytes(16), _ephemeral_secrets=[bytes(range(32))])
    _, reference, _ = encrypt(pt, ident.recipient, **hooks)
    rng = random.Random(1)
    for _ in range(5):
        cuts = sorted(rng.sample(range(len(pt)), 40))
        enc = Encryptor([ident.recipient], **hooks)
        pieces = [pt[a:b] for a, b in zip([0, *cuts], [*cuts, len(pt)])]
        assert b"".join([enc.update(x) for x in pieces] + [enc.finalize()]) == reference
        dec = Decryptor(enc.header, [ident]).payload_decryptor()
        cuts = sorted(rng.sample(range(len(reference)), 40))
        out = [dec.update(reference[a:b]) for a, b in zip([0, *cuts], [*cuts, len(reference)])]
        assert b"".join(out) + dec.finalize() == pt
        assert dec.plaintext_sha256 == hashlib.sha256(pt).hexdigest()
        assert dec.payload_sha256 == hashlib.sha256(reference).hexdigest()


def test_byte_at_a_time_decrypt_of_small_payload(ident):
    pt = data(100, 2)
    header, payload, _ = encrypt(pt, ident.recipient)
    dec = Decryptor(header, [ident]).payload_decryptor()
    assert b"".join(dec.update(payload[i:i + 1]) for i in range(len(payload))) + dec.finalize() == pt


def test_decrypt_stream_from_file_object(tmp_path, ident):
    pt = data(5 * CHUNK_SIZE + 1, 8)
    header, payload, _ = encrypt(pt, ident.recipient)
    (tmp_path / "p").write_bytes(payload)
    with open(tmp_path / "p", "rb") as f:
        assert b"".join(Decryptor(header, [ident]).decrypt_stream(f)) == pt


# --- random access -------------------------------------------------------------------------

def test_chunk_math():
    span = plaintext_range_to_chunks(70_000, 140_000, payload_size_for(200_000))
    assert span == (1, 2, 16 + ENC_CHUNK_SIZE, 16 + 3 * ENC_CHUNK_SIZE, False)
    span = plaintext_range_to_chunks(0, 10**9, payload_size_for(CHUNK_SIZE))
    assert span == (0, 0, 16, 16 + ENC_CHUNK_SIZE, True)
    assert plaintext_range_to_chunks(0, 0, 32) == (0, 0, 16, 32, True)
    for impossible in (0, 31, 16 + ENC_CHUNK_SIZE + 16, 16 + ENC_CHUNK_SIZE + 5):
        with pytest.raises(PayloadError):
            plaintext_size(impossible)
    for size in range(0, 3 * CHUNK_SIZE + 2, 4099):
        assert plaintext_size(payload_size_for(size)) == size


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE,
                                  3 * CHUNK_SIZE + 5])
def test_every_boundary_range_matches_plaintext_slice(size, ident):
    pt = data(size, size)
    header, payload, _ = encrypt(pt, ident.recipient)
    dec = Decryptor(header, [ident])
    reads = []

    def read_range(a, b):
        reads.append((a, b))
        return payload[a:b]

    marks = {0, 1, size - 1, size, size + 5}
    for k in range(1, 4):
        marks |= {k * CHUNK_SIZE - 1, k * CHUNK_SIZE, k * CHUNK_SIZE + 1}
    marks = sorted(m for m in marks if 0 <= m <= size + 5)
    for start in (m for m in marks if m <= size):
        for end in (m for m in marks if m >= start):
            reads.clear()
            assert dec.decrypt_range(read_range, start, end, len(payload)) == pt[start:end], (start, end)
            span = plaintext_range_to_chunks(start, end, len(payload))
            fetched = sum(b - a for a, b in reads)
            assert len(reads) <= 2 and fetched <= 16 + (span.last_chunk - span.first_chunk + 1) * ENC_CHUNK_SIZE


def test_random_access_authenticates_the_final_flag(ident):
    pt = data(3 * CHUNK_SIZE + 5, 4)
    header, payload, _ = encrypt(pt, ident.recipient)
    dec, nonce = Decryptor(header, [ident]), payload[:16]
    c1 = payload[16 + ENC_CHUNK_SIZE:16 + 2 * ENC_CHUNK_SIZE]
    assert dec.decrypt_chunks(c1, 1, False, nonce=nonce) == pt[CHUNK_SIZE:2 * CHUNK_SIZE]
    with pytest.raises(TruncatedPayload):  # a non-final chunk presented as the object's end
        dec.decrypt_chunks(c1, 1, True, nonce=nonce)
    with pytest.raises(ChunkAuthError):  # right bytes, wrong index
        dec.decrypt_chunks(c1, 2, False, nonce=nonce)
    tail = payload[16 + 3 * ENC_CHUNK_SIZE:]
    assert dec.decrypt_chunks(tail, 3, True, nonce=nonce) == pt[3 * CHUNK_SIZE:]
    with pytest.raises(TruncatedPayload):
        dec.decrypt_chunks(tail, 3, False, nonce=nonce)
    # Object cut at a chunk boundary: its size looks valid, its end does not verify.
    cut = payload[:16 + 2 * ENC_CHUNK_SIZE]
    assert plaintext_size(len(cut)) == 2 * CHUNK_SIZE
    with pytest.raises(TruncatedPayload):
        dec.decrypt_range(lambda a, b: cut[a:b], 2 * CHUNK_SIZE - 10, 2 * CHUNK_SIZE, len(cut))
    assert dec.decrypt_range(lambda a, b: cut[a:b], 0, 10, len(cut)) == pt[:10]
    with pytest.raises(TruncatedPayload):  # the store returned less than asked
        dec.decrypt_range(lambda a, b: payload[a:b - 1], 0, 10, len(payload))


# --- failures -------------------------------------------------------------------------------

def test_dropped_final_chunk_is_truncation(sample, ident):
    _, header, payload = sample
    with pytest.raises(TruncatedPayload, match="chunk 2 is not final"):
        decrypt(header, payload[:16 + 3 * ENC_CHUNK_SIZE], [ident])


def test_cut_mid_chunk(sample, ident):
    _, header, payload = sample
    with pytest.raises(ChunkAuthError, match="chunk 3 .*cut mid-chunk"):
        decrypt(header, payload[:-3], [ident])
    with pytest.raises(ChunkAuthError, match="chunk 2 "):
        decrypt(header, payload[:16 + 2 * ENC_CHUNK_SIZE + 1000], [ident])
    for short in (payload[:10], payload[:16], payload[:16 + 3 * ENC_CHUNK_SIZE + 7]):
        with pytest.raises(TruncatedPayload):
            decrypt(header, short, [ident])


def test_reordered_chunks(sample, ident):
    _, header, payload = sample
    swapped = payload[:16] + chunk(payload, 1) + chunk(payload, 0) + payload[16 + 2 * ENC_CHUNK_SIZE:]
    with pytest.raises(ChunkAuthError, match="chunk 0 .*reordered"):
        decrypt(header, swapped, [ident])


def test_trailing_data(sample, ident):
    _, header, payload = sample
    with pytest.raises(IntegrityError):
        decrypt(header, payload + b"x", [ident])
    pt = data(2 * CHUNK_SIZE, 12)  # the final chunk is full: the flag tells
    h2, p2, _ = encrypt(pt, ident.recipient)
    for extra in (b"x", p2[16:]):
        with pytest.raises(TrailingData, match="chunk 1 is the final chunk"):
            decrypt(h2, p2 + extra, [ident])


def test_wrong_key_and_foreign_payload(sample, ident):
    pt, header, payload = sample
    with pytest.raises(NoMatchingIdentity, match="none of the 1 identities"):
        decrypt(header, payload, [Identity.generate()])
    other_header, other_payload, _ = encrypt(pt, ident.recipient)
    with pytest.raises(ChunkAuthError, match="chunk 0"):
        decrypt(other_header, payload, [ident])


def test_flipped_bits(sample, ident):
    _, header, payload = sample
    mac_at = header.rindex(b"--- ") + 4
    tampered = bytearray(header)
    tampered[mac_at] = ord("A") if header[mac_at] != ord("A") else ord("B")
    with pytest.raises(HeaderMacError, match="header MAC mismatch"):
        Decryptor(bytes(tampered), [ident])
    tampered = bytearray(header)
    tampered[mac_at + 5] ^= 0x01  # may leave the base64 alphabet: malformed, still refused
    with pytest.raises(HeaderError):
        Decryptor(bytes(tampered), [ident])
    for pos in (0, 15, 16, 100, 16 + ENC_CHUNK_SIZE + 5, len(payload) - 1):
        flipped = bytearray(payload)
        flipped[pos] ^= 0x10
        with pytest.raises(ChunkAuthError):
            decrypt(header, bytes(flipped), [ident])


# --- bounded memory ---------------------------------------------------------------------------

def test_streaming_memory_is_bounded(ident):
    piece = data(CHUNK_SIZE + 123, 1)  # odd size: chunk boundaries fall inside pieces
    count = (64 << 20) // len(piece)

    def source():
        for _ in range(count):
            yield piece

    tracemalloc.start()
    try:
        enc = Encryptor([ident.recipient])
        dec = Decryptor(enc.header, [ident])
        digest, total = hashlib.sha256(), 0
        for pt in dec.decrypt_stream(enc.payload_chunks(source())):
            digest.update(pt)
            total += len(pt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == count * len(piece)
    assert enc.summary.plaintext_sha256 == digest.hexdigest()
    assert peak < 1 << 20, f"peak {peak} bytes for a {total >> 20} MiB stream"
