"""Prometheus metrics at ``/metrics`` (text exposition format 0.0.4, no client library).

Counters kept by this process (calls and consent outcomes seen over AMI, playback)
reset on restart, as Prometheus expects. Gauges and the archive-latency histogram
come from the catalog, so they agree with it across restarts: the histogram takes in
each recording archived since the last scrape (``archived_at - ended_at``).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from dataclasses import dataclass, field

from archiver.archive import Archive
from storage.catalog import ACTIVE, STATES, Catalog

LATENCY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts):
            running += n
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {self.total:.3f}")
        out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    def __init__(self, archive: Archive | None = None) -> None:
        self.archive = archive
        self.calls = 0
        self.consent: Counter[str] = Counter()
        self.pauses: Counter[str] = Counter()
        self.playback_requests = 0
        self.playback_served_bytes = 0
        self.archive_latency = Histogram()
        self._archived_after = 0.0
        self._lock = asyncio.Lock()

    @property
    def playback_fetched_bytes(self) -> int:
        return self.archive.ranged_read_bytes if self.archive is not None else 0

    async def render(self, *, catalog: Catalog | None, ami_connected: bool, agi: dict, archiver: dict,
                     live_calls: int) -> str:
        counts: dict[str, int] = {}
        if catalog is not None:
            async with self._lock:  # one scrape at a time moves the watermark
                for archived_at, latency in await asyncio.to_thread(catalog.archived_since, self._archived_after):
                    self.archive_latency.observe(max(0.0, latency))
                    self._archived_after = max(self._archived_after, archived_at)
            counts = await asyncio.to_thread(catalog.queue_counts)
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        metric("callvault_calls_total", "counter", "Calls that went through the consent flow (seen over AMI).",
               [("", self.calls)])
        metric("callvault_consent_outcomes_total", "counter", "Consent decisions by outcome.",
               [(f'{{outcome="{o}"}}', n) for o, n in sorted(self.consent.items())])
        metric("callvault_live_calls", "gauge", "Calls in progress known to the agent pages.", [("", live_calls)])
        metric("callvault_recording_pauses_total", "counter", "PCI pause and resume actions from the web.",
               [(f'{{action="{a}"}}', n) for a, n in sorted(self.pauses.items())])
        metric("callvault_archive_latency_seconds", "histogram",
               "Seconds from the end of a recording to its verified archive copy.", [])
        out.extend(self.archive_latency.lines("callvault_archive_latency_seconds"))
        metric("callvault_archive_queue_depth", "gauge", "Archive jobs by state.",
               [(f'{{state="{s}"}}', counts.get(s, 0)) for s in (*ACTIVE, "failed")])
        metric("callvault_recordings", "gauge", "Catalog rows by state.",
               [(f'{{state="{s}"}}', counts.get(s, 0)) for s in STATES])
        metric("callvault_archive_failures", "gauge", "Dead-lettered archive jobs (state failed).",
               [("", counts.get("failed", 0))])
        metric("callvault_archive_retrying", "gauge", "Archive jobs waiting for a retry after a failure.",
               [("", archiver.get("retrying", 0))])
        metric("callvault_ami_connected", "gauge", "1 while the AMI session is logged in.",
               [("", 1 if ami_connected else 0)])
        metric("callvault_agi_requests_total", "counter", "FastAGI requests handled.", [("", agi.get("total", 0))])
        metric("callvault_agi_errors_total", "counter", "FastAGI requests that failed closed.",
               [("", agi.get("errors", 0))])
        metric("callvault_playback_requests_total", "counter", "Audio and download requests served.",
               [("", self.playback_requests)])
        metric("callvault_playback_fetched_bytes_total", "counter",
               "Ciphertext bytes read from storage for playback and download.", [("", self.playback_fetched_bytes)])
        metric("callvault_playback_served_bytes_total", "counter", "Bytes sent to browsers for playback and download.",
               [("", self.playback_served_bytes)])
        return "\n".join(out) + "\n"
