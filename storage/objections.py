"""Standing objections: a data subject's "never record my calls", kept as HMACs.

An objection is stored as the caller HMACs of every form of the number the person
gave (``hmac_index.subject_hmacs``), never the number itself, with the reason and
who recorded it. The consent route asks :meth:`Objections.objected` with the
presented caller's HMAC before any notice is played. Lifting keeps the row (lifted
at, by whom, why): the ledger and this table both show the objection's history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .db import Database

__all__ = ["Objection", "Objections"]

_DDL = """
CREATE TABLE objections (
    objection_id TEXT PRIMARY KEY,
    caller_hmacs TEXT NOT NULL,
    reason       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    created_at   {real} NOT NULL,
    lifted_at    {real},
    lifted_by    TEXT NOT NULL DEFAULT '',
    lift_reason  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE objection_hmacs (
    caller_hmac  TEXT NOT NULL,
    objection_id TEXT NOT NULL REFERENCES objections(objection_id),
    PRIMARY KEY (caller_hmac, objection_id)
);
"""
MIGRATIONS = {"sqlite": [_DDL.format(real="REAL")], "postgresql": [_DDL.format(real="DOUBLE PRECISION")]}
_COLS = "objection_id, caller_hmacs, reason, actor, created_at, lifted_at, lifted_by, lift_reason"


@dataclass(frozen=True)
class Objection:
    """A standing objection to recording: the numbers it covers, who made and lifted it."""

    objection_id: str
    caller_hmacs: tuple[str, ...]
    reason: str
    actor: str
    created_at: float
    lifted_at: float | None = None
    lifted_by: str = ""
    lift_reason: str = ""

    @property
    def active(self) -> bool:
        return self.lifted_at is None

    def public(self) -> dict[str, Any]:
        """What a listing shows: no HMACs (they identify the person to whoever holds the key)."""
        return {"objection_id": self.objection_id, "reason": self.reason, "actor": self.actor,
                "created_at": self.created_at, "active": self.active, "lifted_at": self.lifted_at,
                "lifted_by": self.lifted_by, "lift_reason": self.lift_reason}


def _row(r: Any) -> Objection:
    return Objection(r[0], tuple(json.loads(r[1])), r[2], r[3], r[4], r[5], r[6], r[7])


class Objections:
    def __init__(self, db: Database):
        self.db = db
        db.migrate("objections", MIGRATIONS)

    def add_op(self, hmacs: Sequence[str], reason: str, actor: str) -> tuple[str, Any]:
        """(new objection id, an operation for ``Ledger.append_async(also=...)``)."""
        if not hmacs:
            raise ValueError("an objection needs a number with digits")
        import secrets  # not on the consent path, which only reads objections

        oid = "o" + secrets.token_hex(8)
        now = time.time()

        def insert(c: Any) -> None:
            c.execute(f"INSERT INTO objections ({_COLS}) VALUES (?, ?, ?, ?, ?, NULL, '', '')",
                      (oid, json.dumps(list(hmacs)), reason, actor, now))
            for h in dict.fromkeys(hmacs):
                c.execute("INSERT INTO objection_hmacs (caller_hmac, objection_id) VALUES (?, ?)", (h, oid))
        return oid, insert

    def lift_op(self, ids: Sequence[str], reason: str, actor: str) -> Any:
        now = time.time()

        def lift(c: Any) -> None:
            for oid in ids:
                c.execute("UPDATE objections SET lifted_at = ?, lifted_by = ?, lift_reason = ? "
                          "WHERE objection_id = ? AND lifted_at IS NULL", (now, actor, reason, oid))
        return lift

    def active_for(self, hmacs: Sequence[str]) -> list[Objection]:
        """The objections in force for any of ``hmacs``."""
        if not hmacs:
            return []
        marks = ", ".join("?" for _ in hmacs)
        with self.db.read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM objections WHERE lifted_at IS NULL AND objection_id IN "
                             f"(SELECT objection_id FROM objection_hmacs WHERE caller_hmac IN ({marks})) "
                             "ORDER BY created_at", tuple(hmacs)).fetchall()
        return [_row(r) for r in rows]

    def objected(self, caller_hmac: str) -> str | None:
        """The id of an objection in force for this caller HMAC, or None."""
        with self.db.read() as c:
            row = c.execute("SELECT o.objection_id FROM objection_hmacs h JOIN objections o "
                            "ON o.objection_id = h.objection_id WHERE h.caller_hmac = ? AND o.lifted_at IS NULL",
                            (caller_hmac,)).fetchone()
        return row[0] if row else None

    def list(self, *, include_lifted: bool = True) -> list[Objection]:
        where = "" if include_lifted else "WHERE lifted_at IS NULL "
        with self.db.read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM objections {where}ORDER BY created_at DESC").fetchall()
        return [_row(r) for r in rows]
