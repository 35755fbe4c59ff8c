"""A streamed upload to S3: bytes handed over piece by piece go out as multipart parts
while the caller is still producing them (``S3Store.open_upload``).

Why it exists: the archiver encrypts a recording straight into its upload, so the
payload never lands in a local work file and the encryption and the network run side
by side. The whole-object SHA-256 is known only at the end, after the multipart upload
was created, so it cannot be user metadata (fixed at creation) as it is for ``put``:
it is a tag (``sha256``) set right after completion, which ``S3Store.head`` reads. Each
part carries its CRC32C (``x-amz-checksum-crc32c``), taken from the very buffer that
is sent, and the service refuses a part whose bytes differ (``BadDigest``). CRC32C
rather than SHA-256: a part checksum only has to catch bytes changed in transit, and
CRC32C is computed in hardware on both sides (SSE4.2 here, Ceph's own crc32c in RGW),
where SHA-256 costs 0.6 CPU-seconds per GiB on each and plain CRC32 costs RGW more
than SHA-256 does (docs/archiver.md, "Part checksums"). What authenticates the
payload is elsewhere: its SHA-256 (manifest, ledger, tag) and age's Poly1305 tag on
every 64 KiB chunk. On completion the service answers a checksum of the whole object
(the CRC32C of all its bytes, or the CRC32C of the part CRC32Cs with ``-<parts>``),
checked here against the CRC32Cs sent.

Life of an upload: ``write`` (any number of times) -> ``seal(size, sha256)`` (the last
part is sent and every part acknowledged; returns the token, a JSON-able dict that
``S3Store.resume_upload`` completes in another process after a crash) -> ``complete``
(``CompleteMultipartUpload``, then the tags). A source of one part or less is sent by
``complete`` as one ``PutObject`` (the digest then goes as metadata, like ``put``), and
has no token. ``abort`` (idempotent) drops the upload. ``on_create(token)`` is called
once the multipart upload exists and before its first part is sent, so the caller can
record the upload id and abort it after a crash.

Memory: ``max(2, max_concurrency)`` part buffers, the one being filled included, reused
part after part, so it stays flat whatever the size.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import urllib.parse
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

import botocore.exceptions as bce
import crc32c

from storage.blobstore import PutResult, Retention
from storage.errors import (
    IntegrityError,
    NotFound,
    PermanentError,
    RetryableError,
    StorageError,
)
from storage.s3client import answered_checksum, checksum_hex, http_status

MAX_PARTS = 10_000
SHA256_TAG = "sha256"


class S3Store(Protocol):
    """What an upload uses of ``storage.s3store.S3Store``."""

    client: Any
    bucket: str
    max_concurrency: int

    def _errors(self, op: str, key: str | None = None, *,
                lock: bool = False) -> contextlib.AbstractContextManager[None]: ...


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def part_checksum(data) -> str:
    """The ``x-amz-checksum-crc32c`` of a part (the GIL is released meanwhile)."""
    return b64(crc32c.crc32c(data).to_bytes(4, "big"))


# CRC combination (zlib's crc32_combine, for the CRC-32C polynomial): arithmetic
# modulo the reflected Castagnoli polynomial.
_POLY = 0x82F63B78


def _multmodp(a: int, b: int) -> int:
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


_X2N = [1 << 30]  # x^(2^k) modulo the polynomial
for _ in range(31):
    _X2N.append(_multmodp(_X2N[-1], _X2N[-1]))


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC32C of A+B from crc1 = CRC32C(A), crc2 = CRC32C(B) and B's length."""
    p, k, n = 1 << 31, 3, len2  # x^(8 * len2)
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


def stored_checksum(answer: dict[str, Any], token: dict[str, Any]) -> tuple[str, str] | None:
    """What a CompleteMultipartUpload or HEAD ``answer`` says the service stored, and
    what it must be for the token's parts, both in hex (a composite with "-<parts>");
    None when the answer carries no checksum (a service without flexible checksums).

    Parts with CRC32Cs: the whole object's CRC32C (``ChecksumType`` FULL_OBJECT, Ceph's
    answer), combined from the parts' CRC32Cs and sizes, or the CRC32C of the part
    CRC32Cs (COMPOSITE). Parts with SHA-256s (an upload sealed before part CRC32Cs): the
    SHA-256 of the part digests."""
    parts = token["parts"]
    algorithm = "CRC32C" if "ChecksumCRC32C" in parts[0] else "SHA256"
    answered = answer.get(f"Checksum{algorithm}")
    if not answered:
        return None
    got = checksum_hex(answered) or repr(answered)
    dash = "-" in answered
    sums = [base64.b64decode(p[f"Checksum{algorithm}"]) for p in parts]
    if algorithm == "SHA256":
        return got, f"{hashlib.sha256(b''.join(sums)).hexdigest()}-{len(parts)}"
    if dash or answer.get("ChecksumType") == "COMPOSITE":
        return got, f"{crc32c.crc32c(b''.join(sums)):08x}-{len(parts)}"
    whole, last = 0, token["size"] - (len(parts) - 1) * token["part_size"]
    for i, crc in enumerate(sums):
        whole = crc32c_combine(whole, int.from_bytes(crc, "big"), token["part_size"] if i < len(sums) - 1 else last)
    return got, f"{whole:08x}"


def tagging(tags: dict[str, str]) -> str:
    return urllib.parse.urlencode(tags, quote_via=urllib.parse.quote)


class S3Upload:
    def __init__(self, store: S3Store, key: str, *, part_size: int, retention: Retention | None,
                 tags: dict[str, str], on_create: Callable[[dict[str, Any]], None] | None = None):
        self.store, self.key, self.part_size = store, key, part_size
        self.client, self.bucket = store.client, store.bucket
        self.tags = dict(tags)
        self.extra: dict[str, Any] = {}
        if retention is not None:
            self.extra["ObjectLockMode"] = retention.mode
            self.extra["ObjectLockRetainUntilDate"] = retention.until
        self.on_create = on_create
        self.upload_id: str | None = None
        self.buf = bytearray(part_size)
        self.fill = 0
        self.number = 0  # parts handed to the pool
        self.total = 0
        self.sha256: str | None = None
        self.in_flight: dict[Future, bytearray] = {}
        self.futures: list[Future] = []
        self.spare: list[bytearray] = []
        self.pool: ThreadPoolExecutor | None = None
        self.completed: list[dict[str, Any]] | None = None
        self.finished = False

    # -- writing --------------------------------------------------------------------

    def write(self, data) -> None:
        """Take ``data`` (copied: the caller may reuse its buffer once this returns).
        Blocks while ``max_concurrency`` parts are in flight."""
        mv = memoryview(data).cast("B")
        while len(mv):
            if self.fill == self.part_size:  # more follows: the full buffer is not the last part
                self._send()
            take = min(len(mv), self.part_size - self.fill)
            self.buf[self.fill:self.fill + take] = mv[:take]
            self.fill += take
            self.total += take
            mv = mv[take:]

    def _send(self, last: bool = False) -> None:
        if self.upload_id is None:
            with self.store._errors("put", self.key):
                self.upload_id = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="CRC32C",
                    Tagging=tagging(self.tags), **self.extra)["UploadId"]
            self.pool = ThreadPoolExecutor(self.store.max_concurrency, thread_name_prefix="s3-part")
            if self.on_create is not None:
                self.on_create(self.token())
        self._reap(block=False)
        while len(self.in_flight) >= self.store.max_concurrency:
            self._reap(block=True)
        self.number += 1
        if self.number > MAX_PARTS:
            raise PermanentError(f"put {self.key}: more than {MAX_PARTS} parts of {self.part_size} bytes")
        data = self.buf if self.fill == self.part_size else self.buf[:self.fill]
        future = self.pool.submit(self._upload_part, self.number, data)
        self.futures.append(future)
        self.in_flight[future] = data
        if last:
            return
        # The buffer to fill next counts too: at most max(2, max_concurrency) in all, as
        # for ``put``, so the writer waits rather than the memory growing.
        while len(self.in_flight) >= max(2, self.store.max_concurrency):
            self._reap(block=True)
        self.buf = self.spare.pop() if self.spare else bytearray(self.part_size)
        self.fill = 0

    def _reap(self, block: bool) -> None:
        finished = [f for f in self.in_flight if f.done()]
        if not finished and block:
            finished, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
        for f in finished:
            f.result()  # a failed part stops the writing now
            buf = self.in_flight.pop(f)
            if len(buf) == self.part_size:
                self.spare.append(buf)

    def _upload_part(self, number: int, data: bytearray) -> dict[str, Any]:
        checksum = part_checksum(data)  # of the bytes as they go out
        with self.store._errors("put", self.key):
            r = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                        PartNumber=number, Body=data, ChecksumAlgorithm="CRC32C",
                                        ChecksumCRC32C=checksum)
        return {"PartNumber": number, "ETag": r["ETag"], "ChecksumCRC32C": checksum}

    # -- finishing ------------------------------------------------------------------

    def token(self) -> dict[str, Any]:
        """What ``S3Store.resume_upload``/``abort_upload`` need (JSON-able)."""
        t: dict[str, Any] = {"upload_id": self.upload_id}
        if self.completed is not None:
            t.update(parts=self.completed, part_size=self.part_size, size=self.total, sha256=self.sha256,
                     tags=self.tags)
        return t

    def seal(self, *, size: int, sha256: str) -> dict[str, Any] | None:
        """Every byte was written: check the count, send the last part, wait for all.
        ``sha256`` is the caller's digest of the whole (taken from the same buffers),
        checked here only for a single put (by the service). The token, or None when
        the data will go as a single put."""
        if self.total != size:
            raise IntegrityError(f"put {self.key}: wrote {self.total} bytes, caller said {size}")
        self.sha256 = sha256
        if self.upload_id is None:
            return None
        self._send(last=True)
        try:
            self.completed = [f.result() for f in self.futures]
        finally:
            self._shutdown()
        return self.token()

    def complete(self) -> PutResult:
        """Make the object visible (after ``seal``)."""
        if self.sha256 is None:
            raise RuntimeError("complete() needs seal() first")
        if self.upload_id is None:
            with self.store._errors("put", self.key):
                r = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self.buf[:self.fill],
                                           ChecksumAlgorithm="SHA256", ChecksumSHA256=b64(bytes.fromhex(self.sha256)),
                                           Metadata={SHA256_TAG: self.sha256}, Tagging=tagging(self.tags),
                                           **self.extra)
            self.finished = True
            return PutResult(r.get("VersionId"), r["ETag"].strip('"'), self.fill, self.sha256,
                             answered_checksum(self.key, r, self.sha256, self.sha256))
        result = complete(self.store, self.key, self.token())
        self.finished = True
        return result

    def abort(self) -> bool:
        """Drop what was sent (nothing becomes visible). Called on the way out of a
        failure, so a store error here is not raised: False then, and the caller keeps
        the token (``on_create``) to abort it later."""
        self._shutdown()
        if self.upload_id is not None and not self.finished:
            try:
                abort(self.store, self.key, self.upload_id)
            except StorageError:
                return False
        self.finished = True
        return True

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.in_flight.clear()
        self.spare.clear()


def complete(store: S3Store, key: str, token: dict[str, Any]) -> PutResult:
    """Complete a sealed upload from its token (idempotent), then tag its SHA-256.

    After a crash the upload may be completed already (the id is then gone): the
    current version is taken as ours only if the service's checksum of it is the one
    the token's part checksums make (``stored_checksum``) and its size is the token's."""
    client = store.client
    version, checksum = None, None
    try:
        with store._errors("put", key):
            r = client.complete_multipart_upload(Bucket=store.bucket, Key=key, UploadId=token["upload_id"],
                                                 MultipartUpload={"Parts": token["parts"]})
        version, etag = r.get("VersionId"), r["ETag"].strip('"')
        # What the service says it stored, checked against the parts sent; None after a
        # crash (found below), so verification reads the object back.
        if (pair := stored_checksum(r, token)) is not None:
            checksum, want = pair
            if checksum != want:
                raise IntegrityError(f"put {key}: the service reports checksum {checksum} for what it "
                                     f"stored, the parts sent make {want}")
    except (NotFound, RetryableError):
        # RGW answers 500 "completion already in progress", not NoSuchUpload, for an
        # upload id it does not have (aborted, or never made): the HEAD below tells that
        # apart from an outage, in which it fails too.
        pass
    if version is None:  # completed before (RGW then answers without a version id) or gone
        with store._errors("head", key):
            try:
                h = client.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
            except bce.ClientError as e:
                if http_status(e) != 404:
                    raise
                raise NotFound(f"put {key}: upload {token['upload_id']} is gone and nothing is stored") from e
        pair = stored_checksum(h, token)
        if pair is None or pair[0] != pair[1] or h["ContentLength"] != token["size"]:
            raise NotFound(f"put {key}: upload {token['upload_id']} is gone and the stored version is another")
        version, etag = h.get("VersionId"), h["ETag"].strip('"')
    # The whole-object digest, which S3 keeps no checksum of for a multipart object.
    # Without a version id: the s3:PutObjectTagging right is enough, and this version is
    # the newest (the job holds the key).
    with store._errors("put", key):
        client.put_object_tagging(Bucket=store.bucket, Key=key,
                                  Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in
                                                      {**token["tags"], SHA256_TAG: token["sha256"]}.items()]})
    return PutResult(version, etag, token["size"], token["sha256"], checksum)


def abort(store: S3Store, key: str, upload_id: str) -> None:
    """Abort an upload (one already gone is not an error)."""
    with contextlib.suppress(NotFound), store._errors("abort", key):
        store.client.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload_id)
