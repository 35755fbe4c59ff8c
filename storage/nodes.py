"""Nodes sharing one database: the registry of who is up, and the one caller-HMAC key.

Registry: each ``callvault serve`` upserts its row (name, role, last seen, AMI state,
its own archive queue, spool free bytes, version) every few seconds; ``status`` and
the admin page list every row, and a row not refreshed for ``DOWN_AFTER`` seconds is
shown as down.

HMAC key: the first node to start records ``fingerprint(key)`` (SHA-256 of
HMAC(key, "callvault-fingerprint"): the key cannot be recovered from it); a node
whose key has another fingerprint is refused, since its caller-number HMACs would
never match the others' and a phone search would silently miss calls.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .db import Database

__all__ = ["DOWN_AFTER", "HEARTBEAT", "NodeRow", "Nodes", "hmac_fingerprint"]

HEARTBEAT = 5.0
DOWN_AFTER = 30.0
HMAC_SETTING = "hmac_key_fingerprint"

_DDL = """
CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    last_seen   {real} NOT NULL,
    ami         TEXT NOT NULL DEFAULT '',
    queue       TEXT NOT NULL DEFAULT '{{}}',
    spool_free  BIGINT,
    version     TEXT NOT NULL DEFAULT '',
    started_at  {real} NOT NULL
);
CREATE TABLE cluster_settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    node        TEXT NOT NULL,
    set_at      {real} NOT NULL
);
"""
MIGRATIONS = {"sqlite": [_DDL.format(real="REAL")], "postgresql": [_DDL.format(real="DOUBLE PRECISION")]}


def hmac_fingerprint(key: bytes) -> str:
    """SHA-256 (hex) of HMAC-SHA256(key, "callvault-fingerprint")."""
    return hashlib.sha256(hmac.new(bytes(key), b"callvault-fingerprint", hashlib.sha256).digest()).hexdigest()


@dataclass(frozen=True)
class NodeRow:
    name: str
    role: str
    last_seen: float
    ami: str = ""
    queue: dict[str, int] = field(default_factory=dict)
    spool_free: int | None = None
    version: str = ""
    started_at: float = 0.0

    def up(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) - self.last_seen <= DOWN_AFTER

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        now = now if now is not None else time.time()
        return {"name": self.name, "role": self.role, "state": "up" if self.up(now) else "down",
                "last_seen": self.last_seen, "seen_ago_s": round(max(0.0, now - self.last_seen), 1),
                "ami": self.ami, "queue": dict(self.queue), "spool_free_bytes": self.spool_free,
                "version": self.version}


class Nodes:
    def __init__(self, db: Database):
        self.db = db
        db.migrate("nodes", MIGRATIONS)

    # -- registry ---------------------------------------------------------------------------
    def upsert(self, row: NodeRow) -> None:
        with self.db.write() as c:
            c.execute(
                "INSERT INTO nodes (name, role, last_seen, ami, queue, spool_free, version, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                "last_seen = excluded.last_seen, ami = excluded.ami, queue = excluded.queue, "
                "spool_free = excluded.spool_free, version = excluded.version, started_at = excluded.started_at",
                (row.name, row.role, row.last_seen, row.ami, json.dumps(row.queue, sort_keys=True), row.spool_free,
                 row.version, row.started_at))

    def list(self) -> list[NodeRow]:
        with self.db.read() as c:
            rows = c.execute("SELECT name, role, last_seen, ami, queue, spool_free, version, started_at "
                             "FROM nodes ORDER BY name").fetchall()
        return [NodeRow(r[0], r[1], float(r[2]), r[3], json.loads(r[4] or "{}"), r[5], r[6], float(r[7]))
                for r in rows]

    def queue_of(self, node: str) -> dict[str, int]:
        """Recordings of ``node`` not yet archived (or erased), by state."""
        with self.db.read() as c:
            rows = c.execute("SELECT state, COUNT(*) FROM recordings WHERE node = ? "
                             "AND state NOT IN ('archived', 'erased') GROUP BY state", (node,)).fetchall()
        return {state: int(n) for state, n in rows}

    # -- the one HMAC key ---------------------------------------------------------------------
    def recorded_fingerprint(self) -> tuple[str, str] | None:
        """(fingerprint, node that recorded it), or None before any node started."""
        with self.db.read() as c:
            row = c.execute("SELECT value, node FROM cluster_settings WHERE name = ?", (HMAC_SETTING,)).fetchone()
        return (row[0], row[1]) if row else None

    def claim_hmac_fingerprint(self, key: bytes, node: str) -> tuple[str, str]:
        """Record this key's fingerprint unless one is recorded; returns the recorded one
        and the node that recorded it."""
        with self.db.write() as c:
            c.execute("INSERT INTO cluster_settings (name, value, node, set_at) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (name) DO NOTHING", (HMAC_SETTING, hmac_fingerprint(key), node, time.time()))
            row = c.execute("SELECT value, node FROM cluster_settings WHERE name = ?", (HMAC_SETTING,)).fetchone()
        return row[0], row[1]
