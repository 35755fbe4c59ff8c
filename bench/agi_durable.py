"""The durable write alone: the consent flow's rows written by bare ``sqlite3``.

After a FastAGI scenario on SQLite, :func:`bare_write` copies the rows that scenario
committed (its ``ledger`` entries, their ``ledger_subjects`` rows and the
``recordings`` rows, in seq order) into a fresh database that has the product's
schema (the migrations of ``Ledger`` and ``Catalog``: the same indexes and
triggers), in transactions of the size the group-commit writer made in that
scenario, WAL with ``synchronous=FULL`` as the product. Three plain ``INSERT`` s per
flow and one ``BEGIN IMMEDIATE ... COMMIT`` per batch: no head read, no savepoint, no
Python object per row. What it costs (CPU of the writing thread, per flow) is what
any design that keeps this schema durable pays; the product's writer thread pays
that plus its own work.

:func:`product_write` replays the same rows through the product's own writer code
(``Ledger`` appends carrying their catalog rows, the runs the group-commit writer
hands to ``Ledger._append_many``: the chain computed again, one head read and
multi-row inserts per batch) in the same batch sizes, in one thread with no event
loop beside it: what the writer's code costs without the loop competing for the GIL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

_LEDGER = ("seq", "ts", "kind", "call_id", "recording_id", "body", "prev_hash", "hash")


def _schema(path: Path) -> None:
    from storage.catalog import Catalog
    from storage.ledger import Ledger
    from storage.sqlitedb import SqliteDatabase

    db = SqliteDatabase(path)
    try:
        Ledger(db)
        Catalog(db, node="bench")
    finally:
        db.close()


def _flows(source: Path, limit: int) -> list[tuple]:
    """(ledger row, caller HMAC, catalog row) of the first ``limit`` flows of ``source``."""
    from storage.catalog import _COLUMNS

    src = sqlite3.connect(source)
    try:
        ledger = src.execute(f"SELECT {', '.join(_LEDGER)} FROM ledger ORDER BY seq LIMIT ?", (limit,)).fetchall()
        subjects = dict(src.execute("SELECT seq, caller_hmac FROM ledger_subjects").fetchall())
        recordings = {r[0]: r for r in src.execute(f"SELECT {', '.join(_COLUMNS)} FROM recordings").fetchall()}
    finally:
        src.close()
    return [(entry, subjects.get(entry[0]), recordings.get(entry[4])) for entry in ledger]


def bare_write(source: Path, target: Path, *, batch: int, limit: int = 6000) -> dict:
    """The first ``limit`` flows of ``source`` into ``target`` (new), ``batch`` per commit."""
    from storage.catalog import _COLUMNS

    flows = _flows(source, limit)
    _schema(target)
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        insert_ledger = f"INSERT INTO ledger ({', '.join(_LEDGER)}) VALUES ({', '.join('?' * len(_LEDGER))})"
        insert_subject = "INSERT INTO ledger_subjects (caller_hmac, seq) VALUES (?, ?)"
        insert_recording = f"INSERT INTO recordings ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        execute = conn.execute
        batch = max(1, batch)
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for start in range(0, len(flows), batch):
            execute("BEGIN IMMEDIATE")
            for entry, subject, recording in flows[start:start + batch]:
                execute(insert_ledger, entry)
                if subject is not None:
                    execute(insert_subject, (subject, entry[0]))
                if recording is not None:
                    execute(insert_recording, recording)
            execute("COMMIT")
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    finally:
        conn.close()
    n = max(len(flows), 1)
    return {"flows": len(flows), "batch": batch, "cpu_ms_per_flow": cpu / n * 1e3,
            "wall_ms_per_flow": wall / n * 1e3,
            "recordings": sum(r is not None for _, _, r in flows)}


def product_write(source: Path, target: Path, *, batch: int, limit: int = 6000) -> dict:
    """The same flows through the product's writer code into ``target`` (new)."""
    from storage.catalog import _COLUMNS, Catalog, Recording
    from storage.ledger import Ledger
    from storage.sqlitedb import SqliteDatabase

    flows = _flows(source, limit)
    db = SqliteDatabase(target)
    try:
        ledger, catalog = Ledger(db), Catalog(db, node="bench")
        ops = [ledger._op(entry[2], json.loads(entry[5]), entry[3], entry[4],
                          catalog.add_op(Recording(**dict(zip(_COLUMNS, rec, strict=True)))) if rec else None)
               for entry, _, rec in flows]
        batch = max(1, batch)
        cpu0 = time.thread_time()
        for start in range(0, len(ops), batch):
            run = ops[start:start + batch]
            with db.write() as conn:
                if len(run) > 1:
                    run[0].run_many(conn, run)
                else:
                    run[0](conn)
        cpu = time.thread_time() - cpu0
    finally:
        db.close()
    return {"flows": len(flows), "batch": batch, "cpu_ms_per_flow": cpu / max(len(flows), 1) * 1e3}
