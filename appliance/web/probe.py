"""Storage and database probes for the health answers (:mod:`appliance.web.health`).

The storage result is kept ``STORAGE_CHECK_EVERY`` seconds and one probe runs at a
time, so a load balancer polling `/healthz` costs S3 at most one probe per interval.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from aiohttp import web

from storage.errors import StorageError

from ..keys import AppKeys as K

STORAGE_CHECK_EVERY = 5.0
CHECK_TIMEOUT = 5.0


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


class Probe:
    """Storage and database checks with their last results (storage cached)."""

    def __init__(self, app: web.Application):
        self.app = app
        self.storage: dict[str, Any] = {"reachable": None, "detail": "not checked yet", "checked_at": None}
        self._storage_at = float("-inf")
        self._lock = asyncio.Lock()

    async def check_storage(self) -> bool:
        async with self._lock:  # callers arriving during a probe share its result
            if time.monotonic() - self._storage_at >= STORAGE_CHECK_EVERY:
                await self._probe_storage()
        return bool(self.storage["reachable"])

    async def _probe_storage(self) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.app[K.archive].check_setup), CHECK_TIMEOUT)
            result = {"reachable": True, "detail": "payload and header stores answer"}
        except (StorageError, OSError, ValueError) as e:
            result = {"reachable": False, "detail": str(e)}
        except TimeoutError:
            result = {"reachable": False, "detail": f"no answer within {CHECK_TIMEOUT:g} s"}
        self.storage = {**result, "checked_at": _iso(time.time())}
        self._storage_at = time.monotonic()

    async def check_database(self) -> bool:
        def query() -> None:
            with self.app[K.db].read() as c:
                c.execute("SELECT 1").fetchone()

        try:
            await asyncio.wait_for(asyncio.to_thread(query), CHECK_TIMEOUT)
        except (StorageError, OSError, TimeoutError):
            return False
        return True
