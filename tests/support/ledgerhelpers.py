"""Helpers for the ledger and database tests (tests/storage/test_ledger.py, test_chain.py,
test_group_commit.py, test_db_conformance.py)."""

from __future__ import annotations

import hashlib
import threading


def fill(ledger, n=10):
    return [
        ledger.append("consent", {"n": i, "choice": "accept"}, call_id=f"call-{i}", recording_id=f"rec-{i}")
        for i in range(1, n + 1)
    ]


def independent_hash(seq, ts, kind, call_id, recording_id, body, prev_hash):
    """The encoding exactly as docs/ledger.md states it, written separately."""

    def lp(s):
        b = s.encode("utf-8")
        return len(b).to_bytes(4, "big") + b

    def opt(s):
        return b"\x00" if s is None else b"\x01" + lp(s)

    data = (
        b"callvault-ledger-v1\x00" + seq.to_bytes(8, "big") + lp(ts) + lp(kind)
        + opt(call_id) + opt(recording_id) + lp(body) + lp(prev_hash)
    )
    return hashlib.sha256(data).hexdigest()


def hold_writer(db) -> tuple[threading.Event, threading.Event]:
    """Park ``db``'s group-commit writer thread inside an operation until ``release`` is set."""
    entered, release = threading.Event(), threading.Event()

    def op(conn):
        entered.set()
        assert release.wait(10)

    db.submit(op)
    assert entered.wait(10)
    return entered, release
