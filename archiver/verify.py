"""Verifying: the stores hold what the manifest says, then the recording is archived.

A job resumed from the catalog (a crash, a retry: anything but a fresh upload) reads
the stores back: HEAD of the payload version (size, SHA-256, retention, legal hold;
retention or hold put right where they fall short) and of the header, then the
manifest object is read before it is written, and the ledger is searched for an
``archive`` entry before one is appended. Each of those answers a question a crash
may have left open.

A fresh job (``job.uploaded``: encrypted and uploaded by this very call, on a first
attempt) asks none of them; the answers are in hand (docs/archiver.md, "Verification"):

- each PUT carried ``x-amz-checksum-sha256`` of the bytes and the service checked
  every byte against it (``BadDigest`` otherwise); the response reports that checksum
  back (``PutResult.checksum``, compared by the store) and the new version id. A
  service whose answer carries no checksum (it may not check them) gets the HEADs.
- the PUT carried the Object Lock mode and retain-until: the service applies them or
  refuses the PUT. The first fresh job of each process still reads both objects back;
  only once that shows the service honouring what the PUTs ask are the HEADs left out.
- nothing of the job was stored before this call, so there is no manifest object to
  read and no ``archive`` entry to find.

The ledger entry and the move to ``archived`` commit in one transaction, through the
group-commit writer (shared with other jobs' commits).
"""

from __future__ import annotations

import logging
from typing import Any

from storage.blobstore import Retention
from storage.catalog import Recording

from . import manifest_object
from .job import Job, Steps, Uploaded
from .manifest import Manifest

log = logging.getLogger(__name__)


class Mismatch(Exception):
    """The stores do not hold what the manifest says: upload again (a failed attempt)."""


def verify(p: Steps, job: Job) -> None:
    """Check, store the manifest object, append ledger ``archive`` and move the row to
    ``archived`` (one commit); ``Mismatch`` when the stores hold something else."""
    up: Uploaded | None = job.uploaded
    rec = job.rec if up is None else job.rec.replace(**up.changes)
    m = Manifest.from_json(rec.manifest)
    want = p.retention.retention(rec.retention_class, rec.ended_at or rec.started_at)
    if up is not None and p.puts_trusted and _answered(up):
        if rec.legal_hold:  # set while it was uploading; the new version has none
            p.archive.payload.set_legal_hold(rec.object_key, True, rec.version_id or None)
    elif _read_back(p, rec, m, want) and up is not None:
        p.puts_trusted = _answered(up)

    stored = manifest_object.store(p.archive.payload, rec, m, want, p.clock(), fresh=up is not None)
    p.hook_at("manifest", job)
    changes = dict(up.changes if up is not None else {}, state="archived", archived_at=stored.rec.archived_at,
                   lease_until=0, next_try_at=0, last_error="")
    if up is not None or not p.ledger.find(recording_id=rec.recording_id, kind="archive"):
        p.ledger.append("archive", _entry(rec, m, want, stored.sha256), call_id=rec.linkedid or None,
                        recording_id=rec.recording_id, also=p.catalog.update_op(rec.recording_id, **changes),
                        shared=True)
    else:  # appended before a crash
        p.catalog.update(rec.recording_id, **changes)
    job.rec = job.rec.replace(**changes)
    p.hook_at("verified", job)
    p.remove_local(rec)
    log.info("archive %s: archived and verified (%d bytes)", rec.recording_id, m.payload_size)


def _answered(up: Uploaded) -> bool:
    """Both PUTs answered with the checksum they sent (compared by the store) and the
    payload with its version id."""
    return up.header.checksum is not None and up.payload.checksum is not None and bool(up.payload.version_id)


def _read_back(p: Steps, rec: Recording, m: Manifest, want: Retention) -> bool:
    """HEAD both objects against the manifest (``Mismatch``), put retention and legal
    hold right where they fall short. True when nothing needed putting right."""
    info = p.archive.head(p.archive.payload, rec.object_key, rec.version_id or None)
    if info is None:
        raise Mismatch(f"{rec.object_key} version {rec.version_id} is not in the store")
    if info.size != m.payload_size or info.sha256 != m.payload_sha256:
        raise Mismatch(f"{rec.object_key}: stored {info.size} bytes sha256 {info.sha256}, "
                       f"manifest says {m.payload_size} bytes sha256 {m.payload_sha256}")
    as_asked = True
    if info.retention is None or info.retention.mode != want.mode or info.retention.until < want.until:
        log.warning("archive %s: the stored payload's retention is %s, not %s %s; setting it",
                    rec.recording_id, info.retention, want.mode, want.until.isoformat())
        p.archive.payload.set_retention(rec.object_key, want, rec.version_id or None)
        as_asked = False
    if rec.legal_hold and not info.legal_hold:
        p.archive.payload.set_legal_hold(rec.object_key, True, rec.version_id or None)
    h = p.archive.head(p.archive.headers, rec.header_key)
    if h is None or h.sha256 != m.header_sha256:
        raise Mismatch(f"{rec.header_key} is missing or does not match the manifest")
    return as_asked


def _entry(rec: Recording, m: Manifest, want: Retention, manifest_sha256: str) -> dict[str, Any]:
    return {
        "recording_id": rec.recording_id, "object_key": rec.object_key, "version_id": rec.version_id,
        "header_key": rec.header_key, "payload_sha256": m.payload_sha256,
        "payload_size": m.payload_size, "plaintext_sha256": m.plaintext_sha256,
        "plaintext_size": m.plaintext_size, "header_sha256": m.header_sha256,
        "recipients": list(m.recipient_fingerprints), "retention_class": rec.retention_class,
        "retention_mode": want.mode, "retain_until": want.until.isoformat(),
        "consent_state": rec.consent_state, "manifest_key": manifest_object.key(rec.recording_id),
        "manifest_sha256": manifest_sha256,
    }
