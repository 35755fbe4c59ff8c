"""Ledger verification: the full walk vs ``--from-anchor`` (``Ledger.verify_since``).

    python -m bench ledger

Builds a ledger of ENTRIES entries (consent-sized bodies) in a temp dir, anchors it
every ANCHOR_EVERY entries on a local store, then times each check (best of 3).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from storage.anchors import anchors_in, write_anchor
from storage.dburl import open_database
from storage.ledger import Ledger
from storage.localstore import LocalStore

ENTRIES = 200_000
ANCHOR_EVERY = 1000
TAIL = 500  # entries appended after the newest anchor


def _best(fn, runs: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        store = LocalStore.create(Path(tmp) / "payload")
        ledger = Ledger(db)
        body = {"consent_id": "c" * 26, "outcome": "granted", "rule": "default", "caller_hmac": "h" * 64,
                "digits": "1", "attempts": 1, "record": True, "started_at": 1.7e9, "ended_at": 1.7e9}
        t0 = time.perf_counter()
        for start in range(0, ENTRIES - TAIL, ANCHOR_EVERY):
            with db.write() as conn:  # a batch per anchor: the bench is not about fsync
                for i in range(start, start + ANCHOR_EVERY):
                    ledger._insert(conn, "consent", f"call-{i}", f"rec-{i}", _text(body, i))
            write_anchor(store, *ledger.head(), "bench", "1d")
        with db.write() as conn:
            for i in range(ENTRIES - TAIL, ENTRIES):
                ledger._insert(conn, "consent", f"call-{i}", f"rec-{i}", _text(body, i))
        built = time.perf_counter() - t0
        checks = [(a.seq, a.hash, a.key) for a in anchors_in(store, "bench")]
        full, r1 = _best(lambda: ledger.verify(anchors=checks))
        since, r2 = _best(lambda: ledger.verify_since(checks))
        listing, _ = _best(lambda: anchors_in(store, "bench"))
        assert r1.ok and r2.ok, (r1, r2)
        print(f"ledger: {r1.checked} entries, {len(checks)} anchors (built in {built:.1f} s)")
        print(f"  full verify         {full:8.3f} s  ({r1.checked} entries)")
        print(f"  verify --from-anchor{since:8.3f} s  ({r2.checked} entries walked, {len(checks)} anchors point-checked)")
        print(f"  list anchors (local){listing:8.3f} s")
        db.close()
    return 0


def _text(body: dict, i: int) -> str:
    from storage.chain import canonical_json

    return canonical_json({**body, "n": i})
