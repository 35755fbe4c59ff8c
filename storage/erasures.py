"""Erasure requests: what an officer asked to destroy, who approved it, and the certificate.

One row per request. ``selection`` is the JSON the request was made with (caller HMACs
or recording ids, never a number in clear); ``state`` is ``pending`` (waiting for a
second officer under ``[privacy] erasure_approval = "two-person"``) or ``done``;
``certificate`` is the JSON certificate once executed. The ledger holds the same facts
(``erasure.request``, ``erasure.approve``, one ``erase`` per recording); this table
only lets officers find a request again.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .db import Database
from .errors import NotFound

_TABLE = """
    CREATE TABLE erasure_requests (
        request_id    TEXT PRIMARY KEY,
        reference     TEXT NOT NULL,
        selection     TEXT NOT NULL,
        requested_by  TEXT NOT NULL,
        requested_at  {real} NOT NULL,
        approved_by   TEXT NOT NULL DEFAULT '',
        approved_at   {real},
        state         TEXT NOT NULL,
        certificate   TEXT NOT NULL DEFAULT ''
    )"""

MIGRATIONS = {"sqlite": [_TABLE.format(real="REAL")], "postgresql": [_TABLE.format(real="DOUBLE PRECISION")]}

_COLS = "request_id, reference, selection, requested_by, requested_at, approved_by, approved_at, state, certificate"


@dataclass(frozen=True)
class ErasureRequest:
    request_id: str
    reference: str
    selection: dict[str, Any]
    requested_by: str
    requested_at: float
    approved_by: str
    approved_at: float | None
    state: str
    certificate: dict[str, Any] | None

    def public(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "reference": self.reference, "requested_by": self.requested_by,
                "requested_at": self.requested_at, "approved_by": self.approved_by,
                "approved_at": self.approved_at, "state": self.state,
                "recordings": len(self.selection.get("recording_ids", [])) or None}


def _row(r: Any) -> ErasureRequest:
    return ErasureRequest(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7],
                          json.loads(r[8]) if r[8] else None)


class ErasureRequests:
    def __init__(self, db: Database):
        self.db = db
        db.migrate("erasures", MIGRATIONS)

    def add(self, reference: str, selection: dict[str, Any], requested_by: str) -> ErasureRequest:
        rid = "er" + secrets.token_hex(8)
        with self.db.write() as c:
            c.execute(f"INSERT INTO erasure_requests ({_COLS}) VALUES (?, ?, ?, ?, ?, '', NULL, 'pending', '')",
                      (rid, reference, json.dumps(selection, sort_keys=True), requested_by, time.time()))
        return self.get(rid)

    def get(self, request_id: str) -> ErasureRequest:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_COLS} FROM erasure_requests WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:
            raise NotFound(f"no erasure request {request_id}")
        return _row(row)

    def list(self, limit: int = 200) -> list[ErasureRequest]:
        with self.db.read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM erasure_requests ORDER BY requested_at DESC LIMIT ?",
                             (limit,)).fetchall()
        return [_row(r) for r in rows]

    def approve(self, request_id: str, approved_by: str) -> bool:
        """Claim a pending request for ``approved_by``; False if it was no longer pending."""
        with self.db.write() as c:
            cur = c.execute("UPDATE erasure_requests SET approved_by = ?, approved_at = ?, state = 'approved' "
                            "WHERE request_id = ? AND state = 'pending'", (approved_by, time.time(), request_id))
            return cur.rowcount == 1

    def complete(self, request_id: str, certificate: dict[str, Any]) -> None:
        with self.db.write() as c:
            c.execute("UPDATE erasure_requests SET state = 'done', certificate = ? WHERE request_id = ?",
                      (json.dumps(certificate, sort_keys=True), request_id))
