"""Prometheus metrics at ``/metrics``, through ``prometheus_client``.

Each web app has its own ``CollectorRegistry`` (a process may run several apps, the
tests do). Counters kept by this process (calls and consent outcomes seen over AMI,
PCI pauses, playback) reset on restart, as Prometheus expects. The other figures are
read at scrape time from the parts that own them (catalog, archiver, FastAGI server,
AMI session, spool file system): ``render`` takes a snapshot of them and the
registry's collector reports it. The archive-latency histogram comes from the
catalog, so it agrees with it across restarts: each scrape takes in the recordings
archived since the previous one (``archived_at - ended_at``).
"""

from __future__ import annotations

import asyncio
import platform
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from archiver.archive import Archive
from storage import s3client
from storage.catalog import ACTIVE, STATES, Catalog

LATENCY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def version() -> str:
    try:
        return metadata.version("callvault")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


@dataclass
class Snapshot:
    """What the other parts of the process report, read once per scrape."""

    live_calls: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    retrying: int = 0
    quarantined: int = 0
    ami_connected: bool = False
    agi_total: int = 0
    agi_errors: int = 0
    agi_active: int = 0
    agi_refused: int = 0
    playback_fetched_bytes: int = 0
    storage_up: bool = False
    last_archive: float = 0.0
    spool_free_bytes: float = float("nan")
    anchored_seq: int = 0
    anchor_check_failures: int = 0
    s3_requests: dict[str, int] = field(default_factory=dict)
    ami_events: dict[str, int] = field(default_factory=dict)


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot

        def gauge(name: str, help_: str, value: float | None = None, label: str = "",
                  values: dict[str, float] | None = None) -> GaugeMetricFamily:
            if values is None:
                return GaugeMetricFamily(name, help_, value=value)
            g = GaugeMetricFamily(name, help_, labels=[label])
            for key, n in values.items():
                g.add_metric([key], n)
            return g

        yield gauge("callvault_live_calls", "Calls in progress known to the agent pages.", s.live_calls)
        yield gauge("callvault_archive_queue_depth", "Archive jobs by state.", label="state",
                    values={st: s.counts.get(st, 0) for st in (*ACTIVE, "failed")})
        yield gauge("callvault_recordings", "Catalog rows by state.", label="state",
                    values={st: s.counts.get(st, 0) for st in STATES})
        yield gauge("callvault_archive_dead_letters", "Archive jobs that gave up (state failed).",
                    s.counts.get("failed", 0))
        yield gauge("callvault_archive_quarantined", "Dead letters whose plaintext spool file waits in "
                    "quarantine (retry or erase them).", s.quarantined)
        yield gauge("callvault_archive_retrying", "Archive jobs waiting for a retry after a failure.", s.retrying)
        yield gauge("callvault_archive_last_success_timestamp_seconds",
                    "Unix time of the newest verified archive copy (0: none yet).", s.last_archive)
        yield gauge("callvault_storage_up", "1 while the archiver runs and its stores answer.", int(s.storage_up))
        yield gauge("callvault_spool_free_bytes", "Free bytes on the spool file system (for this user).",
                    s.spool_free_bytes)
        yield gauge("callvault_ami_connected", "1 while the AMI session is logged in.", int(s.ami_connected))
        yield gauge("callvault_agi_active_calls", "FastAGI connections in progress.", s.agi_active)
        yield CounterMetricFamily("callvault_agi_requests", "FastAGI requests handled.", value=s.agi_total)
        yield CounterMetricFamily("callvault_agi_errors", "FastAGI requests that failed closed.",
                                  value=s.agi_errors)
        yield gauge("callvault_ledger_anchored_seq", "Ledger seq of the newest anchor in WORM storage (0: none).",
                    s.anchored_seq)
        yield CounterMetricFamily("callvault_ledger_anchor_check_failures",
                                  "Checks of the ledger against its anchors that failed (tampering).",
                                  value=s.anchor_check_failures)
        yield CounterMetricFamily("callvault_agi_refused", "FastAGI connections refused: peer not in [agi] allow.",
                                  value=s.agi_refused)
        requests = CounterMetricFamily("callvault_s3_requests", "HTTP requests sent to S3 storage, by "
                                       "operation (retries included).", labels=["operation"])
        for operation, n in sorted(s.s3_requests.items()):
            requests.add_metric([operation], n)
        yield requests
        events = CounterMetricFamily("callvault_ami_events", "AMI events received from Asterisk, by event "
                                     "name (what manager.conf's event filter lets through).", labels=["event"])
        for name, n in sorted(s.ami_events.items()):
            events.add_metric([name], n)
        yield events
        yield CounterMetricFamily("callvault_playback_fetched_bytes",
                                  "Ciphertext bytes read from storage for playback and download.",
                                  value=s.playback_fetched_bytes)


class Metrics:
    def __init__(self, archive: Archive | None = None, spool_dir: Path | None = None) -> None:
        self.archive = archive
        self.spool_dir = spool_dir
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.calls = Counter("callvault_calls", "Calls that went through the consent flow (seen over AMI).",
                             registry=r)
        self.consent = Counter("callvault_consent_outcomes", "Consent decisions by outcome.", ["outcome"],
                               registry=r)
        self.pauses = Counter("callvault_recording_pauses", "PCI pause and resume actions from the web.",
                              ["action"], registry=r)
        self.playback_requests = Counter("callvault_playback_requests", "Audio and download requests served.",
                                         registry=r)
        self.playback_served_bytes = Counter("callvault_playback_served_bytes",
                                             "Bytes sent to browsers for playback and download.", registry=r)
        self.archive_latency = Histogram("callvault_archive_latency_seconds",
                                         "Seconds from the end of a recording to its verified archive copy.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        Info("callvault_build", "The running callvault.", registry=r).info(
            {"version": version(), "python": platform.python_version()})
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._state = _StateCollector()
        r.register(self._state)
        self._archived_after = 0.0
        self._lock = asyncio.Lock()

    @property
    def playback_fetched_bytes(self) -> int:
        return self.archive.ranged_read_bytes if self.archive is not None else 0

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when it has none yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    async def render(self, *, catalog: Catalog | None, ami_connected: bool, agi: dict, archiver: dict,
                     live_calls: int, anchors: dict | None = None, ami_events: dict[str, int] | None = None) -> bytes:
        """The exposition text (``CONTENT_TYPE``) for one scrape."""
        async with self._lock:  # one scrape at a time moves the watermark and owns the snapshot
            counts: dict[str, int] = {}
            if catalog is not None:
                for archived_at, latency in await asyncio.to_thread(catalog.archived_since, self._archived_after):
                    self.archive_latency.observe(max(0.0, latency))
                    self._archived_after = max(self._archived_after, archived_at)
                counts = await asyncio.to_thread(catalog.queue_counts)
            self._state.snapshot = Snapshot(
                live_calls=live_calls, counts=counts, retrying=archiver.get("retrying", 0),
                quarantined=archiver.get("quarantined", 0),
                ami_connected=ami_connected, agi_total=agi.get("total", 0), agi_errors=agi.get("errors", 0),
                agi_active=agi.get("active", 0), agi_refused=agi.get("refused", 0), playback_fetched_bytes=self.playback_fetched_bytes,
                storage_up=bool(archiver.get("running")) and archiver.get("storage_down_since") is None,
                last_archive=self._archived_after, spool_free_bytes=await asyncio.to_thread(self._spool_free),
                anchored_seq=(anchors or {}).get("anchored_seq", 0),
                anchor_check_failures=(anchors or {}).get("check_failures", 0),
                s3_requests=s3client.REQUESTS.snapshot(), ami_events=dict(ami_events or {}))
            return await asyncio.to_thread(generate_latest, self.registry)

    def _spool_free(self) -> float:
        if self.spool_dir is None:
            return float("nan")
        try:
            return float(shutil.disk_usage(self.spool_dir).free)
        except OSError:  # not there (yet): unknown, not "full"
            return float("nan")
