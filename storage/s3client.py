"""The boto3 side of ``S3Store``: client settings, error mapping, response streams.

Every botocore failure leaves ``storage`` as one ``storage.errors`` kind whose
message names the operation, the bucket and the endpoint (never credentials):

=================================================  ==========================
NoSuchKey, NoSuchVersion, other 404s                ``NotFound``
NoSuchBucket, InvalidAccessKeyId, SignatureDoes-    ``PermanentError``
NotMatch, AccessDenied, other 4xx, TLS failures,
missing credentials
AccessDenied on delete / retention change           ``RetentionError``
BadDigest, XAmzContentSHA256Mismatch, a response    ``IntegrityError``
checksum that does not verify
5xx, 429, SlowDown, RequestTimeout, throttling,     ``RetryableError``
connection refused/reset, timeouts
=================================================  ==========================
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import threading
import urllib.parse
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import boto3
import botocore.exceptions as bce
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config

from storage.errors import (
    IntegrityError,
    NotFound,
    PermanentError,
    RetentionError,
    RetryableError,
    StorageError,
)

NO_LOCK_CONFIG = "ObjectLockConfigurationNotFoundError"
_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_INTEGRITY = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
_RETRYABLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded",
              "TooManyRequests", "TooManyRequestsException", "ServiceUnavailable", "InternalError",
              "OperationAborted"}
_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}


@dataclass(frozen=True)
class S3Settings:
    """How to reach the service. Secrets stay out of ``repr``."""

    endpoint_url: str | None = None  # None: AWS
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"  # "path" for most self-hosted services
    max_attempts: int = 5  # adaptive retries: back-off plus client-side rate limiting
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 16  # >= the parts in flight of all concurrent puts

    def client(self) -> Any:
        config = Config(
            retries={"mode": "adaptive", "max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
            max_pool_connections=self.max_pool_connections,
            s3={"addressing_style": self.addressing_style},
            # Request checksums only where we pass our own (SHA-256) or S3 requires
            # one: older services reject botocore's default CRC trailers. Responses
            # that carry a full-object checksum are still verified.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_supported",
            parameter_validation=False,
        )
        # A session per client: boto3's default session is not thread-safe.
        client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
            config=config)
        client.meta.events.register("request-created.s3", REQUESTS.count)
        return client


class RequestCounts:
    """HTTP requests sent to S3 by this process, by operation (``PutObject``,
    ``HeadObject``, ...), retries included: botocore creates a request per attempt.
    Every client made by ``S3Settings.client()`` reports here; the metrics page
    exports it as ``callvault_s3_requests_total``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, operation_name: str = "", **kwargs: Any) -> None:
        with self._lock:
            self._counts[operation_name or "unknown"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


REQUESTS = RequestCounts()


def sign_checksummed_bodies_by_checksum(client: Any) -> None:
    """Over plain HTTP, send ``UNSIGNED-PAYLOAD`` for a request that carries an
    ``x-amz-checksum-sha256`` or ``-crc32c`` header, instead of hashing its body a
    second time for the signature. This is what botocore already does over HTTPS:
    the checksum header is itself signed and the service verifies every byte against
    it (a mismatch is ``BadDigest``), and neither side hashes the body twice. A
    streamed payload's parts carry a CRC32C (storage/s3upload.py): over plain HTTP that
    catches a changed byte but not a forged one, which the payload's SHA-256 and age's
    Poly1305 tags do. Requests without such a header (other bodies, e.g.
    CompleteMultipartUpload) keep their signed payload. An explicit
    ``payload_signing_enabled`` in the client's config is left as it is."""
    client.meta.events.register("before-sign.s3", _unsigned_when_checksummed)


# Each client's config with unsigned payloads, made once per config (a merge costs
# about 0.1 ms, per request otherwise) and dropped with the client.
_UNSIGNED: weakref.WeakKeyDictionary[Config, Config] = weakref.WeakKeyDictionary()
_CHECKSUM_HEADERS = ("x-amz-checksum-sha256", "x-amz-checksum-crc32c")


def _unsigned_when_checksummed(request: Any, **kwargs: Any) -> None:
    if request.url.startswith("https") or not any(h in request.headers for h in _CHECKSUM_HEADERS):
        return
    config = request.context.get("client_config")
    if config is None:
        return
    unsigned = _UNSIGNED.get(config)
    if unsigned is None:
        s3 = dict(getattr(config, "s3", None) or {})
        if s3.get("payload_signing_enabled") is not None:
            unsigned = config
        else:
            s3["payload_signing_enabled"] = False
            unsigned = config.merge(Config(s3=s3))
        _UNSIGNED[config] = unsigned
    request.context["client_config"] = unsigned


def error_code(e: bce.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def http_status(e: bce.ClientError) -> int:
    return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


@contextlib.contextmanager
def s3_errors(where: str, bucket: str, endpoint: str, *, lock: bool = False) -> Iterator[None]:
    """Map botocore exceptions raised inside to ``storage.errors`` kinds.

    ``where`` is e.g. ``"put s3://b/k at http://host"``. ``lock``: the call is one
    Object Lock may refuse (delete, retention change), so AccessDenied is read as
    a retention or legal-hold refusal.
    """
    try:
        yield
    except bce.ClientError as e:
        raise client_error(e, where, bucket, endpoint, lock=lock) from e
    except bce.FlexibleChecksumError as e:
        raise IntegrityError(f"{where}: checksum mismatch on read: {e}") from e
    except bce.SSLError as e:
        raise PermanentError(f"{where}: TLS failure: {e}") from e
    except (bce.ConnectionError, bce.HTTPClientError, bce.IncompleteReadError) as e:
        raise RetryableError(f"{where}: {e}") from e
    except (bce.NoCredentialsError, bce.PartialCredentialsError) as e:
        raise PermanentError(f"{where}: no usable credentials: {e}") from e


def client_error(e: bce.ClientError, where: str, bucket: str, endpoint: str, *,
                 lock: bool = False) -> StorageError:
    code, status = error_code(e), http_status(e)
    text = f"{where}: {code} {e.response.get('Error', {}).get('Message') or ''}".rstrip()
    if code == "NoSuchBucket":
        return PermanentError(f"{text} (bucket {bucket} does not exist at {endpoint})")
    if code in _NOT_FOUND or (status == 404 and code != NO_LOCK_CONFIG):
        return NotFound(text)
    if code in _INTEGRITY:
        return IntegrityError(text)
    if lock and code == "AccessDenied":
        return RetentionError(f"{text} (refused by Object Lock, or the policy lacks the permission)")
    if code in _RETRYABLE or status >= 500 or status == 429:
        return RetryableError(text)
    if code in _CREDENTIALS:
        return PermanentError(f"{text} (check the credentials and bucket policy for {endpoint})")
    return PermanentError(text)


class BodyStream:
    """A response body as an iterator of chunks; closes the connection when done."""

    def __init__(self, body: Any, chunk_size: int, errors: Callable[[], contextlib.AbstractContextManager]):
        self._body, self._errors = body, errors
        self._chunks = body.iter_chunks(chunk_size)

    def __iter__(self) -> BodyStream:
        return self

    def __next__(self) -> bytes:
        try:
            with self._errors():
                return next(self._chunks)
        except (StopIteration, StorageError):
            self.close()
            raise

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmptyStream:
    """The stream of a range that starts at or past the end."""

    def __iter__(self) -> EmptyStream:
        return self

    def __next__(self) -> bytes:
        raise StopIteration

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def checksum_hex(answered: str) -> str | None:
    """A checksum as S3 answers it (base64, a composite with "-<parts>") in hex, the
    "-<parts>" kept; None if it is not base64."""
    digest, dash, count = answered.partition("-")
    try:
        return base64.b64decode(digest, validate=True).hex() + dash + count
    except ValueError:
        return None


def answered_checksum(key: str, response: dict[str, Any], sha256: str, sent: str) -> str | None:
    """The SHA-256 checksum a PUT (or CompleteMultipartUpload) response reports, in hex
    (a composite keeps its "-<parts>"), checked against what was sent: ``sent`` is
    ``sha256`` for a single put, the checksum of the part checksums for a multipart
    one; a full-object checksum must equal ``sha256`` either way. None when the
    response has none (a service without flexible checksums)."""
    answered = response.get("ChecksumSHA256")
    if not answered:
        return None
    got = checksum_hex(answered)
    if got is None:
        raise IntegrityError(f"put {key}: the service answered checksum {answered!r}, not a SHA-256")
    if got not in (sent, sha256):
        raise IntegrityError(f"put {key}: the service reports checksum {got} for what it stored, "
                             f"the caller sent {sent}")
    return got


class DirectPut:
    """``PutObject`` of a body in memory through botocore's own SigV4 signer and the
    client's own HTTP session (its connection pool, TLS and proxy settings), without
    botocore's per-operation pipeline: no model serialisation, endpoint rule set,
    event chain or response parsing. On this host that pipeline cost 1.0-1.2 ms of CPU
    per PUT on top of the 0.8-1.4 ms that signing and sending take
    (docs/performance.md, "The archiver"); an archived recording makes three.

    Only the answer a PUT exists for is handled here: 200, read as boto3 reads it
    (version id, ETag, SHA-256 checksum). Anything else (an error answer, a redirect,
    no answer at all) returns None and the caller sends the same PUT again through
    boto3's ``put_object``, whose retries, redirects and error mapping then decide, as
    for every other request. The payload goes unsigned under its signed
    ``x-amz-checksum-sha256``, as ``sign_checksummed_bodies_by_checksum`` has boto3 do.
    """

    # put_object parameters (S3Store's ``_extra``) as the headers botocore sends.
    _PARAMS = frozenset({"Metadata", "ObjectLockMode", "ObjectLockRetainUntilDate", "Tagging"})

    def __init__(self, http: Any, credentials: Any, region: str, base_url: str) -> None:
        self._http, self._credentials = http, credentials
        self._region, self._base = region, base_url

    @classmethod
    def of(cls, client: Any, bucket: str) -> DirectPut | None:
        """For a client made by ``S3Settings.client``; None when botocore no longer has
        the parts this needs (its HTTP session and credentials are not public API):
        then every PUT goes through ``put_object``."""
        try:
            http = client._endpoint.http_session
            credentials = client._get_credentials()
            # The object URL exactly as botocore addresses this bucket (path or virtual host).
            url = urllib.parse.urlsplit(client.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60))
        except (AttributeError, bce.BotoCoreError):
            return None
        if credentials is None or not url.path.endswith("/k") or not hasattr(http, "send"):
            return None
        return cls(http, credentials, client.meta.region_name or "us-east-1",
                   f"{url.scheme}://{url.netloc}{url.path[:-1]}")

    def put(self, key: str, body: bytes | bytearray | memoryview, checksum: str,
            params: dict[str, Any]) -> dict[str, Any] | None:
        """Send one PUT (``checksum``: the body's SHA-256, base64). The answer as
        ``put_object`` returns it (``VersionId``, ``ETag``, ``ChecksumSHA256``), or None:
        send it through boto3 instead."""
        if not self._PARAMS.issuperset(params):
            return None
        headers = {"Content-Length": str(len(body)), "x-amz-sdk-checksum-algorithm": "SHA256",
                   "x-amz-checksum-sha256": checksum}
        for name, value in params.get("Metadata", {}).items():
            headers[f"x-amz-meta-{name}"] = value
        if "ObjectLockMode" in params:
            headers["x-amz-object-lock-mode"] = params["ObjectLockMode"]
            until = params["ObjectLockRetainUntilDate"].astimezone(datetime.UTC)
            headers["x-amz-object-lock-retain-until-date"] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        if "Tagging" in params:
            headers["x-amz-tagging"] = params["Tagging"]
        request = AWSRequest("PUT", self._base + key, headers=headers, data=body)
        REQUESTS.count("PutObject")
        try:
            _UnsignedPayloadAuth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
            answer = self._http.send(request.prepare())
        except bce.BotoCoreError:
            return None
        if answer.status_code != 200:
            return None
        h = answer.headers
        return {"VersionId": h.get("x-amz-version-id"), "ETag": h.get("ETag", ""),
                "ChecksumSHA256": h.get("x-amz-checksum-sha256")}


class _UnsignedPayloadAuth(S3SigV4Auth):
    """SigV4 with ``UNSIGNED-PAYLOAD``: the body's SHA-256 is the signed
    ``x-amz-checksum-sha256`` header, which the service checks every byte against."""

    def _should_sha256_sign_payload(self, request: Any) -> bool:
        return False
