"""The archiver as the appliance runs it: intake, spool scan, workers, retention sweeps.

Intake, three ways, all idempotent (``Catalog.mark_ended`` queues a row once):

- ``recording_ended(uniqueid=..)``: the appliance calls it on AMI ``Hangup`` and
  ``MixMonitorStop`` (MixMonitorStop alone is not enough: a MixMonitor still running
  at hangup raises none). Rows of that channel in state ``recording`` -> ``pending``.
- the spool scan, at start and every ``scan_interval``: ``.done`` markers and closed
  files whose row still says ``recording`` (missed events, a restart), files without
  a row (adopted from the ledger, see ``_adopt``), leftovers of a crash after the
  catalog said archived/erased (removed), rows that never got a file.
- ``wake()``: new work is picked up now instead of at the next due time.

Workers are asyncio tasks; each claims a row (lease) and runs ``Pipeline.process`` in one
thread, so at most ``workers`` jobs (encryption, boto3, file I/O) run at once.
``stop()`` asks running jobs to abandon at their next check (lease released, state
kept): everything resumes on the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storage.catalog import ACTIVE, Catalog, Recording
from storage.entries import ConsentBody, RevokeBody
from storage.errors import NotFound, PermanentError, RetryableError, StorageError
from storage.ledger import Ledger
from storage.spool_names import DONE_SUFFIX, RECORDING_ID_RE

from . import quarantine, spool
from .errors import SetupError
from .pipeline import Outcome, Pipeline
from .retention import RetentionSweeper

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = spool.RECORDING_SUFFIXES
NO_FILE_AFTER = 300.0  # a row still 'recording' this long with no file at all: MixMonitor never wrote
# Queue figures after an archived job: at most this often (each count reads every active
# row, so counting after each job of a large backlog would cost the backlog squared).
COUNT_EVERY = 1.0
STALE_WORK = 86400.0
# A hang-up whose done marker is not there yet: first look at the file this much later.
# MixMonitor's post-command ran within it for every recording of 30 real lab calls,
# 1-8 ms after the Hangup event had found the marker missing (python -m bench calls).
FIRST_LOOK = 0.2


@dataclass
class ArchiverStats:
    running: bool = False
    spool_files: int = 0
    last_scan: float = 0.0
    scans: int = 0
    queue: dict[str, int] = field(default_factory=dict)
    retrying: int = 0  # active jobs that failed at least once and wait for their backoff
    quarantined: int = 0  # dead letters whose plaintext spool file waits in quarantine
    unclaimed_files: int = 0  # spool files neither the catalog nor the ledger knows
    archived: int = 0  # by this process
    erased: int = 0
    last_archive_at: float | None = None
    last_sweep: float = 0.0
    last_error: str = ""
    storage_down_since: float | None = None  # the store stopped answering the archiver's probe

    @property
    def dead_letters(self) -> int:
        return self.queue.get("failed", 0)

    @property
    def backlog(self) -> int:
        return sum(self.queue.get(s, 0) for s in ACTIVE)

    def as_dict(self) -> dict:
        return {"running": self.running, "spool_files": self.spool_files, "last_scan": self.last_scan,
                "scans": self.scans, "queue": dict(self.queue), "backlog": self.backlog,
                "retrying": self.retrying, "dead_letters": self.dead_letters,
                "quarantined": self.quarantined,
                "unclaimed_files": self.unclaimed_files, "archived": self.archived, "erased": self.erased,
                "last_archive_at": self.last_archive_at, "last_sweep": self.last_sweep,
                "last_error": self.last_error, "storage_down_since": self.storage_down_since}


@dataclass(frozen=True)
class _Dry:
    """A worker found nothing due: when the next job is (None: none active), and the
    queue figures if they were asked for."""
    due: float | None
    counts: tuple[dict[str, int], int, int] | None


class Archiver:
    """The spool scan, the archive workers and the retention sweeper of one node."""

    def __init__(self, spool_dir: Path, *, catalog: Catalog, ledger: Ledger, pipeline: Pipeline,
                 scan_interval: float = 60.0, sweeper: RetentionSweeper | None = None, workers: int = 2,
                 retention_interval: float = 3600.0, rule_retention: Mapping[str, str] | None = None,
                 exclusive: bool = True, probe_interval: float = 5.0):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.spool_dir = Path(spool_dir)
        self.scan_interval = scan_interval
        self.catalog, self.ledger, self.pipeline, self.sweeper = catalog, ledger, pipeline, sweeper
        self.workers = workers
        self.retention_interval = retention_interval
        self.probe_interval = probe_interval
        self.rule_retention = dict(rule_retention or {})
        self.exclusive = exclusive  # single node: leases left by a killed process are ours to release
        self.stats = ArchiverStats()
        self._task: asyncio.Task | None = None
        self._workers: list[asyncio.Task] = []
        self._stop = asyncio.Event()
        self._halt = threading.Event()  # seen by jobs running in threads
        self._wake = asyncio.Event()
        self._trouble = asyncio.Event()  # set when jobs wait on backoff: the storage probe runs
        self._warned: set[str] = set()
        self._counted = 0.0  # time.monotonic() of the last queue count
        self._stale = False  # jobs ended since then

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.spool_dir.mkdir, parents=True, exist_ok=True)
        self._stop.clear()
        self._halt.clear()
        try:
            await asyncio.to_thread(self.pipeline.check_setup)
        except PermanentError as e:
            raise SetupError(f"archive storage is not usable: {e}") from e
        except RetryableError as e:  # an outage at start: jobs back off until it ends
            log.warning("archive storage not reachable at start (will retry): %s", e)
            self.stats.last_error = str(e)
        if self.exclusive:
            await asyncio.to_thread(self.catalog.release_leases)
        await self.scan()
        self._workers = [asyncio.create_task(self._worker(), name=f"archiver-worker-{i}")
                         for i in range(self.workers)]
        self._workers.append(asyncio.create_task(self._watch_storage(), name="archiver-storage-probe"))
        self._task = asyncio.create_task(self._scan_loop(), name="archiver-scan")
        self.stats.running = True

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        self._halt.set()
        self.wake()
        tasks = [t for t in (*self._workers, self._task) if t is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("archiver did not stop within %.0f s; abandoning %d task(s)", timeout, len(pending))
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        self._workers, self._task = [], None
        self.stats.running = False

    def wake(self) -> None:
        """Let idle workers look for work now (call from the event loop)."""
        self._wake.set()

    # -- intake ---------------------------------------------------------------------

    async def recording_ended(self, uniqueid: str | None = None, recording_id: str | None = None) -> int:
        """A channel hung up or its MixMonitor stopped: queue its recordings. Returns
        how many were queued now (0 if already queued or unknown)."""
        if not (uniqueid or recording_id):
            return 0
        # Every hang-up asks, most find nothing (a declined call has no row). On SQLite
        # the indexed read (about 10 us) runs here: a worker thread's hand-off and
        # wake-ups cost serve some 0.3 ms of CPU per call (python -m bench calls).
        # Only a row still recording goes to a thread to be queued.
        if self.catalog.db.dialect == "sqlite":
            rows = self._recording_rows(uniqueid, recording_id)
        else:
            rows = await asyncio.to_thread(self._recording_rows, uniqueid, recording_id)
        if not rows:
            return 0
        n = await asyncio.to_thread(self._mark_ended, rows)
        if n:
            self.wake()
        return n

    def _recording_rows(self, uniqueid: str | None, recording_id: str | None) -> list[Recording]:
        rows = self.catalog.by_uniqueid(uniqueid) if uniqueid else []
        if recording_id:
            try:
                rows.append(self.catalog.get(recording_id))
            except NotFound:
                pass
        return [r for r in rows if r.state == "recording"]

    def _mark_ended(self, rows: list[Recording]) -> int:
        now = time.time()
        queued = 0
        for r in rows:
            # MixMonitor closes the file and runs its post-command (the done marker) a
            # moment after the hang-up. Looked at before then, the job would only be
            # claimed and put back (two fsynced commits for nothing): first look later.
            closed = not r.spool_path or spool.marker_for(Path(r.spool_path)).exists()
            queued += self.catalog.mark_ended(r.recording_id, now, due=0.0 if closed else now + FIRST_LOOK)
        return queued

    # -- workers --------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                stale = self._stale  # if the queue runs dry, its figures are due now
                self._stale = False  # cleared first: a job that ends meanwhile marks them stale again
                outcome = await asyncio.to_thread(self._next_job, stale)
                if isinstance(outcome, _Dry):
                    if outcome.counts is not None:
                        self._counted = time.monotonic()
                        self._set_counts(outcome.counts)
                    due = outcome.due
                    idle = self.scan_interval if due is None else min(self.scan_interval, due - time.time())
                    await self._idle(max(0.05, idle))
                    continue
                self._stale = self._stale or stale  # not counted: a job ran instead
                await self._account(outcome)
            except Exception as e:  # task boundary: log, keep the worker alive; the lease retries the job
                log.exception("archiver worker: unexpected error")
                self.stats.last_error = f"{type(e).__name__}: {e}"
                await self._idle(1.0)

    def _next_job(self, count: bool) -> Outcome | _Dry:
        """Claim the next due job and run it, in one worker thread: one hand-off from
        the event loop per job. Nothing due: when the next one is, and (``count``)
        the queue figures, read in the same hand-off."""
        rec = self.catalog.claim(lease=self.pipeline.lease_seconds)
        if rec is None:
            return _Dry(self.catalog.next_due(), self._counts() if count else None)
        return self.pipeline.process(rec, self._halt)

    async def _watch_storage(self) -> None:
        """While jobs wait on backoff, probe the stores every ``probe_interval``. When a
        store that failed the probe answers again, the waiting jobs are retried at once:
        after an outage the backlog drains in seconds, not after the longest backoff."""
        while not self._stop.is_set():
            if self.stats.retrying == 0 and self.stats.storage_down_since is None:
                self._trouble.clear()  # nothing to probe for: no wake-up until a job backs off
                await self._until(self._trouble)
                continue
            await self._sleep(self.probe_interval)
            if self._stop.is_set():
                continue
            try:
                await asyncio.to_thread(self.pipeline.check_setup)
            except (StorageError, OSError) as e:
                if self.stats.storage_down_since is None:
                    self.stats.storage_down_since = time.time()
                    log.warning("archive storage unreachable; %d recording(s) wait: %s", self.stats.backlog, e)
                self.stats.last_error = str(e)
                continue
            if self.stats.storage_down_since is not None:
                down = time.time() - self.stats.storage_down_since
                self.stats.storage_down_since = None
                n = await asyncio.to_thread(self.catalog.retry_now)
                log.info("archive storage answers again after %.0f s; retrying %d recording(s) now", down, n)
                await self._refresh()
                self.wake()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _idle(self, seconds: float) -> None:
        await self._until(self._wake, seconds)

    async def _until(self, event: asyncio.Event, seconds: float | None = None) -> None:
        """Until ``event`` is set, stop is asked or ``seconds`` pass."""
        wake = asyncio.ensure_future(event.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((wake, stop), timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (wake, stop):
                f.cancel()
            await asyncio.gather(wake, stop, return_exceptions=True)

    async def _account(self, outcome: Outcome) -> None:
        if outcome.kind == "archived":
            self.stats.archived += 1
            self.stats.last_archive_at = time.time()
        elif outcome.kind == "erased":
            self.stats.erased += 1
        elif outcome.kind in ("retry", "failed"):
            self.stats.last_error = outcome.detail
        if outcome.kind in ("retry", "failed") or (
                outcome.kind != "waiting" and time.monotonic() - self._counted >= COUNT_EVERY):
            await self._refresh()
        elif outcome.kind != "waiting":
            self._stale = True
        if outcome.kind in ("archived", "erased"):
            self.wake()  # the others may be idle while more is queued

    async def _refresh(self) -> None:
        self._counted, self._stale = time.monotonic(), False
        self._set_counts(await asyncio.to_thread(self._counts))

    def _set_counts(self, counts: tuple[dict[str, int], int, int]) -> None:
        self.stats.queue, self.stats.retrying, self.stats.quarantined = counts
        if self.stats.retrying:
            self._trouble.set()

    def _counts(self) -> tuple[dict[str, int], int, int]:
        return self.catalog.queue_counts(), self.catalog.retrying_count(), self.catalog.quarantined_count()

    # -- the spool scan ---------------------------------------------------------------

    async def scan(self) -> int:
        """Scan once; returns the number of recording files in the spool."""
        found, unclaimed, queued = await asyncio.to_thread(self._scan_sync)
        self.stats.spool_files, self.stats.unclaimed_files = len(found), len(unclaimed)
        await self._refresh()
        if queued:
            self.wake()
        self.stats.last_scan = time.time()
        self.stats.scans += 1
        return len(found)

    def _inventory(self) -> list[Path]:
        return sorted(p for p in self.spool_dir.iterdir() if spool.is_recording_file(p) and p.is_file())

    def _row_for(self, path: Path) -> Recording | None:
        if RECORDING_ID_RE.fullmatch(path.stem):
            try:
                return self.catalog.get(path.stem)
            except NotFound:
                pass
        return self.catalog.by_spool_path(str(path))

    def _scan_sync(self) -> tuple[list[Path], list[str], int]:
        now = time.time()
        rules = self.pipeline.spool_rules
        files = self._inventory()
        queued, unclaimed = 0, []
        for path in files:
            rec = self._row_for(path) or self._adopt(path)
            if rec is None:
                unclaimed.append(path.name)
                if path.name not in self._warned:
                    self._warned.add(path.name)
                    log.warning("spool file %s: no catalog row and no consent entry in the ledger; "
                                "left alone (see docs/archiver.md, 'Orphans')", path)
            elif rec.state == "recording":
                if spool.closed(path, rules, now) and self.catalog.mark_ended(
                        rec.recording_id, spool.ended_at(path) or now):
                    queued += 1
            elif rec.state in ("archived", "erased"):
                spool.unlink_quietly(path, spool.marker_for(path))  # a crash before the clean-up
            elif rec.state in ACTIVE:
                queued += 1
            elif rec.state == "failed":  # failed before quarantine existed, or its move failed
                try:
                    quarantine.isolate(self.catalog, rec)
                except OSError as e:
                    log.error("spool file %s: cannot quarantine it: %s", path, e)
        names = {p.name for p in files}
        for marker in self.spool_dir.glob("*" + DONE_SUFFIX):
            target = marker.with_name(marker.name[:-len(DONE_SUFFIX)])
            if target.name in names or not spool.is_recording_file(target):
                continue
            rec = self._row_for(target)
            if rec is not None and rec.state in ("archived", "erased"):
                spool.unlink_quietly(marker)
            elif rec is not None and rec.state == "recording" and self.catalog.mark_ended(rec.recording_id, now):
                queued += 1  # finished without a file: the pipeline records it as a dead letter
        for rec in self.catalog.search(state="recording", until=now - NO_FILE_AFTER, limit=1000):
            path = Path(rec.spool_path)
            if not path.exists() and not spool.marker_for(path).exists() and \
                    self.catalog.mark_ended(rec.recording_id, now):
                queued += 1
        self._sweep_work_dir(now)
        return files, unclaimed, queued

    def _adopt(self, path: Path) -> Recording | None:
        """A spool file without a catalog row (the row was lost, e.g. a restored database).

        Adopted only if the ledger holds the consent entry that allowed this recording:
        the row is rebuilt from it (consent state, rule, jurisdiction; a later revoke
        still means erase). Without that evidence the file is not ours to archive (it
        would be locked without a basis) nor to delete: it stays, counted in
        ``unclaimed_files``, until an operator runs ``callvault recordings adopt``.
        """
        rid = path.stem
        if not RECORDING_ID_RE.fullmatch(rid):
            return None
        consents = [(e, c) for e in self.ledger.find(recording_id=rid, kind=ConsentBody.KIND)
                    if (c := ConsentBody.from_body(e.data)).record]
        if not consents:
            return None
        entry, consent = consents[-1]
        linkedid = consent.linkedid
        revoked = bool(linkedid) and any(rid in RevokeBody.from_body(e.data).recording_ids
                                         for e in self.ledger.find(call_id=linkedid, kind=RevokeBody.KIND))
        self.catalog.add(Recording.from_consent(
            consent, recording_id=rid, spool_path=str(path),
            retention_class=self.rule_retention.get(consent.rule, "default"),
            consent_state="revoked" if revoked else consent.outcome or "unknown",
            started_at=consent.started_at or path.stat().st_mtime, erase_requested=1 if revoked else 0))
        self.ledger.append("archive.adopt", {"recording_id": rid, "spool_file": path.name,
                                             "consent_seq": entry.seq, "revoked": revoked,
                                             "reason": "spool file without a catalog row"},
                           call_id=linkedid or None, recording_id=rid)
        log.warning("adopted spool file %s from ledger entry %d", path.name, entry.seq)
        return self.catalog.get(rid)

    def _sweep_work_dir(self, now: float) -> None:
        work = self.pipeline.work_dir
        try:
            entries = list(os.scandir(work))
        except FileNotFoundError:
            return
        for entry in entries:
            rid = entry.name.split(".", 1)[0]
            try:
                state = self.catalog.get(rid).state
            except NotFound:
                state = None
            stale = state is None and now - entry.stat().st_mtime > STALE_WORK
            if state in ("archived", "erased") or stale:
                spool.unlink_quietly(Path(entry.path))

    async def _scan_loop(self) -> None:
        if self.sweeper is not None:
            await self._sweep()
        while not self._stop.is_set():
            await self._sleep(self.scan_interval)
            if self._stop.is_set():
                return
            try:
                await self.scan()
            except Exception as e:  # noqa: BLE001 (task boundary: the next scan tries again)
                log.error("spool scan of %s failed: %s", self.spool_dir, e)
                self.stats.last_error = f"scan: {e}"
            if self.sweeper is not None and time.time() - self.stats.last_sweep >= self.retention_interval:
                await self._sweep()

    async def _sweep(self) -> None:
        try:
            result = await asyncio.to_thread(self.sweeper.sweep)
        except Exception as e:  # noqa: BLE001 (task boundary)
            log.error("retention sweep failed: %s", e)
            self.stats.last_error = f"retention: {e}"
            return
        self.stats.last_sweep = time.time()
        if result.deleted or result.shredded:
            log.info("retention: deleted %d, shredded %d, held %d", len(result.deleted),
                     len(result.shredded), len(result.held))
