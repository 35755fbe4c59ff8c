"""Archiver benchmark: every number next to a baseline measured in the same run.

    python -m bench archiver            # starts its own Ceph RGW from the lab root
    CALLVAULT_BENCH_LAB=lab python -m bench archiver   # or uses a running `callvault lab up`

1. pipeline: one recording (256 MiB, then 1 GiB) archived (encrypted straight into a
   multipart upload with retention, then verified) vs boto3 ``upload_file`` (default
   TransferConfig: 8 MiB parts, like the pipeline) of the same file to the same RGW; each
   in a fresh process, two rounds in reversed order, best of each. The source is fsynced
   first so its write-back is billed to neither side. ``--parts N,N`` and ``--blocks N,N``
   run the pipeline once per setting (part buffers in flight, encryption buffer pairs)
   in the same rounds, to compare them against the one baseline.
2. peak RSS of those processes (``ru_maxrss``), for 256 MiB and 1 GiB recordings, and
   the CPU seconds of each side: the client process, and RGW's daemons (from /proc,
   only when the bench runs its own RGW), which share the two cores; and the client's
   floor: ``upload_file``'s CPU plus the bare work a streamed payload adds to it
   (``archiver_floor.stream_work_cpu``: ChaCha20-Poly1305 and two SHA-256 passes).
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
peak RSS; next to it the design floor (bench/archiver_floor.py): the same three PUTs per
recording (sizes, checksums, Object Lock and tags of one the drain archived) from bare
boto3 on as many threads as the archiver has workers, with its client and store CPU,
and the local floor (the same module): the spool read, bare ChaCha20-Poly1305, both
SHA-256s, the work file and the two durable commits, with no callvault code.
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

from . import archiver_floor
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
    key = f"baseline/{secrets.token_hex(6)}"
    client.upload_file(args["file"], args["bucket"], key)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    peak = peak_rss_mb()
    client.delete_object(Bucket=args["bucket"], Key=key)  # room in the memstore for the next
    client.close()
    return {"seconds": elapsed, "cpu_s": cpu, "rss_before_mb": before, "peak_rss_mb": peak}


def child_pipeline(args: dict) -> dict:
    from appliance import compose
    from appliance import config as cfg
    from archiver import upload
    from storage.catalog import Catalog, Recording
    from storage.dburl import open_database
    from storage.ledger import Ledger

    config = cfg.load(args["config"], env={}, check_paths=False)
    db = open_database(config.database.url)
    catalog, ledger = Catalog(db), Ledger(db)
    # The setting under test: part buffers in flight, encryption buffer pairs.
    compose.PAYLOAD_CONCURRENCY, upload.STREAM_BLOCKS = args["parts"], args["blocks"]
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
            "drain_peak_rss_mb": peak_rss_mb(), "drain_sample_id": rids[0],
            "drain_step_ms_per_rec": {k: round(v * 1000 / drain_n, 2) for k, v in steps.items()}}


# -- the run -------------------------------------------------------------------------------

def _setting(kind: tuple[int, int]) -> str:
    return f"pipeline, {kind[0]} parts in flight, {kind[1]} buffer pairs"


def measure(endpoint, work: Path, pipeline_only: bool = False, drain_only: bool = False,
            drain_n: int = 1000, workers: int | None = None,
            setups: list[tuple[int, int]] | None = None) -> dict:
    import boto3

    from appliance.compose import PAYLOAD_CONCURRENCY
    from archiver.upload import STREAM_BLOCKS
    from storage.age import Identity
    from storage.s3store import S3Settings, S3Store

    setups = setups or [(PAYLOAD_CONCURRENCY, STREAM_BLOCKS)]

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
        kinds = ["upload", *setups]
        runs: dict = {k: [] for k in kinds}
        # Two rounds, the order reversed in the second, so no side always runs first
        # (RGW's memstore fills as the bench goes); the best of each counts.
        for order in (kinds, kinds[::-1]):
            for kind in order:
                print(f"{label}: {'boto3 upload_file' if kind == 'upload' else _setting(kind)} ...", flush=True)
                args = ({"endpoint": e, "bucket": name + "-plain", "file": str(wav)} if kind == "upload"
                        else {"config": str(config), "file": str(wav), "parts": kind[0], "blocks": kind[1]})
                runs[kind].append(run_child("upload" if kind == "upload" else "pipeline", args))
        # The floor under the client's CPU: upload_file plus the bare work it skips.
        work_cpu = min(archiver_floor.stream_work_cpu(wav) for _ in range(2))
        sides = []
        for kind in kinds:
            best = min(runs[kind], key=lambda r: r["seconds"])
            sides.append({"side": "upload" if kind == "upload" else _setting(kind), **best,
                          "mb_s": size / best["seconds"] / 1e6,
                          "runs_mb_s": [size / r["seconds"] / 1e6 for r in runs[kind]],
                          "peak_rss_runs_mb": [r["peak_rss_mb"] for r in runs[kind]],
                          "cpu_runs_s": [r["cpu_s"] for r in runs[kind]], "work_cpu_s": work_cpu})
        results[f"pipeline_{label}"] = sides
        wav.unlink()

    if not pipeline_only:
        print("latency and drain ...", flush=True)
        results.update(asyncio.run(bench_latency_and_drain(config, work / "spool", latency_n=20, drain_n=drain_n,
                                                           endpoint=endpoint, workers=workers)))
        print("design floor: the same three PUTs from bare boto3 ...", flush=True)
        objects = archiver_floor.sample(e, name, name + "-keys", results["drain_sample_id"])
        results.update(archiver_floor.design_floor(e, objects, min(drain_n, 500), results["workers"], endpoint))
        results.update(archiver_floor.local_floor(work / "floor", 60 * RATE, min(drain_n, 300)))
        # The floor with as many threads as it can use: the most bare boto3 gets from this host.
        wide = archiver_floor.design_floor(e, objects, min(drain_n, 500), 8, endpoint)
        results.update({f"floor8_{k[len('floor_'):]}": v for k, v in wide.items()})
    del boto3  # imported for the children's sake: fail early if missing
    return results


def table(r: dict) -> str:
    rows = [("metric", "callvault", "baseline (same run)", "ratio", "target")]
    for label, name in (("256m", "256 MiB"), ("1g", "1 GiB")):
        base, *ours = r.get(f"pipeline_{label}", [None])
        for o in ours:
            rows.append((f"{name}: {o['side']}", f"{o['mb_s']:.0f} MB/s",
                         f"boto3 upload_file {base['mb_s']:.0f} MB/s", f"{o['mb_s'] / base['mb_s']:.2f}", ">= 0.95"))
            rows.append((f"{name}: peak RSS (+ over idle)", (f"{o['peak_rss_mb']:.0f} MB "
                                                                  f"(+{o['peak_rss_mb'] - o['rss_before_mb']:.0f})"),
                         f"upload_file {base['peak_rss_mb']:.0f} MB (+{base['peak_rss_mb'] - base['rss_before_mb']:.0f})",
                         f"{o['peak_rss_mb'] / base['peak_rss_mb']:.2f}", "<= upload_file"))
            rows.append((f"{name}: CPU s, client / RGW", f"{o['cpu_s']:.1f} / {o['server_cpu_s']:.1f}",
                         f"upload_file {base['cpu_s']:.1f} / {base['server_cpu_s']:.1f}",
                         f"{o['cpu_s'] / base['cpu_s']:.2f}", ""))
            floor = base["cpu_s"] + o["work_cpu_s"]
            rows.append((f"{name}: client CPU s, floor", f"{o['cpu_s']:.2f}",
                         f"upload_file {base['cpu_s']:.2f} + bare ChaCha20 & 2 SHA-256 {o['work_cpu_s']:.2f}",
                         f"{o['cpu_s'] / floor:.2f}", ""))
    if "latency_n" not in r:
        return _render(rows)
    rows.append((f"hang-up -> verified, 5-min rec (n={r['latency_n']})",
                 f"p50 {r['latency_p50_s'] * 1000:.0f} ms, p95 {r['latency_p95_s'] * 1000:.0f} ms",
                 f"max {r['latency_max_s'] * 1000:.0f} ms", "", "p95 < 2 s"))
    fl = r["floor_n"]
    rows.append((f"drain {r['drain_n']} x 1-min recordings ({r['workers']} workers)",
                 f"{r['drain_rec_per_s']:.1f} rec/s ({r['drain_mb_per_s']:.0f} MB/s)",
                 f"design floor x {fl}: {r['floor_rec_per_s']:.1f} rec/s",
                 f"{r['drain_rec_per_s'] / r['floor_rec_per_s']:.2f}", ">= 100 rec/s"))
    reqs = r["drain_requests_per_rec"]
    rows.append(("drain: S3 requests per recording", f"{sum(reqs.values()):.2f}", "design floor 3 PutObject", "",
                 ", ".join(f"{op} {n:.2f}" for op, n in reqs.items())))
    rows.append(("drain: client CPU ms per recording", f"callvault {r['drain_cpu_ms_per_rec']:.1f}",
                 f"design floor {r['floor_cpu_ms_per_rec']:.1f}",
                 f"{r['drain_cpu_ms_per_rec'] / r['floor_cpu_ms_per_rec']:.2f}", ""))
    if "local_floor_cpu_ms_per_rec" in r:
        design = r["floor_cpu_ms_per_rec"] + r["local_floor_cpu_ms_per_rec"]
        rows.append(("drain: client CPU, design floor with local work", f"callvault {r['drain_cpu_ms_per_rec']:.1f}",
                     (f"PUTs {r['floor_cpu_ms_per_rec']:.1f} + local {r['local_floor_cpu_ms_per_rec']:.1f} "
                      f"= {design:.1f}"), f"{r['drain_cpu_ms_per_rec'] / design:.2f}", ""))
    rows.append(("design floor, 8 threads", f"{r['floor8_rec_per_s']:.1f} rec/s",
                 f"client CPU {r['floor8_cpu_ms_per_rec']:.1f} ms per recording", "", ">= 100 rec/s"))
    for label, store in (("drain", r.get("drain_store_cpu_ms_per_rec")),
                         ("design floor", r.get("floor_store_cpu_ms_per_rec"))):
        if store:
            rows.append((f"{label}: store CPU ms per recording", f"{sum(store.values()):.1f}",
                         ", ".join(f"{k} {v:.1f}" for k, v in store.items()), "",
                         f"2 cores: <= {2000 / sum(store.values()):.0f} rec/s"))
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
    sizes: dict = {"--drain": None, "--workers": None, "--parts": None, "--blocks": None}
    args = [a for a in argv if a not in ("--pipeline-only", "--drain-only")]
    while len(args) >= 2 and args[0] in sizes and all(x.isdigit() and int(x) > 0 for x in args[1].split(",")):
        sizes[args[0]], args = [int(x) for x in args[1].split(",")], args[2:]
    settings = None
    if sizes["--parts"] or sizes["--blocks"]:
        from appliance.compose import PAYLOAD_CONCURRENCY
        from archiver.upload import STREAM_BLOCKS

        settings = [(p, b) for p in sizes["--parts"] or [PAYLOAD_CONCURRENCY]
                    for b in sizes["--blocks"] or [STREAM_BLOCKS]]
    drain_n, workers = (sizes["--drain"] or [1000])[0], (sizes["--workers"] or [None])[0]
    if args or (pipeline_only and drain_only):
        raise SystemExit(f"bad arguments {argv}; options: --pipeline-only | --drain-only, --drain N "
                         "(recordings in the drain, default 1000), --workers N (default: the configured "
                         "[archive] workers), --parts N[,N...] and --blocks N[,N...] (pipeline settings to "
                         "compare: part buffers in flight, encryption buffer pairs; default the product's)")
    results = run_with_rgw(lambda endpoint, work: measure(endpoint, work, pipeline_only, drain_only,
                                                          drain_n, workers, settings),
                           "bench", 6 * GiB + 3 * GiB * len(settings or [None]))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"archiver-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    print()
    print(table(results))
    steps = (f"pipeline 1 GiB step seconds: {results['pipeline_1g'][1]['steps']}; "
             if "pipeline_1g" in results else "")
    print(f"\n({steps}total bench time {results['total_seconds']:.0f} s; {os.cpu_count()} CPUs, "
          "RGW on the same host)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("upload", "pipeline"):
        fn = child_upload_file if sys.argv[1] == "upload" else child_pipeline
        print(json.dumps(fn(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
