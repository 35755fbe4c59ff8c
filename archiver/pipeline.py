"""One archive job, step by step, each step idempotent and resumable from the catalog.

    pending     wait until the spool file is closed (archiver/spool.py)
    encrypting  age-encrypt (a stereo ``.raw`` file as a 2-channel WAV): a payload of
                more than one part straight into a multipart upload, the header PUT
                once every part is stored (``encrypting`` committed first); a smaller
                one into two work files (header, payload) next to the spool, the row
                still ``pending`` meanwhile (archiver/upload.py). The manifest (sizes,
                SHA-256s) is committed to the catalog with the move to ``uploading``
    uploading   the streamed upload completed; or header -> header store (deletable),
                then payload -> payload store with Object Lock retention and tags, from
                the work files; skipped for an object already there with the manifest's
                SHA-256
    verifying   HEAD both objects: size and SHA-256 against the manifest, retention as
                the class says; the manifest object (archiver/manifest_object.py), locked
                like the payload; ledger ``archive`` and catalog ``archived`` in one
                commit; only then the spool file, its ``.done`` marker and the work files
                are removed. A fresh upload skips the move to ``verifying`` and the reads:
                its PUT answers are handed straight on (archiver/verify.py)

A recording flagged ``erase_requested`` is never archived: whatever was uploaded is
deleted (or crypto-shredded), the spool file unlinked, ledger ``erase``, state ``erased``.

Errors: ``RetryableError`` (storage unreachable, 5xx, throttling) -> backoff with
jitter, for as long as the outage lasts: an outage never makes a dead letter (the
archiver probes the store and retries the backlog at once when it answers again).
Integrity errors, a missing object and local I/O errors -> backoff, ``failed`` after
``max_attempts``; ``PermanentError`` -> ``failed`` at once. Blocking throughout: the
archiver runs ``process`` in a worker thread. docs/archiver.md has the why of each rule.
"""

from __future__ import annotations

import contextvars
import errno
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage import logcontext
from storage.age import Recipient
from storage.catalog import Catalog, Recording
from storage.errors import IntegrityError, NotFound, PermanentError, RetryableError
from storage.ledger import Ledger

from . import manifest_object, quarantine, spool, upload, verify
from .archive import Archive
from .errors import Abandoned
from .job import Hook, Job
from .retention import RetentionPolicy
from .upload import Redo as _Redo

log = logging.getLogger(__name__)

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")
_PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENAMETOOLONG}


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": half the delay fixed, half random."""

    base: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        d = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return d / 2 + rng() * d / 2


@dataclass(frozen=True)
class Outcome:
    kind: str  # archived | erased | waiting | retry | failed | abandoned | skipped
    detail: str = ""


def env_test_hook(point: str, rec: Recording) -> None:
    """TEST HOOK, for the kill -9 tests only (tests/archiver/test_crash_serve.py).

    With ``CALLVAULT_TEST_HOOK=point[,point...]`` and ``CALLVAULT_TEST_HOOK_DIR=DIR`` in
    the environment, a worker reaching ``point`` writes ``DIR/<point>.<recording_id>``
    and then blocks forever, so the test can SIGKILL the process right there. Points:
    ``encrypting`` (payload half written: into the work file, or streamed into a
    multipart upload), ``uploading`` (catalog says uploading; streamed: every part
    stored, the upload not completed; work files: 9/10 of the payload read by the
    store), ``uploaded`` (payload stored, catalog
    not yet told), ``manifest`` (manifest object stored, catalog not yet told),
    ``verified`` (catalog says archived, spool file not yet removed). Unset in
    production: a no-op.
    """
    points = os.environ.get("CALLVAULT_TEST_HOOK", "")
    if point not in points.split(","):
        return
    where = Path(os.environ["CALLVAULT_TEST_HOOK_DIR"])
    (where / f"{point}.{rec.recording_id}").write_text(str(os.getpid()))
    while True:
        time.sleep(3600)


class Pipeline:
    def __init__(self, *, catalog: Catalog, ledger: Ledger, archive: Archive, recipients: list[Recipient], work_dir: Path, retention: RetentionPolicy,
                 spool_rules: spool.SpoolRules = spool.DEFAULT_RULES, max_attempts: int = 8,
                 backoff: Backoff = Backoff(), lease_seconds: float = 30.0, hook: Hook | None = None,
                 clock: Callable[[], float] = time.time, rng: Callable[[], float] = random.random):
        if not recipients:
            raise ValueError("at least one recipient is needed")
        self.catalog, self.ledger = catalog, ledger
        self.archive = archive
        self.recipients = list(recipients)
        self.work_dir = Path(work_dir)
        self.retention = retention
        self.spool_rules = spool_rules
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.lease_seconds = lease_seconds
        self.hook = hook if hook is not None else (env_test_hook if os.environ.get("CALLVAULT_TEST_HOOK") else None)
        self.clock, self.rng = clock, rng
        # The service was seen to honour a fresh upload's PUTs (archiver/verify.py).
        self.puts_trusted = False

    # -- set-up ---------------------------------------------------------------------

    def check_setup(self) -> None:
        """Stores usable (``PermanentError`` says what to fix); work dir present."""
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.archive.check_setup()

    def work_files(self, recording_id: str) -> tuple[Path, ...]:
        """The job's files in the work dir (archiver/upload.py)."""
        return upload.work_files(self, recording_id)

    def hook_at(self, point: str, job: Job) -> None:
        if self.hook is not None:
            self.hook(point, job.rec)

    # -- the job --------------------------------------------------------------------

    def process(self, rec: Recording, stop: threading.Event | None = None) -> Outcome:
        """Run ``rec`` (a claimed row) as far as it can go now. Never raises for job
        failures: they become catalog state. ``stop`` set -> abandon at the next check.
        Runs in a context of its own, where the job's ids label its log lines."""
        return contextvars.copy_context().run(self._process, rec, stop)

    def _process(self, rec: Recording, stop: threading.Event | None) -> Outcome:
        logcontext.bind(linkedid=rec.linkedid, consent_id=rec.consent_id, recording_id=rec.recording_id)
        job = Job(self, rec, stop)
        # The row as claimed is current: read again only after a step that takes time
        # (encrypting, uploading), when a revoke or a hold may have landed meanwhile.
        current = True
        try:
            while True:
                job.check()
                if not current:
                    job.rec = self.catalog.get(rec.recording_id)
                current = False
                state = job.rec.state
                # A legal hold beats an erasure request: archive (held); the sweeper erases
                # once the hold is released.
                erase = job.rec.erase_requested and not job.rec.legal_hold
                if erase and state in ("pending", "encrypting", "uploading", "verifying"):
                    return self._erase(job)
                if state == "pending":
                    if not self._wait_closed(job):
                        return self._not_yet(job)
                    current = True  # 'encrypting' now (committed by a streamed encryption)
                elif state == "encrypting":
                    self._encrypt(job)
                elif state == "uploading" and job.uploaded is None:
                    self._upload(job)
                elif state in ("uploading", "verifying"):
                    return self._verify(job)
                else:
                    return Outcome("skipped", state)
        except Abandoned:
            self.catalog.update(rec.recording_id, lease_until=0)
            return Outcome("abandoned")
        except _Redo as e:
            return self._retry(job, str(e), state=e.state)
        except verify.Mismatch as e:
            return self._retry(job, str(e), state="uploading")
        except (PermanentError, ValueError) as e:  # ValueError: a key or tag the store refuses
            return self._fail(job, str(e))
        except RetryableError as e:
            return self._retry(job, str(e), outage=True)
        except (IntegrityError, NotFound) as e:
            return self._retry(job, str(e))
        except OSError as e:
            if e.errno in _PERMANENT_ERRNOS:
                return self._fail(job, f"{e.filename or ''}: {e.strerror or e}")
            return self._retry(job, f"{e.filename or ''}: {e.strerror or e}")

    def _not_yet(self, job: Job) -> Outcome:
        # Poll the file again soon; slower the longer it has been (a call that is still
        # recording after its hangup event, or an orphan waiting to settle).
        since = self.clock() - (job.rec.ended_at or job.rec.started_at)
        delay = min(10.0, max(0.2, since / 4))
        self.catalog.update(job.rec.recording_id, next_try_at=self.clock() + delay, lease_until=0)
        return Outcome("waiting", f"{delay:.1f}s")

    def _retry(self, job: Job, message: str, state: str | None = None, outage: bool = False) -> Outcome:
        attempts = job.rec.attempts + 1
        if attempts >= self.max_attempts and not outage:
            return self._fail(job, f"gave up after {attempts} attempts: {message}", attempts=attempts)
        delay = self.backoff.delay(attempts, self.rng)
        changes = {"attempts": attempts, "next_try_at": self.clock() + delay, "lease_until": 0, "last_error": message}
        if state is not None:
            changes["state"] = state
        self.catalog.update(job.rec.recording_id, **changes)
        log.warning("archive %s: attempt %d failed, retrying in %.1f s: %s",
                    job.rec.recording_id, attempts, delay, message)
        return Outcome("retry", message)

    def _fail(self, job: Job, message: str, attempts: int | None = None) -> Outcome:
        rec = job.rec
        self.catalog.update(rec.recording_id, state="failed", last_error=message, lease_until=0,
                            attempts=rec.attempts if attempts is None else attempts)
        self.ledger.append("archive.failed", {"recording_id": rec.recording_id, "from_state": rec.state,
                                              "error": message[:2000]},
                           call_id=rec.linkedid or None, recording_id=rec.recording_id)
        log.error("archive %s failed (dead letter): %s", rec.recording_id, message)
        try:
            quarantine.isolate(self.catalog, self.catalog.get(rec.recording_id))
        except OSError as e:  # the spool scan tries again
            log.error("archive %s: cannot quarantine the spool file: %s", rec.recording_id, e)
        return Outcome("failed", message)

    # -- pending: wait until the file is closed ------------------------------------------

    def _wait_closed(self, job: Job) -> bool:
        path = Path(job.rec.spool_path)
        if not path.exists():
            since = self.clock() - (job.rec.ended_at or job.rec.started_at)
            if spool.marker_for(path).exists() or since > self.spool_rules.missing_grace:
                raise PermanentError(f"spool file {path} does not exist: nothing was recorded "
                                     "(MixMonitor did not start or could not write)")
            return False
        if spool.closed(path, self.spool_rules, self.clock()):
            # Not committed here: a payload streamed into a multipart upload commits
            # ``encrypting`` before its first part (archiver/upload.py), one of a single
            # part goes from ``pending`` to ``uploading`` in one commit with its
            # manifest. A crash while it encrypts (milliseconds) leaves ``pending``,
            # which starts the same way again; its half-written work files are removed
            # before the next encryption, as after a crash in ``encrypting``.
            job.rec = job.rec.replace(state="encrypting")
            return True
        return False

    # -- encrypting and uploading (archiver/upload.py) -------------------------------------

    def _encrypt(self, job: Job) -> None:
        upload.encrypt(self, job)

    def _upload(self, job: Job) -> None:
        upload.upload(self, job)

    # -- verifying ----------------------------------------------------------------------

    def _verify(self, job: Job) -> Outcome:
        verify.verify(self, job)
        return Outcome("archived")

    def remove_local(self, rec: Recording) -> None:
        path = Path(rec.spool_path)
        # The recording before its marker: a marker left by a crash in between is
        # recognised by the spool scan (row archived/erased) and removed then.
        spool.unlink_quietly(path, spool.marker_for(path), *self.work_files(rec.recording_id))

    # -- erase instead of archive ---------------------------------------------------------

    def _erase(self, job: Job) -> Outcome:
        rec = job.rec
        path = Path(rec.spool_path)
        if path.exists() and not spool.closed(path, self.spool_rules, self.clock()):
            return self._not_yet(job)  # MixMonitor is still closing it (StopMixMonitor was sent)
        upload.abort_stale(self, rec.recording_id)  # parts of a streamed upload, never completed
        self.archive.shred(rec.recording_id)  # crypto-shred first
        payload = "none"
        if self.archive.head(self.archive.payload, Archive.payload_key(rec.recording_id)) is not None:
            try:
                self.archive.payload.delete(Archive.payload_key(rec.recording_id))
                self.archive.payload.delete(manifest_object.key(rec.recording_id))  # locked alike
                payload = "deleted"
            except PermanentError:  # locked: unreadable without its header; swept later
                payload = "locked"
        self.remove_local(rec)
        if not self.ledger.find(recording_id=rec.recording_id, kind="erase"):
            self.ledger.append("erase", {"recording_id": rec.recording_id, "reason": f"consent {rec.consent_state}",
                                         "from_state": rec.state, "spool": "unlinked", "header": "deleted",
                                         "payload": payload},
                               call_id=rec.linkedid or None, recording_id=rec.recording_id)
        locked = payload == "locked"
        until = self.retention.retention(rec.retention_class, rec.ended_at or rec.started_at).until
        # A locked payload stays listed (object_key) so the sweeper deletes it once it may.
        job.move(state="erased", lease_until=0, next_try_at=0, last_error="",
                 object_key=Archive.payload_key(rec.recording_id) if locked else "",
                 header_key=Archive.header_key(rec.recording_id) if locked else "",
                 retain_until=until.timestamp() if locked else rec.retain_until)
        return Outcome("erased")
