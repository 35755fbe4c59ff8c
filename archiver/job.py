"""A claimed archive job as the pipeline's steps see it (archiver/pipeline.py runs the
steps; archiver/upload.py and archiver/verify.py are two of them)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from storage.age import Recipient
from storage.blobstore import PutResult
from storage.catalog import Catalog, Recording
from storage.ledger import Ledger

from .archive import Archive
from .errors import Abandoned
from .retention import RetentionPolicy

Hook = Callable[[str, Recording], None]


class Steps(Protocol):
    """What the steps use of ``archiver.pipeline.Pipeline``."""

    catalog: Catalog
    ledger: Ledger
    archive: Archive
    recipients: list[Recipient]
    work_dir: Path
    retention: RetentionPolicy
    lease_seconds: float
    hook: Hook | None
    clock: Callable[[], float]
    puts_trusted: bool

    def hook_at(self, point: str, job: Job) -> None: ...

    def remove_local(self, rec: Recording) -> None: ...


@dataclass(frozen=True)
class Uploaded:
    """A fresh upload's PUT answers, handed by the upload straight to verification,
    with the row changes the upload did not commit (keys, version, retain-until)."""

    header: PutResult
    payload: PutResult
    changes: dict[str, Any]


class Job:
    """One claimed row while a worker holds it: stop checks and lease renewal."""

    def __init__(self, pipeline: Steps, rec: Recording, stop: threading.Event | None):
        self.p, self.rec, self.stop = pipeline, rec, stop
        self.renewed = pipeline.clock()
        # Encrypted by this very call on a first attempt: nothing of it can be in the
        # stores yet (uploads happen only in 'uploading', and a redo back to
        # 'encrypting' counts an attempt), so the upload may skip its HEAD checks.
        self.fresh = False
        self.uploaded: Uploaded | None = None  # a fresh upload's PUT answers
        # A fresh job's header and payload as encrypted, still in memory (archiver/upload.py).
        self.sealed: tuple[bytes, memoryview] | None = None

    def check(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Abandoned(f"{self.rec.recording_id}: stopping")
        now = self.p.clock()
        if now - self.renewed > self.p.lease_seconds / 3:
            self.p.catalog.update(self.rec.recording_id, lease_until=now + self.p.lease_seconds)
            self.renewed = now

    def move(self, **changes) -> None:
        self.p.catalog.update(self.rec.recording_id, **changes)
        self.rec = self.rec.replace(**changes)
