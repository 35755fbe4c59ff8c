"""Database benchmark: ledger appends per second, SQLite vs PostgreSQL, same run.

    python -m bench db

SQLite: a WAL file with ``synchronous=FULL`` in a temp directory on this disk.
PostgreSQL 15: a private server (``appliance/lab/pgserver.py``) on 127.0.0.1 in a temp
directory on the same disk, ``fsync=on`` and ``synchronous_commit=on`` (durable, like
SQLite ``FULL``). Two modes: *single* (``Ledger.append`` one after another: one
transaction and one WAL flush per entry) and *batched* (``Ledger.append_async`` with
100 callers at once: the group-commit writer puts a batch in one transaction). On
PostgreSQL every append also takes the ledger's advisory lock.

Then two nodes at once: OS processes, each with its own ``Database`` handle (its own
pools and group-commit writer) and CALLERS callers, append to one PostgreSQL database
for NODE_SECONDS; against one such process, in the same run, on a fresh database.
Afterwards the ledger must verify as one linear chain holding every append.

Printed as tables with the ratio to SQLite; written to bench/results/db-<time>.json.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SINGLE = 300
BATCHED = 3000
CALLERS = 100
NODE_SECONDS = 5.0


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


def node_appends(url: str, name: str, seconds: float) -> None:
    """One node (run as ``python -m bench.db_bench node URL NAME SECONDS``): report ready
    on stdout, wait for "go" on stdin, append with CALLERS callers for ``seconds``."""
    from storage.dburl import open_database
    from storage.ledger import Ledger

    with open_database(url) as db:
        ledger = Ledger(db)
        ledger.head()  # the pools are open before the clock starts

        async def run() -> tuple[int, float]:
            count = 0
            t0 = time.perf_counter()
            deadline = t0 + seconds

            async def caller(c: int) -> None:
                nonlocal count
                while time.perf_counter() < deadline:
                    await ledger.append_async("consent", {"node": name, "caller": c, "i": count})
                    count += 1

            await asyncio.gather(*(caller(c) for c in range(CALLERS)))
            return count, time.perf_counter() - t0

        print("ready", flush=True)
        sys.stdin.readline()
        count, elapsed = asyncio.run(run())
        print(json.dumps({"node": name, "appends": count, "seconds": elapsed}), flush=True)


def nodes_at_once(url: str, names: list[str]) -> dict:
    """Start one process per node, let them all go at once, collect their counts."""
    from storage.dburl import open_database
    from storage.ledger import Ledger

    with open_database(url) as db:
        Ledger(db)  # the schema exists before the nodes race for it
    procs = [subprocess.Popen([sys.executable, "-m", "bench.db_bench", "node", url, name, str(NODE_SECONDS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for name in names]
    try:
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a node process failed to start (exit {proc.wait()})")
        t0 = time.perf_counter()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        nodes = [json.loads(proc.stdout.readline()) for proc in procs]
        wall = time.perf_counter() - t0
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(30)
    total = sum(n["appends"] for n in nodes)
    with open_database(url) as db:
        result = Ledger(db).verify()
        with db.read() as c:
            bodies = [row[0] for row in c.execute("SELECT body FROM ledger ORDER BY seq")]
    order = [json.loads(b)["node"] for b in bodies]
    return {"nodes": nodes, "total": total, "wall": wall, "per_s": total / wall,
            "chain_ok": result.ok and result.checked == total, "chain_entries": result.checked,
            "chain_reason": result.reason, "node_switches": sum(a != b for a, b in itertools.pairwise(order))}


def node_table(one: dict, two: dict) -> str:
    rows = [("PostgreSQL ledger appends/s", "total", "per node", "vs one node")]
    for label, r in (("one node (one process)", one), ("two nodes at once (two processes)", two)):
        per = " / ".join(f"{n['appends'] / n['seconds']:.0f}" for n in r["nodes"])
        rows.append((label, f"{r['per_s']:.0f}", per, f"{r['per_s'] / one['per_s']:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    verdict = "ok" if two["chain_ok"] else f"BROKEN: {two['chain_reason']}"
    lines.append(f"chain after two nodes: {two['chain_entries']} entries for {two['total']} appends, one linear "
                 f"chain {verdict}; the node changes {two['node_switches']} times along it")
    return "\n".join(lines)


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
        results["one_node"] = nodes_at_once(server.new_database(), ["node-a"])
        results["two_nodes"] = nodes_at_once(server.new_database(), ["node-a", "node-b"])
    print(table(results))
    print(f"\n({SINGLE} single and {BATCHED} batched appends per backend; {os.cpu_count()} CPUs, "
          "PostgreSQL on the same host over TCP)\n")
    print(node_table(results["one_node"], results["two_nodes"]))
    print(f"\n({NODE_SECONDS:g} s per run, {CALLERS} callers per node, group commit in each node)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"db-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    return 0 if results["two_nodes"]["chain_ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "node":
        node_appends(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
