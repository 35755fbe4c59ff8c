"""``BlobStore`` on any S3 service (AWS S3, MinIO, Ceph RGW, Wasabi, R2, B2).

Only documented S3 behaviour is used: flexible checksums (a single PUT sends the
caller's precomputed ``ChecksumSHA256``, so the server verifies every byte it
stores), Object Lock per object, tags, multipart with per-part CRC32C
(storage/s3upload.py, for ``put`` of a larger source and for a streamed upload
alike), versions. The whole-object SHA-256 is kept as user metadata (``sha256``) on
a single PUT, and as a tag of the same name on a multipart object, whose stored
checksum is a checksum of part checksums.

Bucket set-up, storage roles (bucket policies) and the error kinds are in docs/storage.md.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Self

import botocore.exceptions as bce

from storage import s3upload
from storage.blobstore import (
    MAX_TAGS,
    MIN_PART_SIZE,
    MiB,
    ObjectInfo,
    PutResult,
    Retention,
    deletion_refusal,
    part_size_for,
    read_full,
    retention_change_refusal,
    validate_key,
    validate_new_retention,
    validate_prefix,
    validate_range,
    validate_sha256,
    validate_tags,
)
from storage.errors import IntegrityError, NotFound, PermanentError, RetentionError
from storage.s3client import (
    NO_LOCK_CONFIG,
    BodyStream,
    DirectPut,
    EmptyStream,
    S3Settings,
    answered_checksum,
    error_code,
    http_status,
    s3_errors,
    sign_checksummed_bodies_by_checksum,
)
from storage.s3upload import SHA256_TAG, S3Upload

__all__ = ["S3Settings", "S3Store"]


class S3Store:
    """``BlobStore`` on one S3 bucket.

    ``client`` is ``S3Settings`` or a factory returning a boto3 S3 client; the
    store owns (and closes) that client. ``object_lock`` says which bucket this
    is: True for the payload bucket (Object Lock required), False for the
    header bucket (must allow deletion). Uploads larger than ``part_size``
    go multipart with at most ``max_concurrency`` parts in flight, so memory
    stays near ``max_concurrency * part_size`` whatever the object size.
    Safe to share between threads (boto3 clients are).
    """

    def __init__(self, client: S3Settings | Callable[[], Any], bucket: str, *, object_lock: bool = True,
                 part_size: int = 8 * MiB, max_concurrency: int = 4):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.bucket = bucket
        self.object_lock = object_lock
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.client = client.client() if isinstance(client, S3Settings) else client()
        sign_checksummed_bodies_by_checksum(self.client)  # every put carries its SHA-256
        self.endpoint = self.client.meta.endpoint_url
        # Single PUTs past botocore's per-operation pipeline (s3client.DirectPut); a
        # client from another factory (a test's stub) gets every request through boto3.
        self._direct = DirectPut.of(self.client, bucket) if isinstance(client, S3Settings) else None

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors ------------------------------------------------------------------------

    def _errors(self, op: str, key: str | None = None, *,
                lock: bool = False) -> contextlib.AbstractContextManager[None]:
        target = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket}"
        return s3_errors(f"{op} {target} at {self.endpoint}", self.bucket, self.endpoint, lock=lock)

    # -- set-up ------------------------------------------------------------------------

    def check_setup(self) -> None:
        self._check_setup(self.object_lock)

    def _check_setup(self, object_lock: bool) -> None:
        with self._errors("check"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except bce.ClientError as e:
                if http_status(e) == 404:
                    raise PermanentError(f"bucket {self.bucket} does not exist at {self.endpoint}") from e
                raise
            try:
                lock = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
            except bce.ClientError as e:
                if error_code(e) != NO_LOCK_CONFIG:
                    raise
                lock = {}
        enabled = lock.get("ObjectLockEnabled") == "Enabled"
        if object_lock and not enabled:
            raise PermanentError(
                f"bucket {self.bucket} at {self.endpoint} does not have Object Lock enabled; the payload "
                "bucket must be created with Object Lock (ObjectLockEnabledForBucket), see docs/storage.md")
        if not object_lock and lock.get("Rule"):
            raise PermanentError(
                f"bucket {self.bucket} at {self.endpoint} has a default Object Lock retention rule; the "
                "header bucket must allow deletion (crypto-shredding), see docs/storage.md")

    def create_bucket(self, lock: bool = True) -> None:
        """Create the bucket (with Object Lock when ``lock``), then ``check_setup``."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        with self._errors("create"):
            try:
                self.client.create_bucket(**kwargs)
            except bce.ClientError as e:
                if error_code(e) != "BucketAlreadyOwnedByYou":
                    raise
        self._check_setup(lock)

    def enable_versioning(self) -> None:
        """Turn versioning on (idempotent): a PUT to an existing key then adds a
        version instead of replacing the bytes."""
        with self._errors("enable versioning"):
            self.client.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})

    def set_policy(self, policy: dict[str, Any]) -> None:
        """Replace the bucket policy (``storage.s3policy`` builds the documents)."""
        with self._errors("set policy"):
            self.client.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(policy))

    # -- writing -----------------------------------------------------------------------

    def put(self, key: str, source: BinaryIO | bytes, *, size: int | None = None, sha256: str,
            retention: Retention | None = None, tags: dict[str, str] | None = None,
            hashed: bool = False) -> PutResult:
        """See ``BlobStore.put``. ``hashed`` (in-memory bytes only) skips the client's
        SHA-256 of a single PUT: the service checks every byte against the digest sent
        (``BadDigest``), and the caller took it from these very bytes."""
        validate_key(key)
        validate_sha256(sha256)
        tags = validate_tags(tags)
        validate_new_retention(retention)
        if size is not None and size < 0:
            raise ValueError("size must be >= 0")
        expect = size
        if isinstance(source, (bytes, bytearray, memoryview)):
            expect = len(source) if size is None else size
            if hashed and len(source) <= part_size_for(size, self.part_size):
                # One PUT straight from the caller's buffer: not read into another one.
                return self._put_single(key, source, size, sha256, _extra(sha256, retention, tags), hashed=True)
            source = io.BytesIO(source)  # shares a bytes object's buffer; no copy
        part_size = part_size_for(size, self.part_size)
        # An object smaller than a part gets a buffer of its own size, not a part's:
        # one byte past the size it should have, so a longer source is still caught.
        first = read_full(source, part_size if expect is None else min(part_size, expect + 1))
        second = read_full(source, part_size) if len(first) == part_size else b""
        if not second:
            return self._put_single(key, first, size, sha256, _extra(sha256, retention, tags))
        head = [first, second]
        del first, second  # the list owns them, so each is freed once sent
        return self._put_parts(key, source, head, part_size, size, sha256, retention, tags)

    def _put_single(self, key: str, data: bytes | bytearray | memoryview, size: int | None, sha256: str,
                    extra: dict[str, Any], *, hashed: bool = False) -> PutResult:
        _verify(key, len(data), sha256 if hashed else hashlib.sha256(data).hexdigest(), size, sha256)
        checksum = _b64(bytes.fromhex(sha256))
        with self._errors("put", key):
            r = None if self._direct is None else self._direct.put(key, data, checksum, extra)
            if r is None:  # not sent, or not a 200: boto3's retries and error mapping decide
                r = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                                           ChecksumSHA256=checksum, **extra)
        return PutResult(r.get("VersionId"), r["ETag"].strip('"'), len(data), sha256,
                         answered_checksum(key, r, sha256, sha256))

    def _put_parts(self, key: str, source: BinaryIO, head: list[bytes | bytearray], part_size: int,
                   size: int | None, sha256: str, retention: Retention | None, tags: dict[str, str]) -> PutResult:
        """More than one part: sent as the streamed pipeline sends (``S3Upload``: CRC32C
        part checksums, at most ``max_concurrency`` parts in flight, the SHA-256 tagged
        once complete), the source read a MiB at a time and hashed on the way; one whose
        size or SHA-256 is not the caller's is aborted before it becomes visible."""
        if SHA256_TAG in tags or len(tags) >= MAX_TAGS:  # before anything is sent
            raise ValueError(f"put {key}: an object of more than one part takes at most {MAX_TAGS - 1} tags, "
                             f"none named {SHA256_TAG!r} (its SHA-256 is tagged once complete)")
        up = S3Upload(self, key, part_size=part_size, retention=retention, tags=tags)
        whole, total = hashlib.sha256(), 0
        try:
            rest = _chunks(source)
            while data := head.pop(0) if head else next(rest, b""):
                whole.update(data)
                up.write(data)  # copied: the read buffer is reused, the head freed
                total += len(data)
                del data
            _verify(key, total, whole.hexdigest(), size, sha256)
            up.seal(size=total, sha256=sha256)
            return up.complete()
        except BaseException:
            up.abort()
            raise

    def open_upload(self, key: str, *, size: int | None = None, retention: Retention | None = None,
                    tags: dict[str, str] | None = None,
                    on_create: Callable[[dict[str, Any]], None] | None = None) -> S3Upload:
        """See ``BlobStore.open_upload`` (storage/s3upload.py has how)."""
        validate_key(key)
        tags = validate_tags(tags)
        if SHA256_TAG in tags or len(tags) >= MAX_TAGS:
            raise ValueError(f"a streamed upload takes at most {MAX_TAGS - 1} tags, none named {SHA256_TAG!r}")
        validate_new_retention(retention)
        return S3Upload(self, key, part_size=part_size_for(size, self.part_size), retention=retention,
                        tags=tags, on_create=on_create)

    def resume_upload(self, key: str, token: dict[str, Any]) -> PutResult:
        """See ``BlobStore.resume_upload``."""
        validate_key(key)
        if not isinstance(token, dict) or "parts" not in token:
            raise NotFound(f"put {key}: the upload was never sealed")
        return s3upload.complete(self, key, token)

    def abort_upload(self, key: str, token: dict[str, Any]) -> None:
        """See ``BlobStore.abort_upload``."""
        validate_key(key)
        if isinstance(token, dict) and token.get("upload_id"):
            s3upload.abort(self, key, token["upload_id"])

    def delete(self, key: str, version_id: str | None = None, *,
               bypass_governance: bool = False) -> None:
        validate_key(key)
        bypass = {"BypassGovernanceRetention": True} if bypass_governance else {}
        if version_id is not None:
            vids = [version_id]
        else:
            # Every version and delete marker: a plain DeleteObject would only add a
            # marker and keep the bytes. Checked first so a refusal changes nothing.
            vids = []
            for vid, is_marker in self._versions(key):
                if not is_marker:
                    with contextlib.suppress(NotFound):
                        info = self.head(key, vid, tags=False)
                        why = deletion_refusal(info.retention, info.legal_hold, bypass_governance)
                        if why:
                            raise RetentionError(f"{f's3://{self.bucket}/{key}'} version {vid}: {why}")
                vids.append(vid)
        for vid in vids:
            with self._errors("delete", key, lock=True):
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=vid, **bypass)

    def versions(self, key: str) -> list[str]:
        validate_key(key)
        return [vid for vid, _ in self._versions(key)]

    def _versions(self, key: str) -> Iterator[tuple[str, bool]]:
        with self._errors("list versions", key):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key)
            for page in pages:
                for v in page.get("Versions", []):
                    if v["Key"] == key:
                        yield v["VersionId"], False
                for m in page.get("DeleteMarkers", []):
                    if m["Key"] == key:
                        yield m["VersionId"], True

    def set_legal_hold(self, key: str, on: bool, version_id: str | None = None) -> None:
        validate_key(key)
        with self._errors("set legal hold", key):
            self.client.put_object_legal_hold(Bucket=self.bucket, Key=key, **_version(version_id),
                                              LegalHold={"Status": "ON" if on else "OFF"})

    def set_retention(self, key: str, retention: Retention, version_id: str | None = None, *,
                      bypass_governance: bool = False) -> None:
        validate_key(key)
        validate_new_retention(retention)
        # Checked here too, so a service that fails to enforce the rule cannot
        # make us shorten COMPLIANCE retention; the server remains the authority.
        info = self.head(key, version_id, tags=False)
        why = retention_change_refusal(info.retention, retention, bypass_governance)
        if why:
            raise RetentionError(f"{f'set retention s3://{self.bucket}/{key}'}: {why}")
        bypass = {"BypassGovernanceRetention": True} if bypass_governance else {}
        with self._errors("set retention", key, lock=True):
            self.client.put_object_retention(
                Bucket=self.bucket, Key=key, **_version(info.version_id), **bypass,
                Retention={"Mode": retention.mode, "RetainUntilDate": retention.until})

    # -- reading -----------------------------------------------------------------------

    def head(self, key: str, version_id: str | None = None, *, tags: bool = True) -> ObjectInfo:
        validate_key(key)
        with self._errors("head", key):
            r = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED",
                                        **_version(version_id))
            vid = r.get("VersionId")
            sha256 = r.get("Metadata", {}).get("sha256")
            stored = r.get("ChecksumSHA256")
            tag_set: dict[str, str] = {}
            # A streamed upload's whole-object digest is a tag (storage/s3upload.py); its
            # stored checksum is of its parts (a composite, or a CRC32C), never a SHA-256.
            streamed = not sha256 and (stored is None or "-" in stored)
            if (tags or streamed) and r.get("TagCount", 1):  # TagCount is absent on AWS: ask
                got = self.client.get_object_tagging(Bucket=self.bucket, Key=key, **_version(vid))
                tag_set = {t["Key"]: t["Value"] for t in got.get("TagSet", [])}
            if streamed:
                sha256 = tag_set.get(SHA256_TAG)
            tag_set.pop(SHA256_TAG, None)
        if stored and "-" not in stored and r.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            server = base64.b64decode(stored).hex()
            if sha256 and sha256 != server:
                raise IntegrityError(f"{f'head s3://{self.bucket}/{key}'}: stored checksum {server} "
                                     f"differs from recorded sha256 {sha256}")
            sha256 = server
        retention = None
        if r.get("ObjectLockMode") and r.get("ObjectLockRetainUntilDate"):
            retention = Retention(r["ObjectLockMode"], r["ObjectLockRetainUntilDate"])
        return ObjectInfo(size=r["ContentLength"], sha256=sha256, version_id=vid, retention=retention,
                          legal_hold=r.get("ObjectLockLegalHoldStatus") == "ON", tags=tag_set)

    def get(self, key: str, version_id: str | None = None,
            byte_range: tuple[int, int] | None = None) -> bytes:
        body = self._get_body(key, version_id, byte_range)
        if body is None:
            return b""
        with contextlib.closing(body), self._errors("get", key):
            return body.read()

    def open_stream(self, key: str, version_id: str | None = None,
                    byte_range: tuple[int, int] | None = None, *,
                    chunk_size: int = MiB) -> BodyStream | EmptyStream:
        body = self._get_body(key, version_id, byte_range)
        if body is None:
            return EmptyStream()
        return BodyStream(body, chunk_size, lambda: self._errors("get", key))

    def _get_body(self, key: str, version_id: str | None, byte_range: tuple[int, int] | None) -> Any:
        validate_key(key)
        byte_range = validate_range(byte_range)
        kwargs = _version(version_id)
        if byte_range:
            kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        with self._errors("get", key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key, **kwargs)["Body"]
            except bce.ClientError as e:
                if error_code(e) == "InvalidRange":
                    return None  # start at or past the end: empty, like a slice
                raise

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        with self._errors("list", prefix or None):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"]


def _extra(sha256: str, retention: Retention | None, tags: dict[str, str]) -> dict[str, Any]:
    extra: dict[str, Any] = {"Metadata": {"sha256": sha256}}
    if retention is not None:
        extra["ObjectLockMode"] = retention.mode
        extra["ObjectLockRetainUntilDate"] = retention.until
    if tags:
        extra["Tagging"] = urllib.parse.urlencode(tags, quote_via=urllib.parse.quote)
    return extra


def _verify(key: str, got_size: int, got_sha256: str, size: int | None, sha256: str) -> None:
    if size is not None and got_size != size:
        raise IntegrityError(f"put {key}: read {got_size} bytes, caller said {size}")
    if got_sha256 != sha256:
        raise IntegrityError(f"put {key}: sha256 of the data is {got_sha256}, caller said {sha256}")


_CHUNK = 1 << 20  # what ``put`` reads at a time past its first two parts


def _chunks(source: BinaryIO) -> Iterator[memoryview | bytes]:
    """The rest of ``source`` in 1 MiB reads (the upload gathers them into parts); with
    ``readinto``, each read into the same buffer (the consumer copies what it keeps
    before asking for the next)."""
    if getattr(source, "readinto", None) is None:
        while data := read_full(source, _CHUNK):
            yield data
        return
    view = memoryview(bytearray(_CHUNK))  # not released here: the last chunk's view may outlive this
    while True:
        pos = 0
        while pos < _CHUNK and (got := source.readinto(view[pos:])):
            pos += got
        if not pos:
            return
        yield view[:pos]
        if pos < _CHUNK:
            return


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}

