"""Archiver benchmark: every number next to a baseline measured in the same run.

    python -m bench archiver            # starts its own Ceph RGW from the lab root
    CALLVAULT_BENCH_LAB=lab python -m bench archiver   # or uses a running `callvault lab up`

1. pipeline: one recording (256 MiB, then 1 GiB) archived (encrypted straight into a
   multipart upload with retention, then verified) vs boto3 ``upload_file`` (default
   TransferConfig: 8 MiB parts, like the pipeline) of the same file to the same RGW; each
   in a fresh process, two rounds in swapped order, best of each. The source is fsynced
   first so its write-back is billed to neither side.
2. peak RSS of those processes (``ru_maxrss``), for 256 MiB and 1 GiB recordings, and
   the CPU seconds of each side: the client process, and RGW's daemons (from /proc,
   only when the bench runs its own RGW), which share the two cores.
3. hang-up to verified: ``recording_ended()`` -> catalog ``archived`` for 5-minute
   recordings (8 kHz 16-bit mono, 4.8 MB), one at a time.
4. drain: 1,000 one-minute recordings queued at once, the archiver as configured by
   default (2 workers).
Encryption alone (``encrypt_to`` vs raw ChaCha20-Poly1305, SHA-256 and the age CLI) is
``python -m bench crypto`` (bench/crypto_bench.py).
Results are printed as a table and written to bench/results/archiver-<time>.json.
``--pipeline-only`` runs 1 and 2 alone (about a minute and a half, with the same pairing);
``--drain-only`` runs 3 and 4 alone, ``--drain N`` drains N recordings instead of 1,000,
``--workers N`` drains with N archive workers instead of the configured number.
The drain reports, per archived recording: S3 requests by operation
(``storage.s3client.REQUESTS``), the CPU time of the archiving process, the CPU time of
the store's daemons (RGW, OSD, monitor: /proc, when the bench started them), and the
peak RSS; next to it, bare PutObject requests of the same size from as many threads as
the archiver has workers: the floor one request per recording would give.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

from .rgw import run_with_rgw, s3_config, server_cpu_seconds

MiB = 1 << 20
GiB = 1 << 30
RATE = 16_000  # bytes per second of 8 kHz 16-bit mono
ROOT = Path(__file__).resolve().parent.parent


def write_wav(path: Path, audio_bytes: int, block: bytes | None = None, *, sync: bool = False) -> None:
    """A WAV of ``audio_bytes`` of noise (incompressible, like encrypted output).

    ``sync``: fsync it before returning. The throughput sources must be: otherwise the
    kernel writes the file back 30 s after it was written (dirty_expire), which at
    1 GiB falls inside whichever measurement is running then (it was the pipeline's)
    and bills that one for the bench's own I/O."""
    block = block or os.urandom(4 * MiB)
    with open(path, "wb") as f:
        with wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            left = audio_bytes
            while left > 0:
                piece = block[:min(left, len(block))]
                w.writeframesraw(piece)
                left -= len(piece)
                if left:  # vary the content so no two blocks are equal
                    block = block[1:] + block[:1]
        if sync:
            f.flush()
            os.fsync(f.fileno())


# -- children (fresh processes, so ru_maxrss is theirs alone) ---------------------------

def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> float:
    """Start measuring the peak afresh (Linux: 5 > clear_refs); returns the RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """This process's peak RSS since the last reset (VmHWM)."""
    return _status_mb("VmHWM")


def cpu_seconds() -> float:
    """This process's CPU seconds (every thread, user + system)."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def child_upload_file(args: dict) -> dict:
    import boto3

    e = args["endpoint"]
    client = boto3.client("s3", endpoint_url=e["endpoint_url"], aws_access_key_id=e["access_key_id"],
                          aws_secret_access_key=e["secret_access_key"], region_name=e["region"])
    client.head_bucket(Bucket=args["bucket"])  # connected and warm, like the pipeline's stores
    before = reset_peak_rss()
    t0, c0 = time.perf_counter(), cpu_seconds()
    client.upload_file(args["file"], args["bucket"], f"baseline/{secrets.token_hex(6)}")
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    peak = peak_rss_mb()
    client.close()
    return {"seconds": elapsed, "cpu_s": cpu, "rss_before_mb": before, "peak_rss_mb": peak}


def child_pipeline(args: dict) -> dict:
    from appliance import compose
    from appliance import config as cfg
    from storage.catalog import Catalog, Recording
    from storage.dburl import open_database
    from storage.ledger import Ledger

    config = cfg.load(args["config"], env={}, check_paths=False)
    db = open_database(config.database.url)
    catalog, ledger = Catalog(db), Ledger(db)
    archiver = compose.build_archiver(config, catalog, ledger, compose.build_archive(config))
    pipeline = archiver.pipeline
    pipeline.check_setup()
    rid = "r" + secrets.token_hex(12)
    spool = config.spool.dir / f"{rid}.wav"
    os.link(args["file"], spool)  # the archiver removes the link, not the data
    Path(str(spool) + ".done").touch()
    catalog.add(Recording(recording_id=rid, consent_id="c", uniqueid="u", linkedid="l", channel="c",
                          spool_path=str(spool), caller_hmac="", did="", agent="", rule="default",
                          jurisdiction="ZA", retention_class="default", consent_state="granted",
                          started_at=time.time()))
    catalog.mark_ended(rid, time.time())
    steps: dict[str, float] = {}
    for step in ("_encrypt", "_upload", "_verify"):  # time each step of the one job
        fn = getattr(pipeline, step)

        def timed(job, _fn=fn, _name=step[1:]):
            s0 = time.perf_counter()
            try:
                return _fn(job)
            finally:
                steps[_name] = round(steps.get(_name, 0.0) + time.perf_counter() - s0, 3)
        setattr(pipeline, step, timed)
    before = reset_peak_rss()
    t0, c0 = time.perf_counter(), cpu_seconds()
    outcome = pipeline.process(catalog.get(rid))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    peak = peak_rss_mb()
    if outcome.kind != "archived":
        raise SystemExit(f"pipeline: {outcome}")
    pipeline.archive.close()
    db.close()
    return {"seconds": elapsed, "cpu_s": cpu, "steps": steps, "rss_before_mb": before, "peak_rss_mb": peak}


def run_child(kind: str, args: dict) -> dict:
    s0 = server_cpu_seconds()
    proc = subprocess.run([sys.executable, "-m", "bench.archiver_bench", kind, json.dumps(args)],
                          stdout=subprocess.PIPE, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode})")
    got = json.loads(proc.stdout)
    got["server_cpu_s"] = server_cpu_seconds() - s0  # the child's start-up included: RGW idles then
    return got


# -- in-process measurements ---------------------------------------------------------------

def time_calls(obj, names: tuple[str, ...], acc: dict[str, float]) -> None:
    """Wrap ``obj``'s methods ``names`` so the seconds spent in each add up in ``acc``."""
    import threading

    lock = threading.Lock()
    for name in names:
        fn, label = getattr(obj, name), name.lstrip("_")

        def timed(*args, _fn=fn, _name=label, **kw):
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kw)
            finally:
                with lock:
                    acc[_name] = acc.get(_name, 0.0) + time.perf_counter() - t0

        setattr(obj, name, timed)


async def bench_latency_and_drain(config_path: Path, spool: Path, latency_n: int, drain_n: int,
                                  endpoint=None, workers: int | None = None) -> dict:
    import resource

    from appliance import compose
    from appliance import config as cfg
    from storage.catalog import Catalog, Recording
    from storage.dburl import open_database
    from storage.ledger import Ledger
    from storage.s3client import REQUESTS

    from .rgw import store_cpu_seconds

    config = cfg.load(config_path, env={}, check_paths=False)
    db = open_database(config.database.url)
    catalog, ledger = Catalog(db), Ledger(db)
    block = os.urandom(4 * MiB)

    def add(rid: str, seconds: int, uniqueid: str, state: str) -> None:
        path = spool / f"{rid}.wav"
        write_wav(path, seconds * RATE, block)
        Path(str(path) + ".done").touch()
        catalog.add(Recording(recording_id=rid, consent_id="c", uniqueid=uniqueid, linkedid="l", channel="c",
                              spool_path=str(path), caller_hmac="", did="", agent="", rule="default",
                              jurisdiction="ZA", retention_class="default", consent_state="granted",
                              started_at=time.time()))
        if state == "pending":
            catalog.mark_ended(rid, time.time())

    archive = compose.build_archive(config)
    archiver = compose.build_archiver(config, catalog, ledger, archive)
    archiver.scan_interval = 3600
    await archiver.start()
    latencies = []
    try:
        for i in range(latency_n):
            rid = "r" + secrets.token_hex(12)
            await asyncio.to_thread(add, rid, 300, f"lat-{i}", "recording")
            t0 = time.perf_counter()
            await archiver.recording_ended(uniqueid=f"lat-{i}")
            while catalog.get(rid).state != "archived":
                await asyncio.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
    finally:
        await archiver.stop(30)

    rids = ["r" + secrets.token_hex(12) for _ in range(drain_n)]
    t_make = time.perf_counter()
    for i, rid in enumerate(rids):
        add(rid, 60, f"drain-{i}", "pending")
    os.sync()  # the spool files' write-back is billed to the set-up, not to the drain
    make_s = time.perf_counter() - t_make
    archiver = compose.build_archiver(config, catalog, ledger, archive)
    archiver.scan_interval = 3600
    archiver.workers = workers or archiver.workers
    # Where a job's time goes: its steps, and the service's queries around them.
    steps: dict[str, float] = {}
    time_calls(archiver.pipeline, ("_wait_closed", "_encrypt", "_upload", "_verify"), steps)
    time_calls(catalog, ("claim", "get", "queue_counts", "retrying_count", "quarantined_count"), steps)
    time_calls(archiver, ("_scan_sync",), steps)  # the spool scan at start
    reset_peak_rss()
    requests0, store0 = REQUESTS.snapshot(), store_cpu_seconds(endpoint) if endpoint else None
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await archiver.start()
    try:
        # Polls the archiver's own counters: the bench adds no queries of its own.
        while archiver.stats.archived < drain_n:
            if archiver.stats.dead_letters:
                raise RuntimeError("drain: dead letters")
            await asyncio.sleep(0.05)
        drain_s = time.perf_counter() - t0
    finally:
        await archiver.stop(30)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    store1 = store_cpu_seconds(endpoint) if endpoint else None
    requests = {op: n - requests0.get(op, 0) for op, n in REQUESTS.snapshot().items()
                if n - requests0.get(op, 0)}
    archive.close()
    db.close()
    latencies.sort()
    cpu_s = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    return {"latency_p50_s": statistics.median(latencies),
            "latency_p95_s": latencies[max(0, round(0.95 * len(latencies)) - 1)],
            "latency_max_s": latencies[-1], "latency_n": latency_n, "drain_n": drain_n,
            "drain_seconds": drain_s, "drain_rec_per_s": drain_n / drain_s,
            "drain_mb_per_s": drain_n * (60 * RATE + 44) / drain_s / 1e6, "drain_setup_seconds": make_s,
            "workers": archiver.workers,
            "drain_requests_per_rec": {op: n / drain_n for op, n in sorted(requests.items())},
            "drain_cpu_ms_per_rec": cpu_s * 1000 / drain_n,
            "drain_store_cpu_ms_per_rec": None if store0 is None else
            {k: (store1[k] - store0[k]) * 1000 / drain_n for k in store0},
            "drain_peak_rss_mb": peak_rss_mb(),
            "drain_step_ms_per_rec": {k: round(v * 1000 / drain_n, 2) for k, v in steps.items()}}


# -- the run -------------------------------------------------------------------------------

def bench_bare_puts(e: dict, bucket: str, n: int, threads: int) -> float:
    """The floor under the drain: ``n`` bare PutObject requests of a 1-minute recording's
    size (with their SHA-256, as the archiver sends) from ``threads`` threads, no
    encryption, no catalog. Objects per second."""
    import base64
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    client = boto3.client("s3", endpoint_url=e["endpoint_url"], aws_access_key_id=e["access_key_id"],
                          aws_secret_access_key=e["secret_access_key"], region_name=e["region"])
    bodies = [os.urandom(60 * RATE + 44) for _ in range(8)]
    sums = [base64.b64encode(hashlib.sha256(b).digest()).decode() for b in bodies]
    client.head_bucket(Bucket=bucket)

    def put(i: int) -> None:
        client.put_object(Bucket=bucket, Key=f"bare/{i}", Body=bodies[i % 8], ChecksumAlgorithm="SHA256",
                          ChecksumSHA256=sums[i % 8])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(n)))
    rate = n / (time.perf_counter() - t0)
    client.close()
    return rate


def measure(endpoint, work: Path, pipeline_only: bool = False, drain_only: bool = False,
            drain_n: int = 1000, workers: int | None = None) -> dict:
    import boto3

    from storage.age import Identity
    from storage.s3store import S3Settings, S3Store

    results: dict = {}
    settings = S3Settings(endpoint_url=endpoint.endpoint_url, region=endpoint.region,
                          access_key_id=endpoint.access_key_id, secret_access_key=endpoint.secret_access_key,
                          addressing_style="path")
    name = f"bench-{secrets.token_hex(4)}"
    for bucket, lock in ((name, True), (name + "-keys", False), (name + "-plain", False)):
        with S3Store(settings, bucket, object_lock=lock) as s:
            s.create_bucket(lock=lock)
    (work / "spool").mkdir()
    config = work / "callvault.toml"
    config.write_text(s3_config(work, endpoint, name, name + "-keys", str(Identity.generate().recipient)))
    e = {"endpoint_url": endpoint.endpoint_url, "access_key_id": endpoint.access_key_id,
         "secret_access_key": endpoint.secret_access_key, "region": endpoint.region}

    for size, label in () if drain_only else ((256 * MiB, "256m"), (GiB, "1g")):
        wav = work / f"source-{label}.wav"
        write_wav(wav, size, sync=True)
        runs = []
        # Two rounds, the order swapped in the second, so neither side always runs
        # first (RGW's memstore fills as the bench goes); the best of each counts.
        for order in (("upload", "pipeline"), ("pipeline", "upload")):
            got = {}
            for kind in order:
                print(f"{label}: {'boto3 upload_file' if kind == 'upload' else 'pipeline'} ...", flush=True)
                args = ({"endpoint": e, "bucket": name + "-plain", "file": str(wav)} if kind == "upload"
                        else {"config": str(config), "file": str(wav)})
                got[kind] = run_child(kind, args)
            runs.append((got["upload"], got["pipeline"]))
        base = min((b for b, _ in runs), key=lambda r: r["seconds"])
        ours = min((o for _, o in runs), key=lambda r: r["seconds"])
        results[f"upload_{label}_mb_s"] = size / base["seconds"] / 1e6
        results[f"pipeline_{label}_mb_s"] = size / ours["seconds"] / 1e6
        results[f"upload_{label}_rss_mb"] = base["peak_rss_mb"]
        results[f"pipeline_{label}_rss_mb"] = ours["peak_rss_mb"]
        results[f"upload_{label}_rss_before_mb"] = base["rss_before_mb"]
        results[f"pipeline_{label}_rss_before_mb"] = ours["rss_before_mb"]
        results[f"pipeline_{label}_steps"] = ours["steps"]
        results[f"pipeline_{label}_runs_mb_s"] = [size / o["seconds"] / 1e6 for _, o in runs]
        results[f"upload_{label}_runs_mb_s"] = [size / b["seconds"] / 1e6 for b, _ in runs]
        for side, r in (("pipeline", ours), ("upload", base)):
            results[f"{side}_{label}_cpu_s"] = r["cpu_s"]
            results[f"{side}_{label}_server_cpu_s"] = r["server_cpu_s"]
        wav.unlink()

    if not pipeline_only:
        print("latency and drain ...", flush=True)
        results.update(asyncio.run(bench_latency_and_drain(config, work / "spool", latency_n=20, drain_n=drain_n,
                                                           endpoint=endpoint, workers=workers)))
        print("bare PutObject ...", flush=True)
        results["bare_n"] = min(drain_n, 300)
        results["bare_put_per_s"] = bench_bare_puts(e, name + "-plain", results["bare_n"], results["workers"])
    del boto3  # imported for the children's sake: fail early if missing
    return results


def table(r: dict) -> str:
    rows = [("metric", "callvault", "baseline (same run)", "ratio", "target")]
    for label, name in (("256m", "256 MiB"), ("1g", "1 GiB")):
        if f"pipeline_{label}_mb_s" not in r:
            continue
        rows.append((f"pipeline {name} (encrypt+upload+verify)", f"{r[f'pipeline_{label}_mb_s']:.0f} MB/s",
                     f"boto3 upload_file {r[f'upload_{label}_mb_s']:.0f} MB/s",
                     f"{r[f'pipeline_{label}_mb_s'] / r[f'upload_{label}_mb_s']:.2f}", ">= 0.95"))
    for label, name in (("256m", "256 MiB"), ("1g", "1 GiB")):
        if f"pipeline_{label}_cpu_s" not in r:
            continue
        ours_cpu = f"{r[f'pipeline_{label}_cpu_s']:.1f} / {r[f'pipeline_{label}_server_cpu_s']:.1f}"
        rows.append((f"CPU s archiving {name}: client / RGW", ours_cpu,
                     f"boto3 upload_file {r[f'upload_{label}_cpu_s']:.1f} / {r[f'upload_{label}_server_cpu_s']:.1f}",
                     f"{r[f'pipeline_{label}_cpu_s'] / r[f'upload_{label}_cpu_s']:.2f}", ""))
    for label, name in (("256m", "256 MiB"), ("1g", "1 GiB")):
        if f"pipeline_{label}_rss_mb" not in r:
            continue
        ours, base = r[f"pipeline_{label}_rss_mb"], r[f"upload_{label}_rss_mb"]
        ours0, base0 = r[f"pipeline_{label}_rss_before_mb"], r[f"upload_{label}_rss_before_mb"]
        rows.append((f"peak RSS archiving {name} (+ over idle)", f"{ours:.0f} MB (+{ours - ours0:.0f})",
                     f"boto3 upload_file {base:.0f} MB (+{base - base0:.0f})", f"{ours / base:.2f}",
                     "< 100 MB, flat"))
    if "latency_n" not in r:
        return _render(rows)
    rows.append((f"hang-up -> verified, 5-min rec (n={r['latency_n']})",
                 f"p50 {r['latency_p50_s'] * 1000:.0f} ms, p95 {r['latency_p95_s'] * 1000:.0f} ms",
                 f"max {r['latency_max_s'] * 1000:.0f} ms", "", "p95 < 2 s"))
    rows.append((f"drain {r['drain_n']} x 1-min recordings ({r['workers']} workers)",
                 f"{r['drain_rec_per_s']:.1f} rec/s ({r['drain_mb_per_s']:.0f} MB/s)",
                 f"bare PutObject x {r['bare_n']}: {r['bare_put_per_s']:.1f}/s",
                 f"{r['drain_rec_per_s'] / r['bare_put_per_s']:.2f}", ">= 100 rec/s"))
    reqs = r["drain_requests_per_rec"]
    rows.append(("drain: S3 requests per recording", f"{sum(reqs.values()):.2f}", "bare PutObject 1", "",
                 ", ".join(f"{op} {n:.2f}" for op, n in reqs.items())))
    store = r.get("drain_store_cpu_ms_per_rec")
    rows.append(("drain: CPU ms per recording", f"callvault {r['drain_cpu_ms_per_rec']:.1f}",
                 "store " + (", ".join(f"{k} {v:.1f}" for k, v in store.items()) if store else "n/a"),
                 f"{r['drain_cpu_ms_per_rec'] / sum(store.values()):.2f}" if store else "", ""))
    rows.append(("drain: peak RSS of the archiving process", f"{r['drain_peak_rss_mb']:.0f} MB", "", "", ""))
    rows.append(("drain: wall ms per recording in each step", "", "", "",
                 ", ".join(f"{k} {v:.1f}" for k, v in r["drain_step_ms_per_rec"].items())))
    return _render(rows)


def _render(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    pipeline_only = "--pipeline-only" in argv
    drain_only = "--drain-only" in argv
    sizes = {"--drain": 1000, "--workers": None}
    args = [a for a in argv if a not in ("--pipeline-only", "--drain-only")]
    while len(args) >= 2 and args[0] in sizes and args[1].isdigit() and int(args[1]) > 0:
        sizes[args[0]], args = int(args[1]), args[2:]
    if args or (pipeline_only and drain_only):
        raise SystemExit(f"bad arguments {argv}; options: --pipeline-only | --drain-only, --drain N "
                         "(recordings in the drain, default 1000), --workers N (default: the configured "
                         "[archive] workers)")
    results = run_with_rgw(lambda endpoint, work: measure(endpoint, work, pipeline_only, drain_only,
                                                          sizes["--drain"], sizes["--workers"]),
                           "bench", 9 * GiB)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"archiver-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    print()
    print(table(results))
    steps = f"pipeline 1 GiB step seconds: {results['pipeline_1g_steps']}; " if "pipeline_1g_steps" in results else ""
    print(f"\n({steps}total bench time {results['total_seconds']:.0f} s; {os.cpu_count()} CPUs, "
          "RGW on the same host)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("upload", "pipeline"):
        fn = child_upload_file if sys.argv[1] == "upload" else child_pipeline
        print(json.dumps(fn(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
