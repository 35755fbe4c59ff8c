"""Streamed uploads (``BlobStore.open_upload``) on every store: LocalStore and S3Store (RGW)."""

from __future__ import annotations

import os

import pytest
from blobhelpers import MiB, assert_no_leftovers, later, sha

from storage.blobstore import Retention
from storage.errors import IntegrityError, NotFound

PART = 8 * MiB


def stream(store, key, data, *, piece=MiB - 7, tokens=None, **kw):
    up = store.open_upload(key, size=len(data), on_create=None if tokens is None else tokens.append, **kw)
    for i in range(0, len(data), piece):
        up.write(memoryview(data)[i:i + piece])
    sealed = up.seal(size=len(data), sha256=sha(data))
    return up, sealed


@pytest.mark.parametrize("size", [0, 1000, PART, PART + 1, 2 * PART, 2 * PART + 12_345])
def test_streamed_upload_round_trip(store, size):
    data = os.urandom(size)
    tags = {"retention": "default", "consent": "granted"}
    up, _ = stream(store, "rec/s1", data, tags=tags)
    r = up.complete()
    up.abort()  # after complete: nothing to drop, nothing dropped
    assert (r.size, r.sha256) == (size, sha(data)) and r.version_id
    info = store.head("rec/s1")
    assert (info.size, info.sha256, info.version_id) == (size, sha(data), r.version_id)
    assert info.tags == tags  # the digest tag is the store's, not the caller's
    assert store.get("rec/s1", r.version_id) == data
    assert_no_leftovers(store)


def test_streamed_upload_with_retention_is_locked(store):
    data = os.urandom(PART + 5)
    until = later(days=1)
    up, _ = stream(store, "rec/locked", data, retention=Retention("GOVERNANCE", until))
    up.complete()
    info = store.head("rec/locked")
    assert info.retention == Retention("GOVERNANCE", until) and info.sha256 == sha(data)


def test_a_wrong_count_or_digest_is_refused_and_nothing_is_visible(store):
    data = os.urandom(PART + 5)
    up = store.open_upload("rec/bad", size=len(data))
    up.write(data)
    with pytest.raises(IntegrityError):
        up.seal(size=len(data) + 1, sha256=sha(data))
    assert up.abort()
    assert list(store.list("rec/")) == []
    assert_no_leftovers(store)


def test_abort_mid_way_leaves_nothing(store):
    up = store.open_upload("rec/half", size=40 * MiB)
    up.write(os.urandom(20 * MiB))  # parts already sent on S3
    assert up.abort()
    assert list(store.list("rec/")) == []
    assert_no_leftovers(store)


@pytest.mark.s3
def test_s3_upload_resumed_from_its_token_in_another_store_object(make_s3_store, s3_settings):
    from storage.s3store import S3Store

    store = make_s3_store()
    data = os.urandom(2 * PART + 99)
    tokens: list = []
    _, sealed = stream(store, "rec/r", data, tokens=tokens, tags={"a": "b"})
    assert [t["upload_id"] for t in tokens] == [sealed["upload_id"]]  # told before the first part
    with S3Store(s3_settings, store.bucket) as other:  # another process, after a crash
        r = other.resume_upload("rec/r", sealed)
        again = other.resume_upload("rec/r", sealed)  # idempotent: the same version
    assert again.version_id == r.version_id
    assert store.head("rec/r").sha256 == sha(data) and store.get("rec/r") == data
    assert store.versions("rec/r") == [r.version_id]


@pytest.mark.s3
def test_s3_streamed_upload_may_not_use_the_digest_tag(make_s3_store):
    with pytest.raises(ValueError, match="sha256"):
        make_s3_store(create=False).open_upload("rec/t", tags={"sha256": "0" * 64})


@pytest.mark.s3
def test_s3_abort_upload_by_token_then_resume_is_not_found(make_s3_store):
    store = make_s3_store()
    data = os.urandom(PART + 1)
    tokens: list = []
    _, sealed = stream(store, "rec/x", data, tokens=tokens)
    store.abort_upload("rec/x", tokens[0])
    store.abort_upload("rec/x", tokens[0])  # already gone: not an error
    with pytest.raises(NotFound):
        store.resume_upload("rec/x", sealed)
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert list(store.list("rec/")) == []


def test_local_store_has_nothing_to_resume(tmp_path):
    from storage.localstore import LocalStore

    store = LocalStore.create(tmp_path / "b")
    up, sealed = stream(store, "rec/l", os.urandom(PART + 1))
    assert sealed is None
    with pytest.raises(NotFound):
        store.resume_upload("rec/l", {})
    assert up.abort()
    assert_no_leftovers(store)


def _flip_a_byte_of_part_2(request, **kwargs):
    # After the part's CRC32C header was set, before signing: only the service's check of
    # the bytes against x-amz-checksum-crc32c can notice.
    if b"partNumber=2" in request.url.encode():
        data = bytearray(request.data)
        data[len(data) // 2] ^= 0x01
        request.data = bytes(data)


@pytest.mark.s3
def test_s3_part_with_a_changed_byte_is_refused_by_its_crc32c(make_s3_store):
    store = make_s3_store()
    sent: list = []
    store.client.meta.events.register("before-send.s3.UploadPart", lambda request, **_: sent.append(
        (request.headers.get("x-amz-checksum-crc32c"), request.headers.get("X-Amz-Content-SHA256"))))
    store.client.meta.events.register("before-sign.s3.UploadPart", _flip_a_byte_of_part_2)
    data = os.urandom(3 * PART)
    up = store.open_upload("rec/bad", size=len(data))
    with pytest.raises(IntegrityError, match="BadDigest"):
        for i in range(0, len(data), MiB):
            up.write(data[i:i + MiB])
        up.seal(size=len(data), sha256=sha(data))
    assert up.abort()
    # a CRC32C header instead of a second SHA-256 of the body for the signature
    assert sent and all(crc is not None and payload == b"UNSIGNED-PAYLOAD" for crc, payload in sent)
    assert list(store.list("rec/")) == []
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


@pytest.mark.s3
def test_s3_upload_sealed_with_sha256_part_digests_still_resumes(make_s3_store):
    """A token written before part CRC32Cs (its parts carry SHA-256s) completes, and a
    completed one is found again by its composite."""
    import base64
    import hashlib

    store = make_s3_store()
    c, data = store.client, os.urandom(PART + 1000)
    uid = c.create_multipart_upload(Bucket=store.bucket, Key="rec/old", ChecksumAlgorithm="SHA256",
                                    Tagging="a=b")["UploadId"]
    parts = []
    for n, i in enumerate(range(0, len(data), PART), 1):
        digest = base64.b64encode(hashlib.sha256(data[i:i + PART]).digest()).decode()
        r = c.upload_part(Bucket=store.bucket, Key="rec/old", UploadId=uid, PartNumber=n, Body=data[i:i + PART],
                          ChecksumAlgorithm="SHA256", ChecksumSHA256=digest)
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": digest})
    token = {"upload_id": uid, "parts": parts, "size": len(data), "sha256": sha(data), "tags": {"a": "b"}}
    r = store.resume_upload("rec/old", token)
    assert r.checksum is not None and r.checksum.endswith("-2")
    assert store.resume_upload("rec/old", token).version_id == r.version_id
    assert store.head("rec/old").sha256 == sha(data) and store.get("rec/old") == data


@pytest.mark.s3
def test_s3_resume_refuses_another_version_after_completion(make_s3_store):
    """Part CRC32Cs that do not make the stored version's checksum are not taken as ours."""
    store = make_s3_store()
    data = os.urandom(2 * PART + 5)
    _, sealed = stream(store, "rec/c", data)
    store.resume_upload("rec/c", sealed)
    other = dict(sealed, parts=[dict(p) for p in sealed["parts"]])
    other["parts"][0]["ChecksumCRC32C"] = "AAAAAA=="  # not what the stored version is made of
    # RGW answers a repeated completion with the stored version's checksum: refused
    with pytest.raises((IntegrityError, NotFound), match="checksum|another"):
        store.resume_upload("rec/c", other)


def test_stored_checksum_reads_full_object_and_composite_answers():
    """Parsing only: the two shapes a service answers for CRC32C parts."""
    import base64

    import crc32c

    from storage.s3upload import part_checksum, stored_checksum

    data = os.urandom(2 * MiB + 5)
    size = MiB
    parts = [{"PartNumber": n + 1, "ChecksumCRC32C": part_checksum(data[i:i + size])}
             for n, i in enumerate(range(0, len(data), size))]
    token = {"parts": parts, "part_size": size, "size": len(data)}
    whole = base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
    assert stored_checksum({"ChecksumCRC32C": whole, "ChecksumType": "FULL_OBJECT"}, token) == (
        f"{crc32c.crc32c(data):08x}",) * 2
    joined = b"".join(base64.b64decode(p["ChecksumCRC32C"]) for p in parts)
    composite = base64.b64encode(crc32c.crc32c(joined).to_bytes(4, "big")).decode() + "-3"
    got, want = stored_checksum({"ChecksumCRC32C": composite, "ChecksumType": "COMPOSITE"}, token)
    assert got == want == f"{crc32c.crc32c(joined):08x}-3"
    got, want = stored_checksum({"ChecksumCRC32C": "AAAAAA=="}, token)
    assert got != want
    assert stored_checksum({}, token) is None
