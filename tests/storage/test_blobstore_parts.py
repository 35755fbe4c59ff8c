"""Precomputed part digests (``BlobStore.put(parts=...)``): the same cases on every
store, and S3Store hashing no payload byte when it is given them.
"""

from __future__ import annotations

import hashlib
import io

import pytest

from blobhelpers import DATA, GeneratedFile, MiB, assert_no_leftovers, sha
from storage.blobstore import PartDigests, PartHasher
from storage.errors import IntegrityError, NotFound


# --- precomputed part digests (put(parts=...)) ---------------------------------------------

def _parts_of(data: bytes, part_size: int = 8 * MiB) -> PartDigests:
    hasher = PartHasher(part_size)
    hasher.update(data)
    return hasher.digests()


BIG = b"".join(GeneratedFile._generate(20 * MiB + 12_345, 7, 1 << 16))


@pytest.mark.parametrize("data", [b"", DATA, BIG], ids=["empty", "single", "multipart"])
def test_put_with_part_digests_round_trips(store, data):
    parts = _parts_of(data)
    assert len(parts.sha256) == (3 if data is BIG else 1)
    r = store.put("p/ok", io.BytesIO(data), size=len(data), sha256=sha(data), parts=parts)
    assert (r.size, r.sha256) == (len(data), sha(data))
    assert (store.head("p/ok").size, store.head("p/ok").sha256) == (len(data), sha(data))
    assert store.get("p/ok") == data


@pytest.mark.parametrize("offset", [100, 8 * MiB + 100, 20 * MiB + 1], ids=["part1", "part2", "last"])
def test_bytes_changed_after_their_part_digests_were_taken_are_refused(store, offset):
    # The archiver's case: digests taken while encrypting, then the work file changed on
    # disk. On S3 nothing is hashed locally: the service refuses the part (BadDigest).
    parts = _parts_of(BIG)
    changed = bytearray(BIG)
    changed[offset] ^= 0x01
    with pytest.raises(IntegrityError):
        store.put("p/bad", io.BytesIO(changed), size=len(BIG), sha256=sha(BIG), parts=parts)
    with pytest.raises(NotFound):
        store.head("p/bad")
    assert_no_leftovers(store)


def test_changed_single_part_object_is_refused(store):
    changed = bytearray(DATA)
    changed[5] ^= 0x80
    with pytest.raises(IntegrityError):
        store.put("p/bad1", bytes(changed), size=len(DATA), sha256=sha(DATA), parts=_parts_of(DATA))
    with pytest.raises(NotFound):
        store.head("p/bad1")
    assert_no_leftovers(store)


def test_a_source_with_more_or_fewer_parts_than_digests_is_refused(store):
    parts = _parts_of(BIG)  # three parts
    with pytest.raises(IntegrityError):  # size unknown: found out while reading
        store.put("p/short", io.BytesIO(BIG[:17 * MiB]), sha256=sha(BIG), parts=parts)
    with pytest.raises(IntegrityError):
        store.put("p/long", io.BytesIO(BIG + bytes(8 * MiB)), sha256=sha(BIG), parts=parts)
    with pytest.raises(NotFound):
        store.head("p/short")
    with pytest.raises(NotFound):
        store.head("p/long")
    assert_no_leftovers(store)


def test_part_digests_that_cannot_fit_are_the_callers_mistake(store):
    with pytest.raises(ValueError):  # three digests cannot describe 100,003 bytes
        store.put("p/v", DATA, size=len(DATA), sha256=sha(DATA), parts=_parts_of(BIG))
    with pytest.raises(ValueError):  # one part is the whole object: same digest
        store.put("p/v", DATA, size=len(DATA), sha256=sha(DATA), parts=PartDigests(8 * MiB, ("0" * 64,)))
    with pytest.raises(ValueError):
        PartDigests(MiB, (sha(DATA),))  # below the smallest part size
    with pytest.raises(ValueError):
        PartDigests(8 * MiB, ())
    with pytest.raises(NotFound):
        store.head("p/v")


class _CountingSha256:
    """Stands in for ``hashlib.sha256``: counts the bytes hashed, anywhere in the process."""

    def __init__(self, real):
        self.real, self.hashed = real, 0

    def __call__(self, data=b"", **kw):
        outer = self
        h = self.real(data, **kw)
        self.hashed += len(memoryview(data).cast("B")) if data else 0

        class Counted:
            def update(self, more):
                outer.hashed += len(memoryview(more).cast("B"))
                h.update(more)

            def __getattr__(self, name):
                return getattr(h, name)

        return Counted()


def test_s3_put_with_part_digests_hashes_no_payload_byte(make_s3_store, monkeypatch):
    store = make_s3_store()
    parts, digest = _parts_of(BIG), sha(BIG)
    counting = _CountingSha256(hashlib.sha256)
    monkeypatch.setattr(hashlib, "sha256", counting)
    store.put("p/nohash", io.BytesIO(BIG), size=len(BIG), sha256=digest, parts=parts)
    with_parts = counting.hashed
    store.put("p/hash", io.BytesIO(BIG), size=len(BIG), sha256=digest)
    without = counting.hashed - with_parts
    monkeypatch.undo()
    assert with_parts < 64 * 1024, f"{with_parts} bytes hashed with the digests given"
    assert without >= 2 * len(BIG)  # the whole and each part: what the digests spare
    assert store.get("p/nohash") == BIG
