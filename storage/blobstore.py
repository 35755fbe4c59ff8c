"""The blob store interface: opaque keys -> immutable, versioned byte strings.

Two implementations share these semantics and one conformance suite
(``tests/storage/test_blobstore_conformance.py``): ``storage.localstore.LocalStore``
(the embedded default) and ``storage.s3store.S3Store`` (AWS S3, MinIO, Ceph RGW ...).
A store knows nothing of encryption or telephony: callers hand it bytes that are
already encrypted, under keys that are random ids.

Every method blocks (disk or network I/O); async callers run them with
``asyncio.to_thread`` and bound their own concurrency.

Semantics every store keeps:

- ``put`` never overwrites: each put makes a new version; readers without a
  version id see the newest. The caller passes the SHA-256 it computed; the store
  verifies it and refuses (``IntegrityError``, nothing left visible) on mismatch.
- ``delete(key)`` without a version id destroys *every* version of the key (not an
  S3 delete marker: erasure and retention limits need the bytes gone). It checks
  all versions first and deletes nothing if any one is protected. Deleting
  something that is not there is not an error, so a retried sweep is idempotent.
- Retention: ``COMPLIANCE`` can never be shortened nor removed, and the version
  cannot be deleted before ``until``; ``GOVERNANCE`` is the same unless the caller
  passes ``bypass_governance=True`` (and, on S3, holds that permission). A legal
  hold blocks deletion whatever the retention says.
- Errors are ``storage.errors`` kinds; a malformed key, tag set, digest or range is
  the caller's mistake and raises ``ValueError`` before any I/O.

Keys and tags are validated with S3's portable limits so a key that works on the
local store works on every S3 service. No personal data belongs in either: keys
are random ids and tags are coarse labels (policy names, dates), nothing more.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, Protocol, runtime_checkable

MiB = 1 << 20
MIN_PART_SIZE = 8 * MiB
"""Smallest multipart part the stores use (S3's own floor is 5 MiB)."""
MAX_PART_SIZE = 5 << 30  # S3's ceiling
MAX_PARTS = 10_000  # S3's ceiling

MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 255  # a path component on the local store
MAX_TAGS = 10
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256

RetentionMode = Literal["COMPLIANCE", "GOVERNANCE"]

_KEY_RE = re.compile(r"[A-Za-z0-9/_.\-]+")
_PREFIX_RE = re.compile(r"[A-Za-z0-9/_.\-]*")
# The characters every S3 service accepts in tags (AWS's documented set).
_TAG_RE = re.compile(r"[A-Za-z0-9 +\-=._:/@]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Retention:
    """Object Lock retention of one version.

    ``until`` must be timezone-aware; it is kept in UTC and rounded *up* to a
    whole second, the precision S3 services store (so a retention is never
    shorter than asked and reads back equal).
    """

    mode: RetentionMode
    until: datetime.datetime

    def __post_init__(self) -> None:
        if self.mode not in ("COMPLIANCE", "GOVERNANCE"):
            raise ValueError(f"retention mode must be COMPLIANCE or GOVERNANCE, not {self.mode!r}")
        if not isinstance(self.until, datetime.datetime) or self.until.utcoffset() is None:
            raise ValueError("retention 'until' must be a timezone-aware datetime")
        until = self.until.astimezone(datetime.UTC)
        if until.microsecond:
            until = until.replace(microsecond=0) + datetime.timedelta(seconds=1)
        object.__setattr__(self, "until", until)

    def active(self, now: datetime.datetime | None = None) -> bool:
        return (now or datetime.datetime.now(datetime.UTC)) < self.until


@dataclass(frozen=True)
class PutResult:
    version_id: str | None  # None only on an S3 bucket without versioning
    etag: str
    size: int
    sha256: str  # hex
    # The checksum the store itself reports for what it stored, in hex, once it is known
    # to agree with what was sent: the object's SHA-256 (a single put, the local store),
    # for a multipart ``put`` the SHA-256 of its part SHA-256s with "-<parts>", for a
    # streamed upload the CRC32C of the whole object or of its part CRC32Cs with
    # "-<parts>" (each part checked by the service against the checksum sent with it).
    # None when the service answered without one (it may not check checksums at all).
    # A store that reports a checksum other than what was sent raises ``IntegrityError``.
    checksum: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str | None  # hex; None only for an object this store did not write
    version_id: str | None
    retention: Retention | None
    legal_hold: bool
    tags: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class BlobStream(Protocol):
    """An iterator of byte chunks that must be closed (or used as a context manager)."""

    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> BlobStream: ...
    def __exit__(self, *exc: object) -> None: ...


class Upload(Protocol):
    """A new version in the making (``BlobStore.open_upload``)."""

    def write(self, data) -> None:
        """Take the next bytes (copied or written before returning: ``data`` may be reused)."""

    def seal(self, *, size: int, sha256: str) -> dict | None:
        """All bytes were written, ``size`` of them with the caller's ``sha256`` (taken
        from the same buffers); else ``IntegrityError``. Every byte is then held by the
        store, ready for ``complete``. The token ``resume_upload`` takes, or None when
        nothing could be resumed after a crash."""

    def complete(self) -> PutResult:
        """Make the version visible."""

    def abort(self) -> bool:
        """Drop the upload unless completed; False when the store could not be told
        (the caller keeps the token and ``abort_upload``s it later)."""


@runtime_checkable
class BlobStore(Protocol):
    """What the archiver and the retrieval tier need from a store. All methods block.

    ``part_size`` is the size of the parts a large ``put`` or ``open_upload`` is
    written in (at least ``MIN_PART_SIZE``); the archiver streams a payload of more
    than one part straight into ``open_upload``.
    """

    part_size: int

    def put(self, key: str, source: BinaryIO | bytes, *, size: int | None = None, sha256: str,
            retention: Retention | None = None, tags: dict[str, str] | None = None,
            hashed: bool = False) -> PutResult:
        """Store a new version of ``key`` from ``source`` (read to EOF, streamed).

        ``size``, when given, must match the bytes read; ``sha256`` (hex) must match
        them too, else ``IntegrityError`` and nothing becomes visible. Large sources
        are written in parts of at least ``MIN_PART_SIZE`` with bounded memory.
        ``hashed``: ``source`` is bytes in memory and ``sha256`` was taken from these
        very bytes (the encryptor's output), so a store that sends the digest for the
        service to check may skip hashing them again; a file is always hashed.
        """

    def open_upload(self, key: str, *, size: int | None = None, retention: Retention | None = None,
                    tags: dict[str, str] | None = None,
                    on_create: Callable[[dict], None] | None = None) -> Upload:
        """Start a new version of ``key`` whose bytes the caller hands over piece by
        piece while it makes them (the archiver encrypts straight into it); ``size``,
        when known, picks the part size. Nothing is visible before ``complete``.
        ``on_create(token)`` is called before the first bytes leave when the store
        keeps something server-side (S3: the multipart upload), so the caller can
        record the token and ``abort_upload`` it after a crash."""

    def resume_upload(self, key: str, token: dict) -> PutResult:
        """Complete, in another process, an upload whose ``seal`` returned ``token``
        (idempotent); ``NotFound`` when it cannot be completed (the caller starts over)."""

    def abort_upload(self, key: str, token: dict) -> None:
        """Drop the upload ``token`` names (one already gone is not an error)."""

    def head(self, key: str, version_id: str | None = None, *, tags: bool = True) -> ObjectInfo:
        """Size, SHA-256, version, retention, legal hold and (with ``tags``) tags.

        ``tags=False`` lets a store skip work only tags need (S3: a second request,
        ~50 ms on RGW, several times the HEAD); ``ObjectInfo.tags`` may then be empty.
        """

    def get(self, key: str, version_id: str | None = None,
            byte_range: tuple[int, int] | None = None) -> bytes:
        """The object's bytes, or ``data[start:stop]`` for ``byte_range=(start, stop)``.

        The range is half-open like a slice; ``stop`` past the end is clamped and a
        ``start`` at or past the end gives ``b""``.
        """

    def open_stream(self, key: str, version_id: str | None = None,
                    byte_range: tuple[int, int] | None = None, *,
                    chunk_size: int = MiB) -> BlobStream:
        """Like ``get`` but yields chunks; ``NotFound`` is raised here, not on first read."""

    def delete(self, key: str, version_id: str | None = None, *,
               bypass_governance: bool = False) -> None: ...

    def set_legal_hold(self, key: str, on: bool, version_id: str | None = None) -> None: ...

    def set_retention(self, key: str, retention: Retention, version_id: str | None = None, *,
                      bypass_governance: bool = False) -> None:
        """Extend retention. Shortening or weakening COMPLIANCE raises ``RetentionError``;
        shortening GOVERNANCE needs ``bypass_governance``."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys (with a readable current version) starting with ``prefix``, sorted."""

    def versions(self, key: str) -> list[str]:
        """Every stored version id of ``key`` (delete markers included), newest first
        where the store knows the order; ``[]`` when nothing of ``key`` is left."""

    def check_setup(self) -> None:
        """Raise ``PermanentError`` saying what to fix when the store cannot work."""

    def close(self) -> None: ...


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError("blob key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key longer than {MAX_KEY_LENGTH} characters")
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"blob key {key!r} has characters outside [A-Za-z0-9/_.-]")
    if ".." in key:
        raise ValueError(f"blob key {key!r} contains '..'")
    for segment in key.split("/"):
        if segment in ("", "."):
            raise ValueError(f"blob key {key!r} has an empty or '.' path segment")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise ValueError(f"blob key {key!r} has a segment longer than {MAX_SEGMENT_LENGTH}")
    return key


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"blob key prefix {prefix!r} is not valid")
    if ".." in prefix or prefix.startswith("/") or "//" in prefix:
        raise ValueError(f"blob key prefix {prefix!r} is not valid")
    return prefix


def validate_tags(tags: dict[str, str] | None) -> dict[str, str]:
    tags = dict(tags or {})
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError("tag keys and values must be strings")
        if not 1 <= len(k) <= MAX_TAG_KEY:
            raise ValueError(f"tag key {k!r} must be 1..{MAX_TAG_KEY} characters")
        if len(v) > MAX_TAG_VALUE:
            raise ValueError(f"tag {k!r}: value longer than {MAX_TAG_VALUE} characters")
        if not _TAG_RE.fullmatch(k) or not _TAG_RE.fullmatch(v):
            raise ValueError(f"tag {k!r}: only letters, digits, spaces and + - = . _ : / @ are portable")
        if k.lower().startswith("aws:"):
            raise ValueError(f"tag key {k!r}: the 'aws:' prefix is reserved")
    return tags


def validate_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lower-case hex characters")
    return sha256


def validate_range(byte_range: tuple[int, int] | None) -> tuple[int, int] | None:
    if byte_range is None:
        return None
    start, stop = byte_range
    if not (isinstance(start, int) and isinstance(stop, int)) or start < 0 or stop <= start:
        raise ValueError(f"byte_range must be (start, stop) with 0 <= start < stop, got {byte_range!r}")
    return start, stop


def validate_new_retention(retention: Retention | None) -> Retention | None:
    """A retention given to ``put`` must lie in the future (S3 refuses a past date)."""
    if retention is not None and not retention.active():
        raise ValueError(f"retention until {retention.until.isoformat()} is not in the future")
    return retention


def part_size_for(size: int | None, part_size: int) -> int:
    """Grow the part size when a known size would need more than S3's 10,000 parts."""
    if size is None or size <= part_size * 10_000:
        return part_size
    return math.ceil(size / 10_000 / MiB) * MiB


def read_full(source: BinaryIO, n: int) -> bytes | bytearray:
    """Read up to ``n`` bytes, fewer only at EOF (``read`` may return short counts).

    Reads straight into one buffer when the source has ``readinto``, so a part
    costs its own size in memory and no more.
    """
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        buf = bytearray(n)
        view = memoryview(buf)
        pos = 0
        while pos < n:
            got = readinto(view[pos:])
            if not got:
                break
            pos += got
        view.release()
        del buf[pos:]
        return buf
    chunks: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = source.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def deletion_refusal(retention: Retention | None, legal_hold: bool,
                     bypass_governance: bool) -> str | None:
    """Why a version may not be deleted now, or None. The one rule both stores apply."""
    if legal_hold:
        return "under legal hold"
    if retention is None or not retention.active():
        return None
    if retention.mode == "GOVERNANCE" and bypass_governance:
        return None
    return f"{retention.mode} retention until {retention.until.isoformat()}"


def retention_change_refusal(current: Retention | None, new: Retention,
                             bypass_governance: bool) -> str | None:
    """Why ``current`` may not become ``new``, or None (S3 Object Lock's rules)."""
    if current is None or not current.active():
        return None
    shorter = new.until < current.until
    if current.mode == "COMPLIANCE" and (shorter or new.mode != "COMPLIANCE"):
        return f"COMPLIANCE retention until {current.until.isoformat()} cannot be shortened or weakened"
    if current.mode == "GOVERNANCE" and shorter and not bypass_governance:
        return "shortening GOVERNANCE retention needs bypass_governance"
    return None
