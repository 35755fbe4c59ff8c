"""S3Store's failures: each lands in the storage.errors kind a caller can act on."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import socket
import time

import pytest
from botocore.stub import Stubber

from storage.errors import (
    IntegrityError,
    NotFound,
    PermanentError,
    RetentionError,
    RetryableError,
)
from storage.s3store import S3Settings, S3Store
from storage.s3upload import part_checksum

MiB = 1 << 20
DATA = b"x" * 1000
SHA = hashlib.sha256(DATA).hexdigest()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_is_retryable_and_fast():
    settings = S3Settings(endpoint_url=f"http://127.0.0.1:{closed_port()}", region="us-east-1",
                          access_key_id="AK", secret_access_key="SK", max_attempts=2,
                          connect_timeout=1, read_timeout=2)
    t0 = time.monotonic()
    with S3Store(settings, "payload") as store:
        for call in (lambda: store.put("k", DATA, sha256=SHA), lambda: store.get("k"),
                     lambda: store.head("k"), lambda: store.delete("k"), lambda: list(store.list("")),
                     store.check_setup):
            with pytest.raises(RetryableError, match=settings.endpoint_url):
                call()
    assert time.monotonic() - t0 < 10


@pytest.mark.s3
@pytest.mark.parametrize("field", ["secret_access_key", "access_key_id"])
def test_bad_credentials_are_permanent_and_name_the_endpoint(s3_settings, make_s3_store, field):
    bucket = make_s3_store().bucket
    wrong = dataclasses.replace(s3_settings, **{field: "WRONG" + "0" * 16})
    with S3Store(wrong, bucket) as store:
        for call in (lambda: store.put("k", DATA, sha256=SHA), lambda: store.get("k"),
                     lambda: list(store.list("")), store.check_setup):
            with pytest.raises(PermanentError, match=s3_settings.endpoint_url) as e:
                call()
            assert not isinstance(e.value, RetentionError)


def test_settings_keep_secrets_out_of_repr():
    text = repr(S3Settings(endpoint_url="http://s3", access_key_id="AKIDSECRET", secret_access_key="TOPSECRET"))
    assert "TOPSECRET" not in text and "AKIDSECRET" not in text and "http://s3" in text


def _flip_a_byte(data) -> bytes:
    data = bytearray(data.read() if hasattr(data, "read") else data)
    data[len(data) // 2] ^= 0x01
    return bytes(data)


def _corrupt_before_sign(request, **kwargs):
    # After our checksum header was set, before SigV4 hashes the payload: only the
    # x-amz-checksum-sha256 check can notice (the case of HTTPS, where botocore
    # sends an unsigned payload).
    request.data = _flip_a_byte(request.data)


def _corrupt_before_send(request, **kwargs):
    # On the wire, after signing: both the checksum and the signed payload hash differ.
    request.body = _flip_a_byte(request.body)


@pytest.mark.s3
@pytest.mark.parametrize("stage,hook,codes", [
    ("before-sign", _corrupt_before_sign, "BadDigest"),
    ("before-send", _corrupt_before_send, "BadDigest|XAmzContentSHA256Mismatch"),
], ids=["checksum-header", "on-the-wire"])
@pytest.mark.parametrize("op,size", [("PutObject", 1000), ("UploadPart", 17 * MiB)],
                         ids=["single", "multipart"])
def test_server_rejects_bytes_changed_in_transit(s3_settings, make_s3_store, stage, hook, codes, op, size):
    bucket = make_s3_store().bucket
    client = s3_settings.client()
    client.meta.events.register(f"{stage}.s3.{op}", hook)
    data = bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    with S3Store(lambda: client, bucket) as store:
        with pytest.raises(IntegrityError, match=codes):
            store.put("k", data, sha256=hashlib.sha256(data).hexdigest())
        with pytest.raises(NotFound):
            store.head("k")
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- the mapping table, without a server ----------------------------------------------------

@pytest.fixture
def stubbed():
    settings = S3Settings(endpoint_url="http://127.0.0.1:9", region="us-east-1",
                          access_key_id="AK", secret_access_key="SK", max_attempts=1)
    with S3Store(settings, "payload") as store, Stubber(store.client) as stub:
        yield store, stub


@pytest.mark.parametrize("code,status,kind", [
    ("NoSuchKey", 404, NotFound),
    ("NoSuchBucket", 404, PermanentError),
    ("SlowDown", 503, RetryableError),
    ("ServiceUnavailable", 503, RetryableError),
    ("InternalError", 500, RetryableError),
    ("RequestTimeout", 400, RetryableError),
    ("TooManyRequests", 429, RetryableError),
    ("AccessDenied", 403, PermanentError),
    ("InvalidAccessKeyId", 403, PermanentError),
    ("SignatureDoesNotMatch", 403, PermanentError),
    ("InvalidRequest", 400, PermanentError),
])
def test_get_error_kinds(stubbed, code, status, kind):
    store, stub = stubbed
    stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
    with pytest.raises(kind) as e:
        store.get("k")
    assert type(e.value) is kind  # AccessDenied on a read is not a retention refusal
    assert "payload" in str(e.value) and "http://127.0.0.1:9" in str(e.value)


def test_access_denied_on_delete_is_a_retention_refusal(stubbed):
    store, stub = stubbed
    stub.add_client_error("delete_object", service_error_code="AccessDenied", http_status_code=403,
                          service_message="forbidden by object lock")
    with pytest.raises(RetentionError, match="forbidden by object lock"):
        store.delete("k", "v1")


def test_put_bad_digest_is_an_integrity_error(stubbed):
    store, stub = stubbed
    stub.add_client_error("put_object", service_error_code="BadDigest", http_status_code=400)
    with pytest.raises(IntegrityError):
        store.put("k", DATA, sha256=SHA)


def test_a_failed_part_aborts_the_upload(stubbed):
    store, stub = stubbed
    store.max_concurrency = 1  # parts in order, so the stub sees a fixed sequence
    stub.add_response("create_multipart_upload", {"UploadId": "u1"})
    stub.add_response("upload_part", {"ETag": '"e1"'})
    stub.add_client_error("upload_part", service_error_code="SlowDown", http_status_code=503)
    stub.add_response("abort_multipart_upload", {})
    data = b"\x01" * (17 * MiB)
    with pytest.raises(RetryableError):
        store.put("k", data, sha256=hashlib.sha256(data).hexdigest())
    stub.assert_no_pending_responses()


# -- what goes on the wire ------------------------------------------------------------------

class Readable:
    """A source with ``readinto`` (like an unbuffered file) that counts its reads."""

    def __init__(self, data: bytes):
        self.data, self.pos = memoryview(data), 0

    def readinto(self, buf) -> int:
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def test_a_put_of_more_than_one_part_refuses_a_tenth_tag_before_sending_anything(stubbed):
    """Its SHA-256 becomes a tag once complete: ten tags of the caller's would leave a
    completed object the tagging then fails on."""
    store, stub = stubbed  # no responses stubbed: any request fails the test
    data = b"\x01" * (17 * MiB)
    ten = {f"t{i}": "x" for i in range(10)}
    for tags in (ten, {"sha256": "x"}):
        with pytest.raises(ValueError, match="at most 9 tags, none named 'sha256'"):
            store.put("k", data, sha256=hashlib.sha256(data).hexdigest(), tags=tags)
    stub.assert_no_pending_responses()


def test_parts_go_in_reused_buffers_with_crc32c_checksums_and_the_sha256_is_tagged(stubbed):
    """``put`` of a source larger than a part sends what a streamed upload sends
    (storage/s3upload.py): CRC32C part checksums, and the SHA-256 as a tag once complete."""
    store, stub = stubbed
    store.max_concurrency = 2
    bodies: dict[int, tuple[object, str, str]] = {}  # holding each body keeps its id unique

    def seen(params, **_):  # in the part's worker thread, when it is sent
        bodies[params["PartNumber"]] = (params["Body"], hashlib.sha256(params["Body"]).hexdigest(),
                                        params["ChecksumCRC32C"])

    store.client.meta.events.register("provide-client-params.s3.UploadPart", seen)
    data = os.urandom(5 * 8 * MiB + 123)
    parts = [data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    digest = hashlib.sha256(data).hexdigest()
    stub.add_response("create_multipart_upload", {"UploadId": "u1"})
    for i in range(len(parts)):
        stub.add_response("upload_part", {"ETag": f'"e{i}"'})
    stub.add_response("complete_multipart_upload", {"ETag": '"x-6"', "VersionId": "v1"})
    stub.add_response("put_object_tagging", {}, {"Bucket": "payload", "Key": "k",
                                                 "Tagging": {"TagSet": [{"Key": "sha256", "Value": digest}]}})
    r = store.put("k", Readable(data), size=len(data), sha256=digest)
    assert r.size == len(data) and r.sha256 == digest
    assert [bodies[n][1] for n in sorted(bodies)] == [hashlib.sha256(p).hexdigest() for p in parts]
    assert [bodies[n][2] for n in sorted(bodies)] == [part_checksum(p) for p in parts]
    # 6 parts, never more than 2 full-part buffers: the others were reused
    assert len({id(b) for b, _, _ in bodies.values() if len(b) == 8 * MiB}) <= 2
    stub.assert_no_pending_responses()


@pytest.mark.s3
def test_checksummed_bodies_go_unsigned_and_the_service_still_checks_them(make_s3_store):
    import base64

    store = make_s3_store(lock=False)
    sent: list[tuple[str, bytes | None, bytes | None]] = []

    def capture(request, event_name, **_):
        sent.append((event_name.rsplit(".", 1)[-1], request.headers.get("X-Amz-Content-SHA256"),
                     request.headers.get("x-amz-checksum-sha256") or request.headers.get("x-amz-checksum-crc32c")))

    store.client.meta.events.register("before-send.s3", capture)
    big = os.urandom(17 * MiB)
    store.put("big", big, sha256=hashlib.sha256(big).hexdigest())
    # A single PUT goes past boto3's pipeline (DirectPut), through the same HTTP session.
    http, direct = store._direct._http, []
    send = http.send
    http.send = lambda request: direct.append(request) or send(request)
    try:
        store.put("small", DATA, sha256=SHA)
    finally:
        del http.send
    by_op = {}
    for op, payload_hash, checksum in sent:
        by_op.setdefault(op, set()).add((payload_hash, checksum is not None))
    # bodies that carry their checksum (a part's CRC32C, a single PUT's SHA-256) are not
    # hashed a second time for the signature...
    assert by_op["UploadPart"] == {(b"UNSIGNED-PAYLOAD", True)}
    assert "PutObject" not in by_op
    [small] = direct
    header = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in small.headers.items()}
    assert small.method == "PUT" and small.url.endswith(f"/{store.bucket}/small")
    assert header["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-amz-checksum-sha256" in header["authorization"].split("SignedHeaders=")[1]
    # ...other bodies keep a signed payload hash
    ((complete, has_checksum),) = by_op["CompleteMultipartUpload"]
    assert not has_checksum and re.fullmatch(rb"[0-9a-f]{64}", complete)
    assert store.get("big") == big and store.head("big").sha256 == hashlib.sha256(big).hexdigest()
    # and the service still checks every byte against the (signed) checksum header
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    for body in (DATA, big[:9 * MiB]):
        with pytest.raises(IntegrityError):
            with store._errors("put", "forged"):
                store.client.put_object(Bucket=store.bucket, Key="forged", Body=body,
                                        ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong)
    with pytest.raises(NotFound):
        store.head("forged")


@pytest.mark.s3
def test_a_direct_put_the_service_refuses_is_sent_again_through_boto3(make_s3_store):
    """DirectPut handles only a 200: a refusal goes to boto3's put_object, whose answer
    is mapped as for every request (BadDigest: an integrity error, nothing stored)."""
    from storage.s3client import REQUESTS

    store = make_s3_store(lock=False)
    assert store._direct is not None
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    before = REQUESTS.snapshot().get("PutObject", 0)
    with pytest.raises(IntegrityError, match="BadDigest"):
        store.put("k", DATA, sha256=wrong, hashed=True)  # the caller vouches for a wrong digest
    assert REQUESTS.snapshot().get("PutObject", 0) - before == 2  # direct, then boto3
    with pytest.raises(NotFound):
        store.head("k")


@pytest.mark.s3
def test_a_direct_put_stores_what_a_boto3_put_stores(s3_settings, make_s3_store):
    import datetime

    from storage.blobstore import Retention

    direct = make_s3_store()
    by_boto3 = S3Store(lambda: s3_settings.client(), direct.bucket)
    assert direct._direct is not None and by_boto3._direct is None
    until = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=2)
    tags = {"retention": "calls", "consent": "granted", "jurisdiction": "ZA"}
    results = {}
    for name, store in (("direct", direct), ("boto3", by_boto3)):
        results[name] = store.put(name, DATA, sha256=SHA, retention=Retention("GOVERNANCE", until), tags=tags,
                                  hashed=True)
    seen = {}
    for name in results:
        head = direct.client.head_object(Bucket=direct.bucket, Key=name, ChecksumMode="ENABLED")
        tagging = direct.client.get_object_tagging(Bucket=direct.bucket, Key=name)["TagSet"]
        seen[name] = (head["ContentLength"], head["Metadata"], head["ObjectLockMode"],
                      head["ObjectLockRetainUntilDate"], head["ChecksumSHA256"],
                      sorted((t["Key"], t["Value"]) for t in tagging), direct.get(name))
        assert results[name].version_id == head["VersionId"] and results[name].checksum == SHA
    assert seen["direct"] == seen["boto3"]
    assert seen["direct"][3] == until and seen["direct"][6] == DATA
    by_boto3.close()
