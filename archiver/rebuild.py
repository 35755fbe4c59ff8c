"""The catalog rebuilt from storage: recording rows from the manifest objects.

Each manifest object (archiver/manifest_object.py) is read and checked against the
objects it describes: the payload version must be there with the manifest's size and
SHA-256 (else the recording is reported, not restored); the header decides the state
(present: ``archived``; gone: ``erased``, crypto-shredded; its digest is checked by
``recordings verify`` and every decryption); the payload version's legal hold is
taken over. A payload
without a manifest object is reported too: its catalog facts are lost. When the
database still holds a ledger, each restored row is also checked against its
``archive`` entry (the manifest object's SHA-256 and the digests there).

Everything here blocks and reads only; ``callvault catalog rebuild`` writes the rows.
The stores are read by a few threads at once: each recording costs two round trips
(GET of its manifest object, HEAD of its payload version), the headers one listing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from storage.catalog import Recording
from storage.errors import IntegrityError, NotFound
from storage.ledger import Ledger

from . import manifest_object
from .archive import Archive
from .manifest import Manifest

Progress = Callable[[int, int], None]


@dataclass
class Found:
    """What the stores say: rows to restore and what could not be restored, and why."""

    rows: list[Recording] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    manifests: int = 0
    digests: dict[str, str] = field(default_factory=dict)  # recording id -> manifest object SHA-256

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.rows)

    @property
    def held(self) -> int:
        return sum(r.legal_hold for r in self.rows)


def _restore(archive: Archive, key: str, headers: set[str]) -> tuple[Recording | None, str]:
    """One manifest object: (row, its SHA-256) or (None, what is wrong)."""
    try:
        stored = manifest_object.decode(archive.payload.get(key), key)
    except IntegrityError as e:
        return None, f"TAMPERED: {e}"
    except NotFound:
        return None, f"MISSING: {key} was listed but cannot be read"
    rec, m = stored.rec, stored.manifest
    payload = archive.head(archive.payload, rec.object_key, rec.version_id or None)
    if payload is None:
        return None, f"MISSING: {key} names payload {rec.object_key} version {rec.version_id or '-'}, not in the store"
    if payload.size != m.payload_size or payload.sha256 != m.payload_sha256:
        return None, (f"MISMATCH: {rec.object_key} has {payload.size} bytes sha256 {payload.sha256}, "
                      f"{key} says {m.payload_size} bytes sha256 {m.payload_sha256}")
    state = "archived" if rec.header_key in headers else "erased"
    return rec.replace(state=state, legal_hold=int(payload.legal_hold)), stored.sha256


def scan(archive: Archive, *, workers: int = 8, progress: Progress | None = None,
         every: float = 2.0, clock: Callable[[], float] = time.monotonic) -> Found:
    """Read every manifest object in the payload store; ``progress(done, total)`` is
    called at most every ``every`` seconds and once at the end."""
    keys = [k for k in archive.payload.list(manifest_object.PREFIX) if manifest_object.recording_id_of(k)]
    # One listing instead of a HEAD each: a header's presence is all the state needs
    # (its digest is checked by `recordings verify` and by every decryption).
    headers = set(archive.headers.list("hdr/"))
    found = Found(manifests=len(keys))
    last = clock()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rebuild") as pool:
        for done, (rec, said) in enumerate(pool.map(lambda k: _restore(archive, k, headers), keys), 1):
            if rec is not None:
                found.rows.append(rec)
                found.digests[rec.recording_id] = said
            else:
                found.problems.append(said)
            if progress is not None and (clock() - last >= every or done == len(keys)):
                progress(done, len(keys))
                last = clock()
    described = {k.rsplit("/", 1)[-1].removesuffix(".json") for k in keys}
    for k in archive.payload.list("rec/"):
        rid = k.removeprefix("rec/").removesuffix(".age.payload")
        if rid not in described:
            found.problems.append(f"NO MANIFEST: payload {k} has no manifest object; its catalog facts are lost "
                                  "(the ledger's archive entry, if kept, names it)")
    return found


def against_ledger(found: Found, ledger: Ledger) -> None:
    """Drop the rows whose manifest object differs from what the ledger's ``archive``
    entry recorded (reported as tampered). Rows without an entry are kept."""
    entries = {e.recording_id: e.data for e in ledger.find(kind="archive") if e.recording_id}
    if not entries:
        return
    kept = []
    for rec in found.rows:
        want = entries.get(rec.recording_id)
        problem = None if want is None else _differs(rec, found.digests[rec.recording_id], want)
        if problem:
            found.problems.append(f"TAMPERED: {manifest_object.key(rec.recording_id)}: {problem}")
        else:
            kept.append(rec)
    found.rows = kept


def _differs(rec: Recording, sha256: str, entry: dict) -> str | None:
    if entry.get("manifest_sha256") not in (None, sha256):
        return f"sha256 {sha256} differs from the ledger's {entry['manifest_sha256']}"
    m = Manifest.from_json(rec.manifest)
    for name, have in (("version_id", rec.version_id), ("payload_sha256", m.payload_sha256),
                       ("header_sha256", m.header_sha256), ("plaintext_sha256", m.plaintext_sha256)):
        if entry.get(name) != have:
            return f"{name} {have} differs from the ledger's {entry.get(name)}"
    return None


def batches(rows: list[Recording], size: int = 500) -> Iterator[list[Recording]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]
