"""The archiver's process-level object: started and stopped by the appliance.

It owns the periodic spool scan (recordings that no event announced: crashes,
missed AMI events). Encryption and upload jobs hang off this object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".wav", ".WAV", ".gsm", ".sln", ".sln16")


@dataclass
class ArchiverStats:
    running: bool = False
    spool_files: int = 0
    last_scan: float = 0.0
    scans: int = 0
    queue: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"running": self.running, "spool_files": self.spool_files,
                "last_scan": self.last_scan, "scans": self.scans, "queue": dict(self.queue)}


class Archiver:
    def __init__(self, spool_dir: Path, *, scan_interval: float = 60.0):
        self.spool_dir = spool_dir
        self.scan_interval = scan_interval
        self.stats = ArchiverStats()
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await asyncio.to_thread(self.spool_dir.mkdir, parents=True, exist_ok=True)
        self._stop.clear()
        self._task = asyncio.create_task(self._scan_loop(), name="archiver-scan")
        self.stats.running = True

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except asyncio.TimeoutError:
                log.warning("archiver did not stop within %.0f s", timeout)
            self._task = None
        self.stats.running = False

    def _scan(self) -> list[Path]:
        return sorted(p for p in self.spool_dir.iterdir()
                      if p.is_file() and p.suffix in RECORDING_SUFFIXES)

    async def scan(self) -> list[Path]:
        found = await asyncio.to_thread(self._scan)
        self.stats.spool_files = len(found)
        self.stats.last_scan = time.time()
        self.stats.scans += 1
        return found

    async def _scan_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.scan()
            except OSError as e:
                log.error("spool scan of %s failed: %s", self.spool_dir, e)
            try:
                await asyncio.wait_for(self._stop.wait(), self.scan_interval)
            except asyncio.TimeoutError:
                pass
