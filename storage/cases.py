"""Legal-hold cases: a named set of recordings kept on legal hold while the case is open.

A recording may belong to several cases; its hold is released only when no open case
holds it any more, and never when it was already on hold (placed by hand) before a
case took it (``held_before``). This table says which case holds what; the catalog's
``legal_hold`` flag and the S3 object's legal hold say what is in force; the ledger
has every change.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from .db import Database
from .errors import NotFound, PermanentError

__all__ = ["Case", "CaseError", "Cases", "check_case_name"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_DDL = """
CREATE TABLE cases (
    name         TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    created_at   {real} NOT NULL,
    closed_at    {real},
    closed_by    TEXT NOT NULL DEFAULT '',
    close_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE case_recordings (
    name         TEXT NOT NULL REFERENCES cases(name),
    recording_id TEXT NOT NULL,
    actor        TEXT NOT NULL,
    added_at     {real} NOT NULL,
    held_before  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, recording_id)
);
CREATE INDEX case_recordings_recording ON case_recordings(recording_id);
"""
MIGRATIONS = {"sqlite": [_DDL.format(real="REAL")], "postgresql": [_DDL.format(real="DOUBLE PRECISION")]}
_COLS = "name, reason, actor, created_at, closed_at, closed_by, close_reason"


class CaseError(PermanentError, ValueError):
    """A case operation that cannot be done (bad name, closed case, duplicate)."""


def check_case_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise CaseError(f"case name {name[:80]!r} is not valid: 1 to 64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Case:
    name: str
    reason: str
    actor: str
    created_at: float
    closed_at: float | None = None
    closed_by: str = ""
    close_reason: str = ""

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason, "actor": self.actor, "created_at": self.created_at,
                "open": self.open, "closed_at": self.closed_at, "closed_by": self.closed_by,
                "close_reason": self.close_reason}


class Cases:
    def __init__(self, db: Database):
        self.db = db
        db.migrate("cases", MIGRATIONS)

    def create(self, name: str, reason: str, actor: str) -> Case:
        check_case_name(name)
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM cases WHERE name = ?", (name,)).fetchone():
                raise CaseError(f"case {name!r} exists")
            c.execute(f"INSERT INTO cases ({_COLS}) VALUES (?, ?, ?, ?, NULL, '', '')",
                      (name, reason, actor, time.time()))
        return self.get(name)

    def get(self, name: str) -> Case:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_COLS} FROM cases WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no case {name[:80]!r}")
        return Case(*row)

    def get_open(self, name: str) -> Case:
        case = self.get(name)
        if not case.open:
            raise CaseError(f"case {name!r} is closed")
        return case

    def list(self) -> list[Case]:
        with self.db.read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM cases ORDER BY created_at DESC").fetchall()
        return [Case(*r) for r in rows]

    def members(self, name: str) -> list[str]:
        with self.db.read() as c:
            rows = c.execute("SELECT recording_id FROM case_recordings WHERE name = ? ORDER BY added_at, recording_id",
                             (name,)).fetchall()
        return [r[0] for r in rows]

    def holders(self, recording_id: str, *, besides: str = "") -> list[str]:
        """Open cases other than ``besides`` that hold the recording."""
        with self.db.read() as c:
            rows = c.execute("SELECT k.name FROM case_recordings k JOIN cases c ON c.name = k.name "
                             "WHERE k.recording_id = ? AND c.closed_at IS NULL AND k.name <> ? ORDER BY k.name",
                             (recording_id, besides)).fetchall()
        return [r[0] for r in rows]

    def held_before(self, name: str, recording_id: str) -> bool:
        with self.db.read() as c:
            row = c.execute("SELECT held_before FROM case_recordings WHERE name = ? AND recording_id = ?",
                            (name, recording_id)).fetchone()
        return bool(row and row[0])

    def add(self, name: str, recording_id: str, actor: str, held_before: bool) -> bool:
        """True if added, False if the case already held it."""
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM case_recordings WHERE name = ? AND recording_id = ?",
                         (name, recording_id)).fetchone():
                return False
            c.execute("INSERT INTO case_recordings (name, recording_id, actor, added_at, held_before) "
                      "VALUES (?, ?, ?, ?, ?)", (name, recording_id, actor, time.time(), int(held_before)))
        return True

    def remove(self, name: str, recording_id: str) -> None:
        with self.db.write() as c:
            cur = c.execute("DELETE FROM case_recordings WHERE name = ? AND recording_id = ?", (name, recording_id))
            if cur.rowcount == 0:
                raise NotFound(f"case {name!r} does not hold recording {recording_id[:100]!r}")

    def close(self, name: str, actor: str, reason: str) -> None:
        with self.db.write() as c:
            cur = c.execute("UPDATE cases SET closed_at = ?, closed_by = ?, close_reason = ? "
                            "WHERE name = ? AND closed_at IS NULL", (time.time(), actor, reason, name))
            if cur.rowcount == 0:
                raise CaseError(f"case {name!r} is already closed")
