"""Retention classes, the retention sweeper and legal holds.

A recording's ``retention_class`` (from the consent rule) names a rule
``MODE:AMOUNTunit``: Object Lock mode and how long from the end of the call.
Built in: ``default = COMPLIANCE:90d`` and ``legal = COMPLIANCE:5y``; configured
entries (``"class=MODE:AMOUNT[smhdy]"``) override or add. Years are calendar years.
The classes live in :mod:`storage.retention_classes` (the config check parses them
without importing the archiver); they are re-exported here.

The sweeper (run by the archiver every ``retention_interval`` and safe to run from
anywhere: every action is idempotent) disposes of:

- archived recordings past ``retain_until``;
- archived recordings flagged ``erase_requested`` (revocation or erasure after archiving);
- erased recordings whose locked payload outlived the shred, once the lock allows.

Disposal deletes the payload version, its manifest object and the header. When the payload is still
locked, only the header is deleted (crypto-shredding: the wrapped file key is gone,
the ciphertext is noise) and the payload is deleted by a later sweep once its lock
ends. A legal hold, in the catalog or on the stored version, blocks both. Every
action is written to the ledger: ``retention.delete``, ``retention.shred``, ``erase``,
``legal_hold.set``, ``legal_hold.release``.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field

from storage.catalog import Catalog, Recording
from storage.errors import PermanentError, RetentionError, StorageError
from storage.ledger import Ledger
from storage.retention_classes import RetentionPolicy, RetentionRule  # noqa: F401 (re-exported)

from . import manifest_object
from .archive import Archive

log = logging.getLogger(__name__)

@dataclass
class SweepResult:
    deleted: list[str] = field(default_factory=list)
    shredded: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Planned:
    """What a sweep would do to one recording (``RetentionSweeper.plan``).

    ``action``: ``delete`` (payload, manifest object and header go), ``shred`` (the
    payload is still locked: only the header goes), ``held`` (a legal hold on the stored
    version: nothing happens) or ``wait`` (already shredded; its payload is still locked)."""

    recording_id: str
    why: str  # retention | erase | leftover
    action: str
    retention_class: str
    retain_until: float | None
    payload_locked_until: datetime.datetime | None


class RetentionSweeper:
    """Blocking; run it in a thread from async code."""

    def __init__(self, catalog: Catalog, ledger: Ledger, archive: Archive, *, clock=time.time):
        self.catalog, self.ledger, self.archive = catalog, ledger, archive
        self.clock = clock

    def sweep(self, now: float | None = None) -> SweepResult:
        now = self.clock() if now is None else now
        result = SweepResult()
        for rec, why in self.catalog.retention_due(now):
            try:
                self._dispose(rec, why, result)
            except StorageError as e:  # one bad object must not stop the sweep
                log.warning("retention: %s: %s", rec.recording_id, e)
                result.errors.append(f"{rec.recording_id}: {e}")
        return result

    def plan(self, now: float | None = None, limit: int | None = None) -> list[Planned]:
        """A dry run: what :meth:`sweep` would do next, in the order it would, from the
        same selection; reads the stored payload versions' holds and locks, changes nothing."""
        now = self.clock() if now is None else now
        lock_now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)  # what the store enforces
        out = []
        for rec, why in self.catalog.retention_due(now)[:limit]:
            info = self.archive.head(self.archive.payload, rec.object_key, rec.version_id or None) \
                if rec.object_key else None
            lock = info.retention.until if info is not None and info.retention is not None else None
            locked = lock is not None and lock > lock_now
            if info is not None and info.legal_hold:
                action = "held"
            elif why == "leftover":
                action = "wait" if locked else "delete"
            else:
                action = "shred" if locked else "delete"
            out.append(Planned(rec.recording_id, why, action, rec.retention_class, rec.retain_until,
                               lock if locked else None))
        return out

    def _dispose(self, rec: Recording, why: str, result: SweepResult) -> None:
        rid = rec.recording_id
        if self.archive.held(rec):
            result.held.append(rid)
            return
        payload_gone = True
        if rec.object_key:
            try:
                self.archive.payload.delete(rec.object_key, rec.version_id or None)
                # Its manifest object is locked alike: it goes with the payload.
                self.archive.payload.delete(manifest_object.key(rid))
            except RetentionError as e:
                payload_gone = False
                lock = str(e)
        if why == "leftover":
            if payload_gone:  # the shred happened earlier; now the ciphertext goes too
                self._record("retention.delete", rec, {"payload": "deleted", "header": "already deleted"})
                self.catalog.update(rid, object_key="", version_id="")
                result.deleted.append(rid)
            return
        if rec.header_key:
            self.archive.shred(rid, rec.header_key)
        body = {"payload": "deleted" if payload_gone else "locked", "header": "deleted",
                "reason": "retention period ended" if why == "retention" else "erasure requested"}
        if not payload_gone:
            body["payload_lock"] = lock
        kind = "erase" if why == "erase" else ("retention.delete" if payload_gone else "retention.shred")
        self._record(kind, rec, body)
        self.catalog.update(rid, state="erased", object_key="" if payload_gone else rec.object_key,
                            version_id="" if payload_gone else rec.version_id)
        (result.deleted if payload_gone else result.shredded).append(rid)

    def _record(self, kind: str, rec: Recording, extra: dict) -> None:
        body = {"recording_id": rec.recording_id, "object_key": rec.object_key, "version_id": rec.version_id,
                "header_key": rec.header_key, "retention_class": rec.retention_class,
                "retain_until": _iso(rec.retain_until), **extra}
        self.ledger.append(kind, body, call_id=rec.linkedid or None, recording_id=rec.recording_id)

    def set_legal_hold(self, recording_id: str, on: bool, actor: str) -> Recording:
        """Place or release a legal hold: on the stored payload version (the store then
        refuses deletion) and in the catalog (the sweeper and the pipeline honour it)."""
        if not actor:
            raise ValueError("a legal hold needs an actor (who placed or released it)")
        rec = self.catalog.get(recording_id)
        if rec.state == "erased" and not rec.object_key:
            raise PermanentError(f"recording {recording_id} was erased; there is nothing to hold")
        self.archive.set_legal_hold(rec, on)
        self.catalog.update(recording_id, legal_hold=1 if on else 0)
        self.ledger.append("legal_hold.set" if on else "legal_hold.release",
                           {"recording_id": recording_id, "actor": actor, "object_key": rec.object_key,
                            "version_id": rec.version_id, "state": rec.state},
                           call_id=rec.linkedid or None, recording_id=recording_id)
        return self.catalog.get(recording_id)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat()
