"""``BlobStore`` on any S3 service (AWS S3, MinIO, Ceph RGW, Wasabi, R2, B2).

Only documented S3 behaviour is used: flexible checksums (``ChecksumAlgorithm``
plus the caller's precomputed ``ChecksumSHA256``, so the server verifies every
byte it stores), Object Lock per object, tags, multipart with per-part SHA-256,
versions. The whole-object SHA-256 is also kept as user metadata (``sha256``):
a multipart object's stored checksum is a checksum of part checksums.

Bucket set-up, IAM permissions and the error kinds are in docs/storage.md.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import itertools
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import boto3
import botocore.exceptions as bce
from botocore.config import Config

from storage.blobstore import (
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
from storage.errors import (
    IntegrityError,
    NotFound,
    PermanentError,
    RetentionError,
    RetryableError,
    StorageError,
)

_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_INTEGRITY = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
_RETRYABLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded",
              "TooManyRequests", "TooManyRequestsException", "ServiceUnavailable", "InternalError",
              "OperationAborted"}
_NO_LOCK_CONFIG = "ObjectLockConfigurationNotFoundError"
_MAX_PARTS = 10_000


@dataclass(frozen=True)
class S3Settings:
    """How to reach the service. Secrets stay out of ``repr``."""

    endpoint_url: str | None = None  # None: AWS
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"  # "path" for most self-hosted services
    max_attempts: int = 5  # adaptive retries: backs off and rate-limits on throttling
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 16

    def client(self) -> Any:
        config = Config(
            retries={"mode": "adaptive", "max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
            max_pool_connections=self.max_pool_connections,
            # Every upload carries our own SHA-256 checksum header, which the
            # server verifies; signing the payload as well would hash it twice more.
            s3={"addressing_style": self.addressing_style, "payload_signing_enabled": False},
            # Checksums only where we ask for them (portable to older services);
            # responses that carry one are still verified.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_supported",
        )
        # A session per client: boto3's default session is not thread-safe.
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
            config=config)


class _S3Stream:
    def __init__(self, body: Any, chunk_size: int, errors: Callable[[], contextlib.AbstractContextManager]):
        self._body, self._errors = body, errors
        self._chunks = body.iter_chunks(chunk_size)

    def __iter__(self) -> _S3Stream:
        return self

    def __next__(self) -> bytes:
        try:
            with self._errors():
                return next(self._chunks)
        except StopIteration:
            self.close()
            raise
        except StorageError:
            self.close()
            raise

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _S3Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Store:
    """``BlobStore`` on one S3 bucket.

    ``client`` is ``S3Settings`` or a factory returning a boto3 S3 client; the
    store owns (and closes) that client. ``object_lock`` says which bucket this
    is: True for the payload bucket (Object Lock required), False for the
    header/key bucket (must allow deletion). Uploads larger than ``part_size``
    go multipart with at most ``max_concurrency`` parts in flight, so memory
    stays near ``(max_concurrency + 2) * part_size`` whatever the object size.
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
        self.endpoint = self.client.meta.endpoint_url

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, op: str, key: str | None = None, *, lock: bool = False) -> Iterator[None]:
        """Map botocore's exceptions to storage.errors kinds.

        ``lock``: the call is one Object Lock may refuse (delete, retention), so
        AccessDenied means a retention or hold said no.
        """
        try:
            yield
        except bce.ClientError as e:
            raise self._client_error(e, op, key, lock) from e
        except bce.FlexibleChecksumError as e:
            raise IntegrityError(f"{self._where(op, key)}: checksum mismatch on read: {e}") from e
        except bce.SSLError as e:
            raise PermanentError(f"{self._where(op, key)}: TLS failure: {e}") from e
        except (bce.ConnectionError, bce.HTTPClientError, bce.IncompleteReadError) as e:
            raise RetryableError(f"{self._where(op, key)}: {e}") from e
        except (bce.NoCredentialsError, bce.PartialCredentialsError) as e:
            raise PermanentError(f"{self._where(op, key)}: no usable credentials: {e}") from e

    def _where(self, op: str, key: str | None) -> str:
        target = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket}"
        return f"{op} {target} at {self.endpoint}"

    def _client_error(self, e: bce.ClientError, op: str, key: str | None, lock: bool) -> StorageError:
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{self._where(op, key)}: {code} {err.get('Message') or ''}".rstrip()
        if code == "NoSuchBucket":
            return PermanentError(f"{text} (bucket {self.bucket} does not exist at {self.endpoint})")
        if code in _NOT_FOUND or (status == 404 and code != _NO_LOCK_CONFIG):
            return NotFound(text)
        if code in _INTEGRITY:
            return IntegrityError(text)
        if lock and code == "AccessDenied":
            return RetentionError(f"{text} (refused by Object Lock, or the policy lacks the permission)")
        if code in _RETRYABLE or status >= 500 or status == 429:
            return RetryableError(text)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            return PermanentError(f"{text} (check the credentials and bucket policy for {self.endpoint})")
        return PermanentError(text)

    # -- set-up ------------------------------------------------------------------------

    def check_setup(self) -> None:
        self._check_setup(self.object_lock)

    def _check_setup(self, object_lock: bool) -> None:
        with self._errors("check"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except bce.ClientError as e:
                if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    raise PermanentError(f"bucket {self.bucket} does not exist at {self.endpoint}") from e
                raise
            try:
                lock = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
            except bce.ClientError as e:
                if e.response.get("Error", {}).get("Code") != _NO_LOCK_CONFIG:
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
                if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
        self._check_setup(lock)

    # -- writing -----------------------------------------------------------------------

    def put(self, key: str, source: BinaryIO | bytes, *, size: int | None = None, sha256: str,
            retention: Retention | None = None, tags: dict[str, str] | None = None) -> PutResult:
        validate_key(key)
        validate_sha256(sha256)
        tags = validate_tags(tags)
        validate_new_retention(retention)
        if size is not None and size < 0:
            raise ValueError("size must be >= 0")
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(source)  # shares a bytes object's buffer; no copy
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256}}
        if retention is not None:
            extra["ObjectLockMode"] = retention.mode
            extra["ObjectLockRetainUntilDate"] = retention.until
        if tags:
            extra["Tagging"] = urllib.parse.urlencode(tags, quote_via=urllib.parse.quote)
        part_size = part_size_for(size, self.part_size)
        first = read_full(source, part_size)
        second = read_full(source, part_size) if len(first) == part_size else b""
        if not second:
            return self._put_single(key, first, size, sha256, extra)
        return self._put_multipart(key, source, first, second, part_size, size, sha256, extra)

    def _put_single(self, key: str, data: bytes, size: int | None, sha256: str,
                    extra: dict[str, Any]) -> PutResult:
        _verify(key, len(data), hashlib.sha256(data).hexdigest(), size, sha256)
        with self._errors("put", key):
            r = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                                       ChecksumSHA256=_b64(bytes.fromhex(sha256)), **extra)
        return PutResult(r.get("VersionId"), r["ETag"].strip('"'), len(data), sha256)

    def _put_multipart(self, key: str, source: BinaryIO, first: bytes, second: bytes, part_size: int,
                       size: int | None, sha256: str, extra: dict[str, Any]) -> PutResult:
        with self._errors("put", key):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", **extra)["UploadId"]
        done = False
        try:
            whole, total = hashlib.sha256(), 0
            parts = itertools.chain((first, second), iter(lambda: read_full(source, part_size), b""))
            futures: list[Future] = []
            pending: set[Future] = set()
            with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="s3-part") as pool:
                try:
                    for number, data in enumerate(parts, start=1):
                        if number > _MAX_PARTS:
                            raise PermanentError(f"put {key}: more than {_MAX_PARTS} parts of {part_size} "
                                                 "bytes; pass size= so the part size can grow")
                        whole.update(data)
                        total += len(data)
                        # Bounded memory: at most max_concurrency parts in flight.
                        while len(pending) >= self.max_concurrency:
                            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for f in finished:
                                f.result()  # a failed part stops the reading now
                        future = pool.submit(self._upload_part, key, upload_id, number, data)
                        futures.append(future)
                        pending.add(future)
                        del data
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
            completed = [f.result() for f in futures]
            _verify(key, total, whole.hexdigest(), size, sha256)
            with self._errors("put", key):
                r = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": completed})
            done = True
        finally:
            if not done:
                with contextlib.suppress(bce.ClientError, bce.BotoCoreError):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        return PutResult(r.get("VersionId"), r["ETag"].strip('"'), total, sha256)

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        checksum = _b64(hashlib.sha256(data).digest())
        with self._errors("put", key):
            r = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                        Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum)
        return {"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": checksum}

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
                            raise RetentionError(f"{self._where('delete', key)} version {vid}: {why}")
                vids.append(vid)
        for vid in vids:
            with self._errors("delete", key, lock=True):
                self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=vid, **bypass)

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
            raise RetentionError(f"{self._where('set retention', key)}: {why}")
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
            tag_set: dict[str, str] = {}
            if tags and r.get("TagCount", 1):  # TagCount is absent on AWS: ask
                got = self.client.get_object_tagging(Bucket=self.bucket, Key=key, **_version(vid))
                tag_set = {t["Key"]: t["Value"] for t in got.get("TagSet", [])}
        sha256 = r.get("Metadata", {}).get("sha256")
        stored = r.get("ChecksumSHA256")
        if stored and "-" not in stored and r.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            server = base64.b64decode(stored).hex()
            if sha256 and sha256 != server:
                raise IntegrityError(f"{self._where('head', key)}: stored checksum {server} "
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
                    chunk_size: int = MiB) -> _S3Stream | _Empty:
        body = self._get_body(key, version_id, byte_range)
        if body is None:
            return _Empty()
        return _S3Stream(body, chunk_size, lambda: self._errors("get", key))

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
                if e.response.get("Error", {}).get("Code") == "InvalidRange":
                    return None  # start at or past the end: empty, like a slice
                raise

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        with self._errors("list", prefix or None):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"]


class _Empty:
    """The stream of an empty range."""

    def __iter__(self) -> _Empty:
        return self

    def __next__(self) -> bytes:
        raise StopIteration

    def close(self) -> None:
        pass

    def __enter__(self) -> _Empty:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _verify(key: str, got_size: int, got_sha256: str, size: int | None, sha256: str) -> None:
    if size is not None and got_size != size:
        raise IntegrityError(f"put {key}: read {got_size} bytes, caller said {size}")
    if got_sha256 != sha256:
        raise IntegrityError(f"put {key}: sha256 of the data is {got_sha256}, caller said {sha256}")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}

