"""The ``encrypting`` and ``uploading`` steps of one archive job (archiver/pipeline.py).

Two ways, by the payload's size (known before encrypting: ``payload_size_for``):

* **Streamed** (a payload of more than one part of the payload store): encrypted straight
  into a multipart upload (``BlobStore.open_upload``), the encryption and the network side
  by side, no work file. The upload id goes to ``<id>.upload`` in the work dir (fsynced)
  before the first part. When every part is stored: the header is PUT (a stored payload
  always has its header stored already), the token (part checksums) is written, the catalog
  moves to ``uploading`` with the manifest, and only then is the upload completed.
* **Work files** (one part or less): the header and payload are written next to the spool,
  the catalog moves to ``uploading``, then the header and the payload are PUT, each in one
  request. A retry after an outage sends the same bytes again.

Crash-resume: a job killed while streaming (catalog ``encrypting``) aborts the recorded
upload when it runs again and starts over with a fresh encryption; nothing of the first
attempt was visible, not even its header. A job killed after the move to ``uploading``
completes the stored parts from the token (``resume_upload``), or finds them completed.
docs/archiver.md has the why.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import BinaryIO

from storage.age import Encryptor, payload_size_for
from storage.blobstore import MiB, PutResult, Retention, part_size_for
from storage.errors import IntegrityError, NotFound, PermanentError

from . import intake, spool
from .archive import Archive
from .job import Job, Steps, Uploaded
from .manifest import Manifest

log = logging.getLogger(__name__)

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")
# Pairs of 1 MiB buffers the encryption of a streamed payload seals into: few, as the
# upload's part buffers are the queue here (docs/performance.md).
STREAM_BLOCKS = 2
# Buffers a fresh small payload is kept in for its PUT, kept for the next job: faulting
# in a fresh 1 MB buffer costs about 1 ms of CPU, a tenth of archiving a one-minute
# recording (docs/performance.md). Two (the default workers), of up to 4 MiB (about
# four minutes of mono audio); ciphertext only, so nothing to wipe.
KEEP_BUFFERS, KEEP_BYTES = 2, 4 * MiB
_kept: list[bytearray] = []
_kept_lock = threading.Lock()


class Redo(Exception):
    """Go back to an earlier state (counted as a failed attempt)."""

    def __init__(self, state: str, message: str):
        super().__init__(message)
        self.state = state


class _Reader:
    """A file for ``BlobStore.put`` that honours stop requests and renews the lease."""

    def __init__(self, f: BinaryIO, job: Job, hook_at: int | None, hook):
        self.f, self.job, self.sent = f, job, 0
        self.hook_at, self.hook = hook_at, hook

    def read(self, n: int = -1) -> bytes:
        self.job.check()
        data = self.f.read(n)
        self._count(len(data))
        return data

    def readinto(self, buf) -> int:
        # Lets the store read each part straight into a buffer it reuses.
        self.job.check()
        got = self.f.readinto(buf) or 0
        self._count(got)
        return got

    def _count(self, n: int) -> None:
        self.sent += n
        if self.hook_at is not None and self.sent >= self.hook_at:
            self.hook_at = None
            self.hook()


def work_files(p: Steps, recording_id: str) -> tuple[Path, Path, Path]:
    """Header, payload (the work-file way) and the upload token (the streamed way)."""
    w = p.work_dir
    return w / f"{recording_id}.header", w / f"{recording_id}.payload", w / f"{recording_id}.upload"


def abort_stale(p: Steps, recording_id: str) -> None:
    """Abort the upload an earlier attempt left (its token file), then forget it. A store
    error propagates: the token stays, for the next attempt."""
    token_path = work_files(p, recording_id)[2]
    try:
        token = json.loads(token_path.read_text())
    except FileNotFoundError:
        return
    except (ValueError, UnicodeDecodeError):
        token = None  # torn by a power cut before its fsync: nothing to abort by
    if isinstance(token, dict):
        p.archive.payload.abort_upload(Archive.payload_key(recording_id), token)
    spool.unlink_quietly(token_path)


def _write_token(path: Path, token: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as f:
        json.dump(token, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _placement(p: Steps, job: Job) -> tuple[Retention, dict[str, str]]:
    rec = job.rec
    retention = p.retention.retention(rec.retention_class, rec.ended_at or rec.started_at)
    if retention.until.timestamp() <= p.clock() + 1:
        raise PermanentError(f"retention class {rec.retention_class!r} ended at "
                             f"{retention.until.isoformat()} before the recording could be archived")
    tags = {"retention": rec.retention_class, "consent": rec.consent_state, "jurisdiction": rec.jurisdiction}
    return retention, {k: _TAG_UNSAFE.sub("_", v)[:256] for k, v in tags.items()}


# -- encrypting ------------------------------------------------------------------------

def encrypt(p: Steps, job: Job) -> None:
    rid = job.rec.recording_id
    hdr, pay, token = work_files(p, rid)
    abort_stale(p, rid)
    # An earlier attempt's; never uploaded.
    spool.unlink_quietly(hdr, pay, hdr.with_name(hdr.name + ".part"), pay.with_name(pay.name + ".part"))
    p.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A stereo spool file becomes a 2-channel WAV on the way in (archiver/intake.py).
    with intake.plaintext(Path(job.rec.spool_path)) as (size, src):
        payload_size = payload_size_for(size)
        if payload_size > part_size_for(payload_size, p.archive.payload.part_size):
            # Seconds of work, shown as such in the queue figures; a single part's
            # encryption (milliseconds) commits nothing before the move to ``uploading``.
            job.move(state="encrypting")
            _stream(p, job, src, payload_size, token)
        else:
            _to_work_files(p, job, src, payload_size, hdr, pay)


def _progress(p: Steps, job: Job, payload_size: int, flush=None):
    hooked = False

    def progress(written: int) -> None:
        nonlocal hooked
        if not hooked and written >= payload_size // 2:
            hooked = True
            if flush is not None:
                flush()
            p.hook_at("encrypting", job)
        job.check()

    return progress


def _stream(p: Steps, job: Job, src: BinaryIO, payload_size: int, token_path: Path) -> None:
    rec = job.rec
    hkey, pkey = Archive.header_key(rec.recording_id), Archive.payload_key(rec.recording_id)
    retention, tags = _placement(p, job)
    enc = Encryptor(p.recipients)
    up = p.archive.payload.open_upload(pkey, size=payload_size, retention=retention, tags=tags,
                                       on_create=lambda t: _write_token(token_path, t))
    committed, sealed = False, None
    try:
        enc.encrypt_to(src, up.write, progress=_progress(p, job, payload_size), blocks=STREAM_BLOCKS)
        m = Manifest.of(enc.summary)
        sealed = up.seal(size=m.payload_size, sha256=m.payload_sha256)
        job.check()
        # The header before the payload can become visible; a new version on top of any
        # an earlier attempt stored (the pbx role may not delete; erasure removes all).
        header_put = p.archive.headers.put(hkey, enc.header, size=len(enc.header), sha256=m.header_sha256)
        if sealed is not None:
            _write_token(token_path, sealed)
        job.move(state="uploading", manifest=m.to_json())
        committed = True
        p.hook_at("uploading", job)
        result = up.complete()
    except BaseException:
        # Before the move: nothing of this attempt may become visible. After it, the
        # stored parts are kept for ``upload`` to complete, if the store can resume.
        if (not committed or sealed is None) and up.abort():
            spool.unlink_quietly(token_path)
        raise
    spool.unlink_quietly(token_path)
    job.fresh = job.rec.attempts == 0
    _stored(p, job, result, retention, header_put)


def _to_work_files(p: Steps, job: Job, src: BinaryIO, payload_size: int, hdr: Path, pay: Path) -> None:
    hdr_part, pay_part = hdr.with_name(hdr.name + ".part"), pay.with_name(pay.name + ".part")
    enc = Encryptor(p.recipients)
    # The payload is also kept in memory, for this call's upload: sent from there, it is
    # neither read back from the file nor hashed again (the digest is taken from these
    # very bytes). The work files are what a resumed job uploads from.
    kept = _buffer(payload_size)
    pos = 0
    try:
        with open(pay_part, "xb") as out:
            def write(piece: memoryview) -> None:
                nonlocal pos
                out.write(piece)
                end = pos + len(piece)
                if end <= payload_size:
                    kept[pos:end] = piece
                pos = end

            enc.encrypt_to(src, write, progress=_progress(p, job, payload_size, out.flush))
        m = Manifest.of(enc.summary)
        with open(hdr_part, "xb") as out:
            out.write(enc.header)
        # No fsync: every later use checks the manifest's SHA-256, and a work file lost
        # or torn by a power cut is simply made again (docs/archiver.md).
        os.replace(hdr_part, hdr)
        os.replace(pay_part, pay)
    except BaseException:
        spool.unlink_quietly(hdr_part, pay_part)
        _give_back(kept)
        raise
    try:
        job.move(state="uploading", manifest=m.to_json())
    except BaseException:
        _give_back(kept)
        raise
    job.fresh = job.rec.attempts == 0
    if job.fresh and pos == payload_size == m.payload_size:
        job.sealed = (enc.header, kept)
    else:
        _give_back(kept)


def _buffer(size: int) -> memoryview:
    """``size`` bytes to keep a payload in: a kept buffer when one is large enough."""
    with _kept_lock:
        for i, buf in enumerate(_kept):
            if len(buf) >= size:
                return memoryview(_kept.pop(i))[:size]
    return memoryview(bytearray(-(-size // MiB) * MiB))[:size]  # whole MiBs: fits the next one too


def _give_back(view: memoryview) -> None:
    buf = view.obj
    view.release()
    if isinstance(buf, bytearray) and len(buf) <= KEEP_BYTES:
        with _kept_lock:
            if len(_kept) < KEEP_BUFFERS:
                _kept.append(buf)


# -- uploading --------------------------------------------------------------------------

def upload(p: Steps, job: Job) -> None:
    """Store what the manifest says: from the work files, or by completing the streamed
    upload an earlier run sealed."""
    rec = job.rec
    m = Manifest.from_json(rec.manifest)
    hkey, pkey = Archive.header_key(rec.recording_id), Archive.payload_key(rec.recording_id)
    if job.sealed is not None:
        return _upload_sealed(p, job, m, hkey, pkey)
    hdr, pay, token_path = work_files(p, rec.recording_id)
    have_work = hdr.exists() and pay.exists() and pay.stat().st_size == m.payload_size
    retention, tags = None, None

    # The header first: a stored payload always has its header stored already.
    h = None if job.fresh else p.archive.head(p.archive.headers, hkey)
    header_put = None
    if h is None or h.sha256 != m.header_sha256:
        if not have_work:
            raise Redo("encrypting", "work files are gone before the upload finished; encrypting again")
        # One left by an earlier encryption whose payload never got stored wraps a key
        # to nothing; the new header goes on top as a new version.
        if h is not None and p.archive.head(p.archive.payload, pkey) is not None:
            raise PermanentError(f"{pkey} exists but {hkey} does not match the manifest; manual review needed")
        with open(hdr, "rb") as f:
            try:
                header_put = p.archive.headers.put(hkey, f, size=hdr.stat().st_size, sha256=m.header_sha256)
            except IntegrityError as e:
                raise Redo("encrypting", f"header work file does not match the manifest: {e}") from e
    job.check()

    stored = None if job.fresh else p.archive.head(p.archive.payload, pkey)
    if stored is not None and stored.sha256 == m.payload_sha256 and stored.size == m.payload_size:
        _stored(p, job, PutResult(stored.version_id, "", stored.size, m.payload_sha256), None, None)
        return  # stored before a crash; not again
    if stored is not None and stored.sha256 is not None:
        raise PermanentError(f"{pkey} already holds other content (sha256 {stored.sha256}); manual review needed")
    retention, tags = _placement(p, job)
    if have_work:
        with open(pay, "rb", buffering=0) as f:
            reader = _Reader(f, job, m.payload_size * 9 // 10 if p.hook else None, lambda: p.hook_at("uploading", job))
            try:
                result = p.archive.payload.put(pkey, reader, size=m.payload_size, sha256=m.payload_sha256,
                                               retention=retention, tags=tags)
            except IntegrityError as e:
                raise Redo("encrypting", f"payload work file does not match the manifest: {e}") from e
    else:
        try:
            token = json.loads(token_path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            token = None
        if not isinstance(token, dict) or token.get("sha256") != m.payload_sha256:
            raise Redo("encrypting", "the payload upload cannot be completed (no token); encrypting again")
        try:
            result = p.archive.payload.resume_upload(pkey, token)
        except NotFound as e:  # the token stays: encrypting aborts what it names first
            raise Redo("encrypting", f"the payload upload cannot be completed ({e}); encrypting again") from e
        spool.unlink_quietly(token_path)
    _stored(p, job, result, retention, header_put)


def _upload_sealed(p: Steps, job: Job, m: Manifest, hkey: str, pkey: str) -> None:
    """A fresh job's header, then payload, from memory: nothing of it can be stored yet,
    so no HEAD first. A digest mismatch (the service's ``BadDigest``) is not possible
    for bytes hashed in memory; any other failure retries from the work files."""
    assert job.sealed is not None
    header, payload = job.sealed
    job.sealed = None  # a retry (not fresh) uploads from the work files
    try:
        header_put = p.archive.headers.put(hkey, header, size=len(header), sha256=m.header_sha256, hashed=True)
        job.check()
        retention, tags = _placement(p, job)
        p.hook_at("uploading", job)  # where a work-file upload has read 9/10 of the payload
        job.check()
        result = p.archive.payload.put(pkey, payload, size=m.payload_size, sha256=m.payload_sha256,
                                       retention=retention, tags=tags, hashed=True)
    finally:
        _give_back(payload)  # the PUT has returned: nothing holds on to the bytes
    _stored(p, job, result, retention, header_put)


def _stored(p: Steps, job: Job, result: PutResult, retention: Retention | None,
            header_put: PutResult | None) -> None:
    """The payload is stored: on to verification. A fresh job (both PUTs made by this
    call) hands their answers straight on (archiver/verify.py); any other commits the
    move to ``verifying``, whose reads answer what a crash may have left open."""
    rec = job.rec
    if retention is None:
        retention = p.retention.retention(rec.retention_class, rec.ended_at or rec.started_at)
    p.hook_at("uploaded", job)
    changes = {"object_key": Archive.payload_key(rec.recording_id),
               "header_key": Archive.header_key(rec.recording_id), "version_id": result.version_id or "",
               "retain_until": retention.until.timestamp()}
    if job.fresh and header_put is not None:
        job.uploaded = Uploaded(header_put, result, changes)
    else:
        job.move(state="verifying", **changes)
