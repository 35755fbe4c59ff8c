"""The manifest object: a recording's catalog row, stored beside its payload.

The catalog database is the only index of what the archive holds. So that a lost
database can be rebuilt from storage (``callvault catalog rebuild``), the archiver
writes one small JSON object per archived recording into the payload store::

    manifests/<recording_id>.json

locked like the payload (same Object Lock mode and retain-until), written after the
payload and header are stored and checked, before the row becomes ``archived``. It
holds what the row holds except the spool path, the channel name and the job's
bookkeeping: ids, the encryption manifest (digests, sizes, recipient fingerprints),
retention, consent, rule, jurisdiction, times, node, DID, agent, pause intervals and
the caller's HMAC (never a number in clear). Its SHA-256 goes into the ledger's
``archive`` entry, so a surviving ledger proves each manifest object unchanged.

Writing is idempotent: an object already there for the same payload version is kept
(a job resumed after a crash writes it exactly once); one that describes other
objects stops the job for review. A fresh job (its payload uploaded by this very
attempt) cannot find one there, and does not look. docs/storage.md has the format.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass

from storage.blobstore import BlobStore, Retention
from storage.catalog import Recording
from storage.errors import IntegrityError, NotFound, PermanentError

from .manifest import Manifest

FORMAT = "callvault-recording-manifest-v1"
PREFIX = "manifests/"
_KEY_RE = re.compile(rf"{PREFIX}([A-Za-z0-9_\-]{{1,200}})\.json\Z")
_STR = ("recording_id", "consent_id", "uniqueid", "linkedid", "caller_hmac", "did", "agent", "rule",
        "jurisdiction", "retention_class", "retention_mode", "consent_state", "node", "object_key",
        "version_id", "header_key")
_TIMES = ("started_at", "ended_at", "archived_at", "retain_until")
FIELDS = frozenset((*_STR, *_TIMES, "format", "paused", "encryption"))


def key(recording_id: str) -> str:
    return f"{PREFIX}{recording_id}.json"


def recording_id_of(object_key: str) -> str | None:
    """The recording id a manifest key names, or None when it is not one."""
    m = _KEY_RE.match(object_key)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Stored:
    """A manifest object as read back: the row it restores and its own digest."""

    rec: Recording
    manifest: Manifest
    retention_mode: str
    sha256: str


def encode(rec: Recording, m: Manifest, retention: Retention, archived_at: float) -> bytes:
    """The object for ``rec`` (a row in ``verifying``: keys, version and retain-until set)."""
    body = {name: getattr(rec, name) for name in _STR if name != "retention_mode"}
    body.update(format=FORMAT, retention_mode=retention.mode, started_at=rec.started_at,
                ended_at=rec.ended_at, archived_at=archived_at, retain_until=retention.until.timestamp(),
                paused=rec.pause_intervals, encryption=json.loads(m.to_json()))
    return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()


def decode(data: bytes, where: str) -> Stored:
    """Parse and check a manifest object read from ``where`` (its key, which must name
    the same recording). ``IntegrityError`` says what is wrong."""
    try:
        body = json.loads(data)
    except ValueError as e:
        raise IntegrityError(f"{where}: not JSON ({e})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise IntegrityError(f"{where}: not a {FORMAT} object")
    if set(body) != FIELDS:
        raise IntegrityError(f"{where}: fields {sorted(set(body) ^ FIELDS)} missing or unexpected")
    bad = [n for n in _STR if not isinstance(body[n], str)]
    bad += [n for n in _TIMES if not (type(body[n]) in (int, float) or (n == "ended_at" and body[n] is None))]
    paused = body["paused"]
    if not isinstance(paused, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(v is None or type(v) in (int, float) for v in p)
            for p in paused):
        bad.append("paused")
    if bad:
        raise IntegrityError(f"{where}: malformed fields {bad}")
    if recording_id_of(where) != body["recording_id"]:
        raise IntegrityError(f"{where}: describes recording {body['recording_id']!r}, not the one its key names")
    if body["retention_mode"] not in ("COMPLIANCE", "GOVERNANCE"):
        raise IntegrityError(f"{where}: retention_mode {body['retention_mode']!r} is not COMPLIANCE or GOVERNANCE")
    try:
        m = Manifest.from_json(json.dumps(body["encryption"]))
    except IntegrityError as e:
        raise IntegrityError(f"{where}: encryption {e}") from None
    rid = body["recording_id"]
    if (body["object_key"], body["header_key"]) != (f"rec/{rid}.age.payload", f"hdr/{rid}.age.header"):
        raise IntegrityError(f"{where}: object keys {body['object_key']!r}, {body['header_key']!r} are not "
                             "this recording's")
    rec = Recording(
        recording_id=rid, consent_id=body["consent_id"], uniqueid=body["uniqueid"], linkedid=body["linkedid"],
        channel="", spool_path="", caller_hmac=body["caller_hmac"], did=body["did"], agent=body["agent"],
        rule=body["rule"], jurisdiction=body["jurisdiction"], retention_class=body["retention_class"],
        consent_state=body["consent_state"], started_at=body["started_at"], ended_at=body["ended_at"],
        state="archived", object_key=body["object_key"], header_key=body["header_key"],
        version_id=body["version_id"], retain_until=body["retain_until"], manifest=m.to_json(),
        archived_at=body["archived_at"], paused=json.dumps(paused), node=body["node"])
    return Stored(rec, m, body["retention_mode"], hashlib.sha256(data).hexdigest())


def read(store: BlobStore, recording_id: str) -> Stored | None:
    """The stored manifest object of ``recording_id`` (checked), or None when absent."""
    k = key(recording_id)
    try:
        return decode(store.get(k), k)
    except NotFound:
        return None


def store(payload: BlobStore, rec: Recording, m: Manifest, retention: Retention, now: float, *,
          fresh: bool = False) -> Stored:
    """Write ``rec``'s manifest object (locked by ``retention``) unless one for the same
    payload version is there already; returns what is stored. ``PermanentError`` when
    the object there describes another payload. ``fresh``: the payload was uploaded by
    this very job's first attempt, so no manifest object of it can exist: not read."""
    k = key(rec.recording_id)
    there = None if fresh else read(payload, rec.recording_id)
    if there is not None:
        if (there.rec.version_id, there.manifest) != (rec.version_id, m):
            raise PermanentError(f"{k} already describes payload version {there.rec.version_id or '-'} "
                                 f"(sha256 {there.manifest.payload_sha256}); manual review needed")
        return there
    data = encode(rec, m, retention, now)
    digest = hashlib.sha256(data).hexdigest()
    # A job resumed after its retention ended stores the manifest unlocked: the payload
    # may be deleted by then too.
    payload.put(k, data, size=len(data), sha256=digest, tags={"kind": "recording-manifest"},
                retention=retention if retention.active(datetime.datetime.now(datetime.UTC)) else None)
    return decode(data, k)
