"""The embedded blob store: a directory tree with S3 Object Lock semantics.

On-disk layout (see docs/storage.md)::

    ROOT/callvault-blobstore.json    marker written by LocalStore.create()
    ROOT/.lock                        flock'ed around every change
    ROOT/tmp/                         puts being written, deletes being removed
    ROOT/objects/<key>/@v/<version>/data
    ROOT/objects/<key>/@v/<version>/meta.json

``@`` cannot occur in a key, so ``@v`` never collides with a key segment. A
version appears by renaming a complete, fsynced directory from ``tmp/`` into
``@v/`` and disappears by renaming it back out, so readers see a version whole
or not at all, also across a crash. Version ids are zero-padded nanosecond
timestamps plus a random suffix: the newest sorts last.

Retention and legal holds are enforced by this process only; anyone with root on
the host can still remove files. That is the difference to S3 Object Lock, and
why a regulated deployment uses the S3 store.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from storage.blobstore import (
    MIN_PART_SIZE,
    MiB,
    ObjectInfo,
    PutResult,
    Retention,
    deletion_refusal,
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
)

MARKER = "callvault-blobstore.json"
FORMAT = 1
_VERSIONS = "@v"
_VID_RE = re.compile(r"\d{20}-[0-9a-f]{8}")
_RETRYABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EBUSY}
_STALE_TMP_SECONDS = 24 * 3600


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class _FileStream:
    """Chunks of one open file region; closes the file when done or closed."""

    def __init__(self, f: BinaryIO, remaining: int, chunk_size: int):
        self._f, self._remaining, self._chunk = f, remaining, chunk_size

    def __iter__(self) -> _FileStream:
        return self

    def __next__(self) -> bytes:
        if self._remaining <= 0:
            self.close()
            raise StopIteration
        chunk = self._f.read(min(self._chunk, self._remaining))
        if not chunk:
            self.close()
            raise StopIteration
        self._remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        self._remaining = 0
        self._f.close()

    def __enter__(self) -> _FileStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore:
    """``BlobStore`` on a local filesystem. ``root`` must be made by ``LocalStore.create``."""

    def __init__(self, root: str | os.PathLike, *, part_size: int = MIN_PART_SIZE):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self.root = Path(root)
        self.part_size = part_size
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    @classmethod
    def create(cls, root: str | os.PathLike) -> LocalStore:
        """Make the layout under ``root`` (which may exist); idempotent."""
        store = cls(root)
        with store._os_errors("create store"):
            store.root.mkdir(parents=True, exist_ok=True)
            store._objects.mkdir(exist_ok=True)
            store._tmp.mkdir(exist_ok=True)
            marker = store.root / MARKER
            if not marker.exists():
                tmp = store._tmp / f"marker-{secrets.token_hex(8)}"
                _write_file(tmp, json.dumps({"format": FORMAT}).encode())
                os.replace(tmp, marker)
            _fsync_dir(store.root)
        return store

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- set-up ----------------------------------------------------------------------

    def check_setup(self) -> None:
        where = f"local blob store at {self.root}"
        if not self.root.is_dir():
            raise PermanentError(f"{where}: directory does not exist (volume not mounted? "
                                 "run `callvault storage init`)")
        try:
            marker = json.loads((self.root / MARKER).read_text())
        except (OSError, ValueError):
            raise PermanentError(f"{where}: not initialised ({MARKER} missing or unreadable; "
                                 "run `callvault storage init`)") from None
        if marker.get("format") != FORMAT:
            raise PermanentError(f"{where}: unknown layout format {marker.get('format')!r}")
        probe = self._tmp / f"probe-{secrets.token_hex(8)}"
        try:
            _write_file(probe, b"probe")
            probe.unlink()
        except OSError as e:
            raise PermanentError(f"{where}: not writable ({e.strerror})") from e
        self._sweep_tmp()

    def _sweep_tmp(self) -> None:
        # Leftovers of a crash: deletes half removed, puts never renamed into place.
        cutoff = time.time() - _STALE_TMP_SECONDS
        for entry in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if entry.name.startswith("del-") or entry.lstat().st_mtime < cutoff:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    # -- writing ---------------------------------------------------------------------

    def put(self, key: str, source: BinaryIO | bytes, *, size: int | None = None, sha256: str,
            retention: Retention | None = None, tags: dict[str, str] | None = None,
            hashed: bool = False) -> PutResult:
        """See ``BlobStore.put`` (hashes every source: nothing else checks what it writes)."""
        validate_sha256(sha256)
        if size is not None and size < 0:
            raise ValueError("size must be >= 0")
        up = self.open_upload(key, retention=retention, tags=tags)
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                view = memoryview(source)
                pieces = (view[i:i + 4 * MiB] for i in range(0, len(view), 4 * MiB))
            else:
                pieces = iter(lambda: source.read(MiB), b"")
            written = 0
            for piece in pieces:
                up.write(piece)
                written += len(piece)
            up.seal(size=written if size is None else size, sha256=sha256)
            return up.complete()
        finally:
            up.abort()

    def open_upload(self, key: str, *, size: int | None = None, retention: Retention | None = None,
                    tags: dict[str, str] | None = None, on_create=None) -> _Upload:
        """See ``BlobStore.open_upload``: the bytes go to a staging file in the store,
        renamed into place by ``complete``; nothing to resume after a crash (a staging
        file left behind is swept by ``check_setup``). ``on_create`` is never called."""
        validate_key(key)
        tags = validate_tags(tags)
        validate_new_retention(retention)
        with self._os_errors("put", key):
            staging = self._tmp / f"put-{secrets.token_hex(12)}"
            try:
                staging.mkdir()
            except FileNotFoundError:
                raise PermanentError(f"local blob store at {self.root} is not initialised") from None
            return _Upload(self, key, staging, retention, tags)

    def resume_upload(self, key: str, token: dict) -> PutResult:
        raise NotFound(f"put {key}: a local upload cannot be resumed")

    def abort_upload(self, key: str, token: dict) -> None:
        pass  # nothing outlives the process but a staging file, swept by check_setup

    def _makedirs(self, path: Path) -> None:
        # Created one level at a time so each new entry's parent is fsynced.
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir()
            _fsync_dir(d.parent)

    @staticmethod
    def _new_version_id(vdir: Path) -> str:
        existing = [n for n in os.listdir(vdir) if _VID_RE.fullmatch(n)]
        ns = time.time_ns()
        if existing:  # never sort before the newest, even if the clock stepped back
            ns = max(ns, int(max(existing)[:20]) + 1)
        return f"{ns:020d}-{secrets.token_hex(4)}"

    def delete(self, key: str, version_id: str | None = None, *,
               bypass_governance: bool = False) -> None:
        validate_key(key)
        with self._os_errors("delete", key), self._locked():
            vdir = self._versions_dir(key)
            if version_id is None:
                vids = self._version_ids(vdir)
            else:
                vids = [version_id] if _VID_RE.fullmatch(version_id) and (vdir / version_id).is_dir() else []
            metas = [(vid, self._read_meta(vdir / vid, key)) for vid in vids]
            for vid, meta in metas:  # all checked first: a refusal changes nothing
                self._check_deletable(key, vid, meta, bypass_governance)
            for vid, _ in metas:
                trash = self._tmp / f"del-{secrets.token_hex(12)}"
                os.rename(vdir / vid, trash)
                _fsync_dir(vdir)
                shutil.rmtree(trash, ignore_errors=True)
            if metas:
                self._prune(vdir)

    @staticmethod
    def _check_deletable(key: str, vid: str, meta: dict, bypass_governance: bool) -> None:
        why = deletion_refusal(_retention_from_json(meta["retention"]), meta["legal_hold"],
                               bypass_governance)
        if why:
            raise RetentionError(f"delete {key} version {vid}: {why}")

    def _prune(self, vdir: Path) -> None:
        # Remove now-empty directories up to objects/; a non-empty one ends the walk.
        d = vdir
        while d != self._objects:
            try:
                d.rmdir()
            except OSError:
                return
            _fsync_dir(d.parent)
            d = d.parent

    def set_legal_hold(self, key: str, on: bool, version_id: str | None = None) -> None:
        validate_key(key)
        with self._os_errors("set legal hold", key), self._locked():
            path = self._version_path(key, version_id)
            meta = self._read_meta(path, key)
            meta["legal_hold"] = bool(on)
            self._write_meta(path, meta)

    def set_retention(self, key: str, retention: Retention, version_id: str | None = None, *,
                      bypass_governance: bool = False) -> None:
        validate_key(key)
        validate_new_retention(retention)
        with self._os_errors("set retention", key), self._locked():
            path = self._version_path(key, version_id)
            meta = self._read_meta(path, key)
            why = retention_change_refusal(_retention_from_json(meta["retention"]), retention,
                                           bypass_governance)
            if why:
                raise RetentionError(f"set retention {key} version {path.name}: {why}")
            meta["retention"] = _retention_to_json(retention)
            self._write_meta(path, meta)

    def _write_meta(self, vpath: Path, meta: dict) -> None:
        tmp = vpath / f".meta-{secrets.token_hex(8)}"
        _write_file(tmp, json.dumps(meta).encode())
        os.replace(tmp, vpath / "meta.json")
        _fsync_dir(vpath)

    # -- reading ---------------------------------------------------------------------

    def head(self, key: str, version_id: str | None = None, *, tags: bool = True) -> ObjectInfo:
        validate_key(key)  # tags live in the same metadata file: no cost to skip
        with self._os_errors("head", key):
            path = self._version_path(key, version_id)
            meta = self._read_meta(path, key)
        return ObjectInfo(size=meta["size"], sha256=meta["sha256"], version_id=path.name,
                          retention=_retention_from_json(meta["retention"]),
                          legal_hold=meta["legal_hold"], tags=dict(meta["tags"]))

    def get(self, key: str, version_id: str | None = None,
            byte_range: tuple[int, int] | None = None) -> bytes:
        with self.open_stream(key, version_id, byte_range, chunk_size=64 * MiB) as stream:
            return b"".join(stream)

    def open_stream(self, key: str, version_id: str | None = None,
                    byte_range: tuple[int, int] | None = None, *,
                    chunk_size: int = MiB) -> _FileStream:
        validate_key(key)
        byte_range = validate_range(byte_range)
        with self._os_errors("get", key):
            path = self._version_path(key, version_id)
            try:
                f = open(path / "data", "rb")
            except FileNotFoundError:  # deleted between lookup and open
                raise NotFound(f"{key}: no such object") from None
            size = os.fstat(f.fileno()).st_size
            start, stop = byte_range or (0, size)
            start = min(start, size)
            f.seek(start)
            return _FileStream(f, min(stop, size) - start, chunk_size)

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        head, _, partial = prefix.rpartition("/")
        base = self._objects / head if head else self._objects
        keys = []
        try:
            top = [e for e in os.scandir(base) if e.name.startswith(partial) and e.name != _VERSIONS]
        except (FileNotFoundError, NotADirectoryError):
            top = []
        for entry in top:
            for dirpath, dirnames, _ in os.walk(entry.path):
                if _VERSIONS in dirnames:
                    dirnames.remove(_VERSIONS)
                    if self._version_ids(Path(dirpath) / _VERSIONS):
                        keys.append(os.path.relpath(dirpath, self._objects))
        yield from sorted(keys)

    def versions(self, key: str) -> list[str]:
        validate_key(key)
        return self._version_ids(self._versions_dir(key))

    # -- helpers ---------------------------------------------------------------------

    def _versions_dir(self, key: str) -> Path:
        return self._objects / key / _VERSIONS

    @staticmethod
    def _version_ids(vdir: Path) -> list[str]:
        try:
            return sorted((n for n in os.listdir(vdir) if _VID_RE.fullmatch(n)), reverse=True)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _version_path(self, key: str, version_id: str | None) -> Path:
        vdir = self._versions_dir(key)
        if version_id is None:
            vids = self._version_ids(vdir)
            if not vids:
                raise NotFound(f"{key}: no such object")
            return vdir / vids[0]
        if not _VID_RE.fullmatch(version_id) or not (vdir / version_id).is_dir():
            raise NotFound(f"{key}: no version {version_id!r}")
        return vdir / version_id

    @staticmethod
    def _read_meta(vpath: Path, key: str) -> dict:
        try:
            return json.loads((vpath / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"{key}: version {vpath.name} vanished") from None
        except ValueError as e:
            raise IntegrityError(f"{key}: version {vpath.name} has unreadable metadata") from e

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock on a fresh descriptor excludes other threads and other processes alike.
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _os_errors(self, op: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            what = f"{op} {key}" if key else op
            msg = f"local blob store at {self.root}: {what}: {e.strerror or e}"
            if e.errno in _RETRYABLE_ERRNOS:
                raise RetryableError(msg) from e
            raise PermanentError(msg) from e


class _Upload:
    """``LocalStore.open_upload``: hashed and written as it comes, placed by ``complete``."""

    def __init__(self, store: LocalStore, key: str, staging: Path, retention: Retention | None,
                 tags: dict[str, str]):
        self.store, self.key, self.staging = store, key, staging
        self.retention, self.tags = retention, tags
        self.h = hashlib.sha256()
        self.written = 0
        self.f: BinaryIO | None = open(staging / "data", "xb")  # noqa: SIM115 (closed by seal/abort)
        self.placed: PutResult | None = None

    def write(self, data) -> None:
        with self.store._os_errors("put", self.key):
            self.h.update(data)
            self.f.write(data)
        self.written += len(data)

    def seal(self, *, size: int, sha256: str) -> None:
        digest = self.h.hexdigest()
        if self.written != size:
            raise IntegrityError(f"put {self.key}: read {self.written} bytes, caller said {size}")
        if digest != sha256:
            raise IntegrityError(f"put {self.key}: sha256 of the data is {digest}, caller said {sha256}")
        with self.store._os_errors("put", self.key):
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            meta = {"sha256": digest, "size": self.written, "retention": _retention_to_json(self.retention),
                    "legal_hold": False, "tags": self.tags,
                    "created": datetime.datetime.now(datetime.UTC).isoformat()}
            _write_file(self.staging / "meta.json", json.dumps(meta).encode())
            _fsync_dir(self.staging)

    def complete(self) -> PutResult:
        store = self.store
        with store._os_errors("put", self.key), store._locked():
            vdir = store._versions_dir(self.key)
            store._makedirs(vdir)
            vid = store._new_version_id(vdir)
            os.rename(self.staging, vdir / vid)
            digest = self.h.hexdigest()
            self.placed = PutResult(version_id=vid, etag=digest, size=self.written, sha256=digest,
                                    checksum=digest)
            _fsync_dir(vdir)
        return self.placed

    def abort(self) -> bool:
        if self.f is not None:
            self.f.close()
        if self.placed is None:  # nothing half-written stays behind, whatever went wrong
            shutil.rmtree(self.staging, ignore_errors=True)
        return True


def _retention_to_json(retention: Retention | None) -> dict | None:
    if retention is None:
        return None
    return {"mode": retention.mode, "until": retention.until.isoformat()}


def _retention_from_json(data: dict | None) -> Retention | None:
    if data is None:
        return None
    return Retention(data["mode"], datetime.datetime.fromisoformat(data["until"]))
