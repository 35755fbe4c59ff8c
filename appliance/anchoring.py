"""Anchoring the ledger while `serve` runs: the head goes to WORM storage every
``[ledger] anchor_every`` entries or ``anchor_interval``, whichever comes first, and
once more at a clean shutdown; before each anchor the entries since the previous one
are checked against every anchor (``Ledger.verify_since``), so a tampered chain is
never anchored and is reported at once (log and metrics).

Entries come from this process and from classic AGI processes alike, so the head is
polled (one indexed read) rather than announced. On SQLite that read runs on the event
loop and a worker thread is used only when an anchor is due: an idle service's poll
costs no thread hand-off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from storage.anchors import Anchor, anchors_in, write_anchor
from storage.blobstore import BlobStore
from storage.chain import VerifyResult
from storage.errors import StorageError
from storage.ledger import Ledger

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
SHUTDOWN_SECONDS = 10.0


class AnchorKeeper:
    """Decides when to anchor, checks, writes. Blocking: run it in a thread."""

    def __init__(self, ledger: Ledger, store: BlobStore, *, node: str, every: int, interval: float,
                 retention: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger, self.store, self.node = ledger, store, node
        self.every, self.interval, self.retention = every, interval, retention
        self.clock = clock
        self.anchors: list[Anchor] | None = None  # listed from the store on the first step
        self.anchored_seq = 0
        self.check_failures = 0
        self.last_result: VerifyResult | None = None
        self._last_check = clock()

    def stats(self) -> dict[str, int]:
        return {"anchored_seq": self.anchored_seq, "check_failures": self.check_failures}

    def due(self) -> bool:
        """An anchor is due: the first step, ``every`` new entries, or new entries and
        ``interval`` since the last check (one indexed read)."""
        if self.anchors is None:
            return True
        new = self.ledger.head()[0] - self.anchored_seq
        return new >= self.every or (new != 0 and self.clock() - self._last_check >= self.interval)

    def step(self, force: bool = False) -> Anchor | None:
        """Check and anchor if due (``force``: now). Returns the anchor written, if any."""
        if self.anchors is None:
            self.anchors = anchors_in(self.store, self.node)
            self.anchored_seq = max((a.seq for a in self.anchors), default=0)
            force = True  # check at start: what happened while the service was down
        if not (force or self.due()):
            return None
        self._last_check = self.clock()
        result = self.ledger.verify_since([(a.seq, a.hash, a.key) for a in self.anchors])
        self.last_result = result
        if not result.ok:
            self.check_failures += 1
            log.error("ledger check against its anchors FAILED at entry %s: %s (no anchor written)",
                      result.bad_seq, result.reason)
            return None
        if result.head[0] <= self.anchored_seq:
            return None
        anchor = write_anchor(self.store, result.head[0], result.head[1], self.node, self.retention)
        self.anchors.append(anchor)
        self.anchored_seq = anchor.seq
        log.info("ledger anchored at entry %s: %s", anchor.seq, anchor.key)
        return anchor

    async def run(self, poll: float, check_on_loop: bool = False) -> None:
        """Every ``poll`` seconds: step in a worker thread (``check_on_loop``: only when
        ``due()``, read on the loop, says so; for SQLite, whose read takes microseconds)."""
        while True:
            try:
                if not check_on_loop or self.due():
                    await asyncio.to_thread(self.step)
            except StorageError as e:  # storage down or the database busy: try again next poll
                log.warning("ledger anchoring: %s", e)
            await asyncio.sleep(poll)

