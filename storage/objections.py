"""Standing objections: a data subject's "never record my calls", kept as HMACs.

An objection is stored as the caller HMACs of every form of the number the person
gave (``hmac_index.subject_hmacs``), never the number itself, with the reason and
who recorded it. The consent route asks :meth:`Objections.objected` with the
presented caller's HMAC before any notice is played. Lifting keeps the row (lifted
at, by whom, why): the ledger and this table both show the objection's history.
"""

from __future__ import annotations

import json
import mmap
import os
import time
from collections.abc import Sequence
from typing import Any

from . import private
from .db import Database
from .errors import PermanentError
from .record import Record

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
# Version 2: a counter every change to the objections moves, in the same transaction
# (_Marker: on SQLite the consent route keeps the objections in memory while it holds).
_GENERATION_DDL = """
CREATE TABLE objection_generation (gen INTEGER NOT NULL);
INSERT INTO objection_generation (gen) VALUES (0);
"""
MIGRATIONS = {"sqlite": [_DDL.format(real="REAL"), _GENERATION_DDL],
              "postgresql": [_DDL.format(real="DOUBLE PRECISION"), _GENERATION_DDL]}
_COLS = "objection_id, caller_hmacs, reason, actor, created_at, lifted_at, lifted_by, lift_reason"


class Objection(Record):
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


class _Marker:
    """The objections' generation, mirrored in a file beside a SQLite database
    (``<database>-objections``, 8 bytes, little-endian) for the processes on this host.

    Every change to the objections moves ``objection_generation.gen`` in its own
    transaction and, before that transaction commits, writes the new number here. A
    reader maps the file and compares it with the number its copy of the objections was
    read at: equal, the copy is current (a change in progress has not committed yet);
    different, it reads the database. A change whose transaction never commits leaves
    the file ahead of the database, and readers read the database until the next change
    brings the two together again. The file belongs to the database like its ``-wal``
    and ``-shm`` files; one removed or replaced while a reader runs is noticed within a
    second (its inode is checked at most once a second) and read again."""

    RECHECK = 1.0  # seconds between two checks that the mapped file is still the path's

    def __init__(self, db_path: str | os.PathLike[str]):
        self.db_path = os.fspath(db_path)
        self.path = f"{self.db_path}-objections"
        if not os.path.exists(self.path):
            self.publish(0)
        self._map: mmap.mmap | None = None
        self._inode = (0, 0)
        self._checked = 0.0

    def publish(self, gen: int) -> None:
        """Write ``gen``, creating the file 0600 if it is missing (as root: owned like
        the database, as SQLite does with its ``-wal`` and ``-shm`` files)."""
        try:
            # Never truncated: a reader's map of a file shorter than the map faults (SIGBUS).
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, private.FILE_MODE)
            try:
                os.fchmod(fd, private.FILE_MODE)  # whatever the umask
                if os.geteuid() == 0:
                    st = os.stat(self.db_path)
                    os.fchown(fd, st.st_uid, st.st_gid)
                os.pwrite(fd, gen.to_bytes(8, "little"), 0)
            finally:
                os.close(fd)
        except OSError as exc:
            raise PermanentError(f"objections: cannot write {self.path}: {exc}; it must be writable by "
                                 "whoever writes the database") from exc

    def current(self) -> int:
        """The generation the file says; -1 when it cannot be read (the caller reads the database)."""
        now = time.monotonic()
        if self._map is None or now - self._checked > self.RECHECK:
            self._checked = now
            self._remap()
            if self._map is None:
                return -1
        return int.from_bytes(self._map[:8], "little")

    def _remap(self) -> None:
        try:
            st = os.stat(self.path)
            if self._map is not None and (st.st_dev, st.st_ino) == self._inode:
                return
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)
                st = os.fstat(f.fileno())
        except (OSError, ValueError):  # missing, unreadable, or shorter than 8 bytes
            self._map = None
            return
        self._map, self._inode = mapped, (st.st_dev, st.st_ino)


class Objections:
    def __init__(self, db: Database, *, hold: bool = False):
        """``hold``: keep the objections in force in memory for :meth:`objected` (a
        long-running server's consent route, on SQLite); otherwise each call reads the
        database (one indexed read: what a one-call classic AGI process wants)."""
        self.db = db
        db.migrate("objections", MIGRATIONS)
        path = getattr(db, "path", None) if db.dialect == "sqlite" else None
        self._marker = _Marker(path) if path is not None else None
        self._hold = hold and self._marker is not None
        # (generation, caller HMAC -> objection id): the objections in force, read at
        # that generation; only on SQLite (a PostgreSQL database is shared by hosts).
        self._in_force: tuple[int, dict[str, str]] = (-2, {})

    def _changed(self, c: Any) -> None:
        """In a change's transaction: move the generation, and mirror it before commit."""
        c.execute("UPDATE objection_generation SET gen = gen + 1")
        if self._marker is not None:
            self._marker.publish(c.execute("SELECT gen FROM objection_generation").fetchone()[0])

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
            self._changed(c)
        return oid, insert

    def lift_op(self, ids: Sequence[str], reason: str, actor: str) -> Any:
        now = time.time()

        def lift(c: Any) -> None:
            for oid in ids:
                c.execute("UPDATE objections SET lifted_at = ?, lifted_by = ?, lift_reason = ? "
                          "WHERE objection_id = ? AND lifted_at IS NULL", (now, actor, reason, oid))
            self._changed(c)
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
        """The id of an objection in force for this caller HMAC, or None. Every change
        committed before the call is seen: on SQLite from a copy held in memory while
        the generation file says it is current (_Marker), else from the database."""
        if self._hold:
            gen = self._marker.current()
            held_at, in_force = self._in_force
            if gen == held_at:
                return in_force.get(caller_hmac)
            return self._read(caller_hmac, gen)
        with self.db.read() as c:
            return self._one(c, caller_hmac)

    def _read(self, caller_hmac: str, gen: int) -> str | None:
        with self.db.read() as c:
            # The generation first: the rows read after it are at least as new, so a copy
            # is never labelled newer than it is.
            if gen < 0 or c.execute("SELECT gen FROM objection_generation").fetchone()[0] != gen:
                return self._one(c, caller_hmac)  # a change not committed (yet): no copy
            in_force: dict[str, str] = {}
            for h, oid in c.execute("SELECT h.caller_hmac, o.objection_id FROM objection_hmacs h JOIN objections o "
                                    "ON o.objection_id = h.objection_id WHERE o.lifted_at IS NULL "
                                    "ORDER BY o.created_at"):
                in_force.setdefault(h, oid)
        self._in_force = (gen, in_force)
        return in_force.get(caller_hmac)

    @staticmethod
    def _one(c: Any, caller_hmac: str) -> str | None:
        row = c.execute("SELECT o.objection_id FROM objection_hmacs h JOIN objections o "
                        "ON o.objection_id = h.objection_id WHERE h.caller_hmac = ? AND o.lifted_at IS NULL "
                        "ORDER BY o.created_at", (caller_hmac,)).fetchone()
        return row[0] if row else None

    def list(self, *, include_lifted: bool = True) -> list[Objection]:
        where = "" if include_lifted else "WHERE lifted_at IS NULL "
        with self.db.read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM objections {where}ORDER BY created_at DESC").fetchall()
        return [_row(r) for r in rows]
