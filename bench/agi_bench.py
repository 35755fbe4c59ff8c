"""AGI benchmark: the consent flow over FastAGI vs the classic entry point, same run.

    python -m bench agi

FastAGI (``bench.agi_load``): a fake Asterisk drives the real ``FastAgiServer``,
consent handler, ledger and catalog (SQLite WAL, ``synchronous=FULL``, on the disk
named in the output) in a separate server process, at 1, 100 and 1,000 concurrent
calls with no pause between commands (closed loop, the server's capacity), then
1,000 calls paced like real callers (a 6-10 s notice, 1-2 s "thank you"), then the
same wire exchange against an asyncio server with no logic at all, on the same event
loop as the product (uvloop: ``agi.server.new_event_loop``), the floor any design on
that loop pays on this machine, at 100 and 1,000 calls. The targets compare the
product with the floor at the same concurrency (1,000 calls, closed loop): flows/s at
least 0.6 of the floor's, server CPU per flow at most 0.4 ms.

    python -m bench agi --closed-only --rounds 3 [--quick]

Only that pair, three times (the spread), without the paced and classic parts.

    python -m bench agi --logic [--profile]

Only the consent flow's Python on the event loop, without sockets or the writer
thread, beside the same three commands with no consent logic (``bench.agi_logic``).

After each closed-loop product scenario, the rows it committed are written again by
bare ``sqlite3`` with the product's schema in the same batch sizes
(``bench.agi_durable``): a second table sets the server's CPU per flow (split into
the event loop and the group-commit writer thread, each with its system part)
against the floor's plus that bare durable write, and shows the same rows through
the product's writer code alone (no event loop beside it, so no GIL hand-offs).

Classic: ``callvault-agi consent DID``, one process per call over pipes, one at a
time (wall and CPU per call) and one per core at a time (flows/s); a bare pyst2
script with the same dialogue and no ledger is the reference for "one Python
process per call" (shared/README.md measured 39 ms CPU for it).

Printed as tables; written to bench/results/agi-<time>.json.

    python -m bench agi --postgresql

Instead, the same server on SQLite and on PostgreSQL 15 (a private server from
``appliance/lab/pgserver.py``, ``fsync=on``, a fresh database per scenario), side by
side with the ratio PG/SQLite: flows/s at 100 calls closed loop and p99 at 1,000
paced calls. Written to bench/results/agi-backends-<time>.json.

    python -m bench agi --classic [--runs N]

Only the classic part: ``callvault-agi`` against the bare pyst2 script, CPU per call
and its ratio (target <= 2x). With ``PYTHONPATH`` set, the child processes get it too,
so a checkout ahead of the installed one is what is measured. Written to
bench/results/agi-classic-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import agi_durable, agi_load, agi_logic, agi_procstat

# --- the classic entry point: one process per call ----------------------------------

BARE_PYST2 = '''\
from asterisk.agi import AGI
agi = AGI()
linkedid = agi.get_variable("CHANNEL(linkedid)")
if agi.get_data("beep", 5000, 1) == "1":
    agi.appexec("MixMonitor", "/var/spool/asterisk/callvault/x.wav")
    for name, value in (("CALLVAULT_RECORDING_ID", "r1"), ("CALLVAULT_CONSENT_ID", "c1"),
                        ("CALLVAULT_RULE", "za-opt-in"), ("CALLVAULT_CONSENT", "granted"),
                        ("CALLVAULT_RECORD", "yes")):
        agi.set_variable(name, value)
    agi.appexec("UserEvent", "CallvaultConsent,Consent: granted")
    agi.stream_file("auth-thankyou")
'''


def classic_once(argv: list[str], env: dict[str, str], n: int) -> dict:
    """One call: start the process, speak Asterisk's side over pipes, reap it."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    linkedid = f"{1795329357 + n // 100000}.{n % 100000}".encode()
    commands = []
    try:
        proc.stdin.write(agi_load.env_block(n, fastagi=False))
        proc.stdin.flush()
        for line in proc.stdout:
            commands.append(line.rstrip(b"\n"))
            proc.stdin.write(agi_load.answer(commands[-1], linkedid))
            proc.stdin.flush()
    finally:
        proc.stdin.close()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall": time.perf_counter() - t0, "cpu": usage.ru_utime + usage.ru_stime,
            "ok": proc.returncode == 0 and agi_load.flow_granted(commands)}


def run_classic(argv: list[str], env: dict[str, str], *, runs: int, parallel: int = 1) -> dict:
    """``runs`` calls, ``parallel`` at a time; medians per call and flows/s."""
    results: list[dict] = []
    lock = threading.Lock()
    counter = iter(range(runs))

    def worker() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            r = classic_once(argv, env, n)
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _summary(results, runs=runs, parallel=parallel, elapsed=time.perf_counter() - t0)


def _summary(results: list[dict], *, runs: int, parallel: int, elapsed: float | None) -> dict:
    cpu = sorted(r["cpu"] * 1e3 for r in results)
    return {"runs": runs, "parallel": parallel, "ok": sum(r["ok"] for r in results),
            "median_wall_ms": statistics.median(r["wall"] for r in results) * 1e3,
            "median_cpu_ms": statistics.median(cpu), "p10_cpu_ms": cpu[len(cpu) // 10],
            "p90_cpu_ms": cpu[len(cpu) * 9 // 10],
            "flows_per_s": runs / elapsed if elapsed else None}


def classic_suite(workdir: Path, prompts_root: Path, *, runs: int = 20) -> dict:
    """callvault-agi and a bare pyst2 script, sequentially and two at a time."""
    config = workdir / "callvault.toml"
    config.write_text(agi_load.config_text(workdir, prompts_root=prompts_root))
    env = {"PATH": os.environ.get("PATH", os.defpath), "CALLVAULT_CONFIG": str(config)}
    if os.environ.get("PYTHONPATH"):  # a checkout ahead of the installed one: measure its code
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    entry = [str(Path(sys.prefix) / "bin" / "callvault-agi"), "consent", agi_load.DID]
    bare = workdir / "bare_pyst2.py"
    bare.write_text(BARE_PYST2)
    both = {"callvault_agi": entry, "bare_pyst2": [sys.executable, str(bare)]}
    for argv in both.values():
        classic_once(argv, env, 0)  # warm the page cache and __pycache__
    # Sequential calls alternate between the two, so both see the same load from
    # whatever else runs on the machine: the ratio is what counts.
    calls: dict[str, list[dict]] = {name: [] for name in both}
    for n in range(runs):
        for name, argv in both.items():
            calls[name].append(classic_once(argv, env, n))
    return {name: {"sequential": _summary(calls[name], runs=runs, parallel=1, elapsed=None),
                   "parallel": run_classic(argv, env, runs=runs, parallel=os.cpu_count() or 2)}
            for name, argv in both.items()}


# --- the whole thing -------------------------------------------------------------------

SCENARIOS = (
    # concurrency, measured seconds, warm-up seconds, paced, ramp seconds, server
    (1, 3.0, 1.0, False, 0.0, "serve"),
    (100, 5.0, 1.0, False, 0.0, "serve"),
    (1000, 8.0, 2.0, False, 0.0, "serve"),
    (1000, 12.0, 10.0, True, 10.0, "serve"),
    (100, 4.0, 1.0, False, 0.0, "floor"),
    (1000, 8.0, 2.0, False, 0.0, "floor"),
)
# --closed-only: the pair the targets compare (1,000 calls, closed loop), per round.
CLOSED_PAIR = (
    (1000, 8.0, 2.0, False, 0.0, "serve"),
    (1000, 8.0, 2.0, False, 0.0, "floor"),
)


def _quick(scenarios) -> tuple:
    """The same scenarios, measured for about half as long."""
    return tuple((n, max(2.0, seconds / 2), min(warmup, 2.0) if not paced else warmup / 2, paced,
                  ramp / 2, kind) for n, seconds, warmup, paced, ramp, kind in scenarios)


def measure_classic(*, runs: int = 20) -> dict:
    """The classic entry point and the bare pyst2 script only."""
    base = Path(tempfile.mkdtemp(prefix="callvault-agi-classic-"))
    try:
        prompts = agi_load.install_prompts(base)
        d = base / "classic"
        d.mkdir()
        return {"classic": classic_suite(d, prompts, runs=runs), "cores": os.cpu_count()}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def measure(*, classic_runs: int = 20, scenarios=SCENARIOS, rounds: int = 1, classic: bool = True) -> dict:
    base = Path(tempfile.mkdtemp(prefix="callvault-agi-bench-"))
    results: dict = {"fastagi": [], "db_filesystem": agi_procstat.filesystem(base), "cores": os.cpu_count()}
    try:
        prompts = agi_load.install_prompts(base)
        for round_ in range(rounds):
            for i, (n, seconds, warmup, paced, ramp, kind) in enumerate(scenarios):
                d = base / f"fastagi-{round_}-{i}"
                d.mkdir()
                r = asyncio.run(agi_load.run_fastagi(
                    n, seconds=seconds, warmup=warmup, workdir=d, paced=paced, ramp=ramp,
                    server_kind=kind, prompts_root=prompts))
                if kind == "serve" and not paced:  # the same rows, bare sqlite3, same batches
                    batch = round(r["writes_per_batch"])
                    r["bare_write"] = agi_durable.bare_write(d / "callvault.db", d / "bare.db", batch=batch)
                    r["product_write"] = agi_durable.product_write(d / "callvault.db", d / "replay.db",
                                                                   batch=batch)
                results["fastagi"].append({**r, "round": round_})
        if classic:
            d = base / "classic"
            d.mkdir()
            results["classic"] = classic_suite(d, prompts, runs=classic_runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


# SQLite against PostgreSQL: the closed loop's capacity, the paced calls' latency.
BACKEND_SCENARIOS = (
    # concurrency, measured seconds, warm-up seconds, paced, ramp seconds
    (100, 5.0, 1.0, False, 0.0),
    (1000, 12.0, 10.0, True, 10.0),
)


def measure_backends(scenarios=BACKEND_SCENARIOS) -> dict:
    from appliance.lab.pgserver import PgServer

    base = Path(tempfile.mkdtemp(prefix="callvault-agi-backends-"))
    results: dict = {"db_filesystem": agi_procstat.filesystem(base), "cores": os.cpu_count(),
                     "sqlite": [], "postgresql": []}
    try:
        prompts = agi_load.install_prompts(base)
        with PgServer(fsync=True) as pg:  # its own temp directory, on the same disk
            for backend in ("sqlite", "postgresql"):
                for i, (n, seconds, warmup, paced, ramp) in enumerate(scenarios):
                    d = base / f"{backend}-{i}"
                    d.mkdir()
                    url = pg.new_database() if backend == "postgresql" else None
                    results[backend].append(asyncio.run(agi_load.run_fastagi(
                        n, seconds=seconds, warmup=warmup, workdir=d, paced=paced, ramp=ramp, db_url=url,
                        prompts_root=prompts)))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def backend_table(results: dict) -> str:
    rows = [["FastAGI consent flow", "SQLite", "PostgreSQL", "PG/SQLite"]]
    for s, p in zip(results["sqlite"], results["postgresql"]):
        name = _name(s)
        mix_s = s["by_command_ms"].get("EXEC MixMonitor", {"p99": 0.0})["p99"]
        mix_p = p["by_command_ms"].get("EXEC MixMonitor", {"p99": 0.0})["p99"]
        for what, a, b, fmt in (("flows/s", s["flows_per_s"], p["flows_per_s"], "{:.0f}"),
                                ("turn p99 ms", s["p99_ms"], p["p99_ms"], "{:.2f}"),
                                ("MixMonitor turn p99 ms", mix_s, mix_p, "{:.2f}"),
                                ("server CPU/flow ms", s["server_cpu_ms_per_flow"],
                                 p["server_cpu_ms_per_flow"], "{:.2f}")):
            rows.append([f"{name}: {what}", fmt.format(a), fmt.format(b), f"{b / a:.2f}" if a else "-"])
        rows.append([f"{name}: failed / granted in ledger",
                     f"{s['failed'] + s['connect_errors']} / {s['ledger_granted']}",
                     f"{p['failed'] + p['connect_errors']} / {p['ledger_granted']}", ""])
    return (f"AGI consent flow by database, {results['cores']} cores; SQLite WAL synchronous=FULL and "
            f"PostgreSQL 15 fsync=on, both on {results['db_filesystem']}; PostgreSQL over TCP on this "
            f"host.\n\n" + _table(rows))


# --- tables ------------------------------------------------------------------------

# The consent flow against the no-logic floor at the same concurrency, same run.
TARGET_FLOOR_RATIO = 0.6  # flows/s, 1,000 calls, closed loop
TARGET_CPU_MS = 0.4  # server CPU per consent flow, 1,000 calls, closed loop


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [_row(rows[0], widths), "  ".join("-" * w for w in widths)]
    lines += [_row(r, widths) for r in rows[1:]]
    return "\n".join(lines)


def _name(r: dict) -> str:
    if r["server"] == "floor":
        return f"floor: uvloop, no logic, {_calls(r['concurrency'])}"
    return f"FastAGI, {_calls(r['concurrency'])}" + (", paced" if r["paced"] else "")


def _calls(n: int) -> str:
    return f"{n:,} call" + ("s" if n != 1 else "")


def _floor_of(results: dict, r: dict) -> dict | None:
    """The floor measured at ``r``'s concurrency, closed loop, in the same round."""
    return next((f for f in results["fastagi"] if f["server"] == "floor" and not f["paced"]
                 and f["concurrency"] == r["concurrency"] and f.get("round", 0) == r.get("round", 0)), None)


def tables(results: dict) -> str:
    classic = results.get("classic")
    classic_fps = classic["callvault_agi"]["parallel"]["flows_per_s"] if classic else 0.0
    rounds = len({r.get("round", 0) for r in results["fastagi"]})
    rows = [["scenario", "flows/s", "vs floor", "vs classic", "turn p50 ms", "turn p99 ms",
             "MixMonitor turn p50/p99 ms", "server CPU/flow ms", "CPU vs floor",
             "cores: server/generator/others/steal", "failed"]]
    for r in results["fastagi"]:
        mix = r["by_command_ms"].get("EXEC MixMonitor", {"p50": 0, "p99": 0})
        floor = None if r["paced"] else _floor_of(results, r)
        rows.append([
            (f"#{r.get('round', 0) + 1} " if rounds > 1 else "") + _name(r),
            f"{r['flows_per_s']:.0f}",
            f"{r['flows_per_s'] / floor['flows_per_s']:.2f}" if floor and floor["flows_per_s"] else "-",
            f"{r['flows_per_s'] / classic_fps:.1f}x" if classic_fps else "-",
            f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{mix['p50']:.2f} / {mix['p99']:.2f}",
            f"{r['server_cpu_ms_per_flow']:.2f}",
            (f"{r['server_cpu_ms_per_flow'] / floor['server_cpu_ms_per_flow']:.1f}x"
             if floor and floor["server_cpu_ms_per_flow"] else "-"),
            (f"{r['server_cpu_share']:.2f}/{r['generator_cpu_share']:.2f}/"
            f"{r['others_cpu_share']:.2f}/{r['steal_share']:.2f}"),
            f"{r['failed'] + r['connect_errors']}"])
    out = [(f"AGI consent flow, {results['cores']} cores, database on {results['db_filesystem']} "
           f"(WAL, synchronous=FULL); server and load generator are separate processes on the "
           f"same cores. A turn = our reply written -> next command received. \"vs floor\" is "
           f"against the no-logic server at the same concurrency in the same round."), "",
           _table(rows), ""]
    if any("bare_write" in r for r in results["fastagi"]):
        out += [durable_table(results), ""]
    if classic:
        out += [classic_table(results), ""]
    pairs = [(r, f) for r in results["fastagi"] if r["server"] == "serve" and not r["paced"]
             and r["concurrency"] == 1000 and (f := _floor_of(results, r)) is not None]
    ratios = [r["flows_per_s"] / f["flows_per_s"] for r, f in pairs if f["flows_per_s"]]
    cpus = [r["server_cpu_ms_per_flow"] for r, _ in pairs]
    checks = [
        (f"flows/s >= {TARGET_FLOOR_RATIO:g} x the floor, 1,000 calls closed loop",
         bool(ratios) and min(ratios) >= TARGET_FLOOR_RATIO, _spread(ratios, "{:.2f}")),
        (f"server CPU/flow <= {TARGET_CPU_MS:g} ms, 1,000 calls closed loop",
         bool(cpus) and max(cpus) <= TARGET_CPU_MS,
         _spread(cpus, "{:.2f} ms") + (f" (floor {_spread([f['server_cpu_ms_per_flow'] for _, f in pairs], '{:.2f} ms')})"
                                       if pairs else "")),
    ]
    if classic:
        checks.append(classic_check(results))
    out += ["targets:"] + [f"  {'met   ' if ok else 'MISSED'}  {what}: {detail}"
                           for what, ok, detail in checks]
    return "\n".join(out)


def durable_table(results: dict) -> str:
    """Server CPU per flow against what no design avoids: the floor's wire plus the
    same rows written durably by bare sqlite3 in the same batch sizes (same run)."""
    rows = [["1,000 calls, closed loop", "ours ms", "event loop / writer ms (sys)", "floor ms (sys)",
             "bare write ms (rows/commit)", "writer code alone ms", "floor + bare ms", "ours / (floor + bare)"]]
    for r in results["fastagi"]:
        bare, floor = r.get("bare_write"), _floor_of(results, r)
        if not bare or not floor:
            continue
        threads = r.get("thread_cpu_ms_per_flow", {})
        unavoidable = floor["server_cpu_ms_per_flow"] + bare["cpu_ms_per_flow"]
        rows.append([f"round {r.get('round', 0) + 1}", f"{r['server_cpu_ms_per_flow']:.2f}",
                     (f"{threads.get('MainThread', 0):.2f} ({threads.get('MainThread sys', 0):.2f}) / "
                     f"{threads.get('callvault-db-writer', 0):.2f} "
                     f"({threads.get('callvault-db-writer sys', 0):.2f})"),
                     (f"{floor['server_cpu_ms_per_flow']:.2f} "
                     f"({floor.get('thread_cpu_ms_per_flow', {}).get('MainThread sys', 0):.2f})"),
                     f"{bare['cpu_ms_per_flow']:.3f} ({bare['batch']})",
                     f"{r.get('product_write', {}).get('cpu_ms_per_flow', 0):.3f}", f"{unavoidable:.2f}",
                     f"{r['server_cpu_ms_per_flow'] / unavoidable:.2f}x"])
    return ("Server CPU per flow against the unavoidable work, same round: the floor (the wire, no "
            "logic) plus the flow's ledger entry, subject row and catalog row written by bare sqlite3 "
            "with the product's schema, as many per commit as the group-commit writer made. \"Writer "
            "code alone\": the same rows through the product's writer code (Ledger._append_many), same "
            "batches, one thread, no event loop beside it.\n\n"
            + _table(rows))


def classic_table(results: dict) -> str:
    classic = results["classic"]["callvault_agi"]
    bare = results["classic"]["bare_pyst2"]
    base_cpu = bare["sequential"]["median_cpu_ms"]
    crow = [["classic (one process per call)", "median wall ms", "median CPU ms", "CPU p10-p90 ms", "CPU vs bare",
             f"flows/s, {classic['parallel']['parallel']} at a time", "flows/s if CPU-bound",
             "ok runs"]]
    for name, c in (("callvault-agi consent DID", classic), ("bare pyst2 script (reference)", bare)):
        cpu = c["sequential"]["median_cpu_ms"]
        crow.append([name, f"{c['sequential']['median_wall_ms']:.1f}", f"{cpu:.1f}",
                     f"{c['sequential']['p10_cpu_ms']:.0f}-{c['sequential']['p90_cpu_ms']:.0f}",
                     f"{cpu / base_cpu:.2f}x", f"{c['parallel']['flows_per_s']:.1f}",
                     f"{(results['cores'] or 1) * 1000 / cpu:.1f}",
                     (f"{c['sequential']['ok'] + c['parallel']['ok']}/"
                     f"{c['sequential']['runs'] + c['parallel']['runs']}")])
    return _table(crow)


TARGET_CLASSIC_RATIO = 2.0


def classic_check(results: dict) -> tuple[str, bool, str]:
    """callvault-agi's CPU per call against the bare pyst2 script's, same run."""
    cpu = results["classic"]["callvault_agi"]["sequential"]["median_cpu_ms"]
    base = results["classic"]["bare_pyst2"]["sequential"]["median_cpu_ms"]
    return (f"classic CPU/call <= {TARGET_CLASSIC_RATIO:g}x the bare pyst2 script",
            cpu <= TARGET_CLASSIC_RATIO * base, f"{cpu / base:.1f}x ({cpu:.0f} vs {base:.0f} ms)")


def classic_tables(results: dict) -> str:
    what, ok, detail = classic_check(results)
    head = f"Classic AGI consent flow, {results['cores']} cores, one process per call over pipes."
    return "\n".join([head, "", classic_table(results), "",
                      "targets:", f"  {'met   ' if ok else 'MISSED'}  {what}: {detail}"])


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "not measured"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(min(values))} .. {fmt.format(max(values))} over {len(values)} rounds"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench agi")
    parser.add_argument("--postgresql", action="store_true",
                        help="the FastAGI server on SQLite and on PostgreSQL, side by side")
    parser.add_argument("--classic", action="store_true",
                        help="only the classic entry point against the bare pyst2 script")
    parser.add_argument("--runs", type=int, default=20,
                        help="classic calls per mode (sequential, parallel); default 20")
    parser.add_argument("--closed-only", action="store_true",
                        help="only the product and the floor at 1,000 calls, closed loop (no paced "
                             "calls, no classic entry point): the pair the FastAGI targets compare")
    parser.add_argument("--quick", action="store_true", help="measure each FastAGI scenario about half as long")
    parser.add_argument("--logic", action="store_true",
                        help="only the consent flow's Python on the event loop, no I/O (and the AGI layer alone)")
    parser.add_argument("--profile", action="store_true", help="with --logic: cProfile of the flow")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="repeat the FastAGI scenarios N times (the spread of the ratios)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.logic:
        results, kind, show = agi_logic.measure(profile=args.profile), "agi-logic", agi_logic.table
    elif args.postgresql:
        results, kind, show = measure_backends(), "agi-backends", backend_table
    elif args.classic:
        results, kind, show = measure_classic(runs=args.runs), "agi-classic", classic_tables
    else:
        scenarios = CLOSED_PAIR if args.closed_only else SCENARIOS
        results, kind, show = measure(classic_runs=args.runs, scenarios=_quick(scenarios) if args.quick else scenarios,
                                      rounds=max(1, args.rounds), classic=not args.closed_only), "agi", tables
    results["total_seconds"] = time.perf_counter() - t0
    results["loadavg_after"] = os.getloadavg()
    print(show(results))
    print(f"\n(total bench time {results['total_seconds']:.0f} s; load average after "
          f"{results['loadavg_after'][0]:.1f})")
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
