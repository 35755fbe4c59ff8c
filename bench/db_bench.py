"""Database benchmark: ledger appends per second, SQLite vs PostgreSQL, same run.

    python -m bench db

SQLite: a WAL file with ``synchronous=FULL`` in a temp directory on this disk.
PostgreSQL 15: a private server (``appliance/lab/pgserver.py``) on 127.0.0.1 in a temp
directory on the same disk, ``fsync=on`` and ``synchronous_commit=on`` (durable, like
SQLite ``FULL``). Two modes: *single* (``Ledger.append`` one after another: one
transaction and one WAL flush per entry) and *batched* (``Ledger.append_async`` with
100 callers at once: the group-commit writer puts a batch in one transaction). On
PostgreSQL every append also takes the ledger's advisory lock.

Printed as a table with the ratio to SQLite; written to bench/results/db-<time>.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SINGLE = 300
BATCHED = 3000
CALLERS = 100


def measure(url: str) -> dict[str, float]:
    from storage.dburl import open_database
    from storage.ledger import Ledger

    with open_database(url) as db:
        ledger = Ledger(db)
        t0 = time.perf_counter()
        for i in range(SINGLE):
            ledger.append("audit.play", {"i": i})
        single = SINGLE / (time.perf_counter() - t0)

        async def batched() -> float:
            queue = iter(range(BATCHED))

            async def caller() -> None:
                for i in queue:
                    await ledger.append_async("consent", {"i": i})

            t = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(CALLERS)))
            return BATCHED / (time.perf_counter() - t)

        rate = asyncio.run(batched())
        assert ledger.verify().checked == SINGLE + BATCHED
    return {"single": single, "batched": rate}


def table(r: dict) -> str:
    rows = [("ledger appends/s", "SQLite (WAL, FULL)", "PostgreSQL 15 (fsync on)", "ratio vs SQLite")]
    for mode, label in (("single", "single (one commit each)"),
                        ("batched", f"batched ({CALLERS} callers, group commit)")):
        s, p = r["sqlite"][mode], r["postgresql"][mode]
        rows.append((label, f"{s:.0f}", f"{p:.0f}", f"{p / s:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def main(argv: list[str]) -> int:
    if argv:
        raise SystemExit(f"unknown arguments {argv}; python -m bench db takes none")
    from appliance.lab.pgserver import PgServer

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="callvault-db-bench-") as d:
        results["sqlite"] = measure(f"sqlite:///{Path(d) / 'bench.db'}")
    with PgServer(fsync=True) as server:
        results["postgresql"] = measure(server.new_database())
    print(table(results))
    print(f"\n({SINGLE} single and {BATCHED} batched appends per backend; {os.cpu_count()} CPUs, "
          "PostgreSQL on the same host over TCP)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"db-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
