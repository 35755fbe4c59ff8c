"""Catalog rebuild benchmark: `callvault catalog rebuild` time per 10,000 recordings.

    python -m bench rebuild

Seeds recordings straight into the stores (a manifest object, a payload and a header
each: one small age encryption reused, so seeding costs only the puts), then times
the command as an operator runs it, into an empty SQLite catalog: the listings,
reading and checking every manifest object (GET) with a HEAD of its payload version,
eight at a time, and the inserts. Two stores: the local store (10,000 recordings) and
Ceph RGW (``CALLVAULT_BENCH_LAB``'s, or one of its own; 2,000 recordings, scaled).
``CALLVAULT_BENCH_REBUILD_N=LOCAL,RGW`` changes the counts.

Printed as a table; written to bench/results/rebuild-<time>.json. Measured on the
2-core dev machine (RGW sharing the cores): local store 9.3 s per 10,000 recordings
(about 1,080 a second), Ceph RGW 112 s per 10,000 (about 90 a second).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PER = 10_000


def _counts() -> tuple[int, int]:
    text = os.environ.get("CALLVAULT_BENCH_REBUILD_N", "10000,2000")
    local, rgw = (int(x) for x in text.split(","))
    return local, rgw


def seed(archive, n: int, recipient) -> float:
    """``n`` archived recordings in ``archive``'s stores; returns seconds taken."""
    import datetime

    from archiver import manifest_object
    from archiver.archive import Archive
    from archiver.manifest import Manifest
    from storage.age import Encryptor
    from storage.blobstore import Retention
    from storage.catalog import Recording

    enc = Encryptor([recipient])
    out = io.BytesIO()
    enc.encrypt_to(io.BytesIO(os.urandom(16_000)), out.write)
    payload, header, m = out.getvalue(), enc.header, Manifest.of(enc.summary)
    retention = Retention("COMPLIANCE", datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
    now = time.time()

    def one(i: int) -> None:
        rid = f"r{i:024x}"
        pkey, hkey = Archive.payload_key(rid), Archive.header_key(rid)
        put = archive.payload.put(pkey, payload, size=len(payload), sha256=m.payload_sha256, retention=retention)
        archive.headers.put(hkey, header, size=len(header), sha256=m.header_sha256)
        rec = Recording(recording_id=rid, consent_id="c" + rid[1:], uniqueid=f"u{i}", linkedid=f"l{i}", channel="",
                        spool_path="", caller_hmac=hashlib.sha256(b"%d" % i).hexdigest(), did="27215550100",
                        agent=f"agent-{i % 50}", rule="za-opt-in", jurisdiction="ZA", retention_class="default",
                        consent_state="granted", started_at=now - 60, ended_at=now, state="verifying",
                        object_key=pkey, header_key=hkey, version_id=put.version_id or "",
                        retain_until=retention.until.timestamp(), manifest=m.to_json(), node="bench")
        body = manifest_object.encode(rec, m, retention, now)
        archive.payload.put(manifest_object.key(rid), body, size=len(body), sha256=hashlib.sha256(body).hexdigest(),
                            retention=retention)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - t0


def rebuild(config: Path) -> float:
    from appliance.cli import build_parser

    args = build_parser().parse_args(["catalog", "rebuild", "-c", str(config)])
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = args.fn(args)
    took = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"catalog rebuild failed ({code}): {err.getvalue()[-2000:]}")
    return took


def row(name: str, n: int, seeded: float, took: float) -> dict:
    return {"store": name, "recordings": n, "seed_seconds": round(seeded, 1), "rebuild_seconds": round(took, 2),
            "per_10000_seconds": round(took * PER / n, 1), "recordings_per_second": round(n / took)}


def local(n: int, d: Path) -> dict:
    from appliance import compose
    from appliance import config as cfg
    from storage.age import Identity

    identity = Identity.generate()
    config = d / "callvault.toml"
    config.write_text(f"""
[ami]
secret = "unused"
[database]
url = "sqlite:///{d / 'callvault.db'}"
[spool]
dir = "{d / 'spool'}"
[archive]
recipients = ["{identity.recipient}"]
[storage]
backend = "local"
path = "{d / 'archive'}"
""")
    c = cfg.load(config, env={}, check_paths=False)
    compose.init_archive(c)
    archive = compose.build_archive(c)
    try:
        seeded = seed(archive, n, identity.recipient)
    finally:
        archive.close()
    return row("local", n, seeded, rebuild(config))


def rgw(n: int) -> dict:
    import secrets

    from storage.age import Identity

    from .rgw import run_with_rgw, s3_config

    def measure(endpoint, work: Path) -> dict:
        from appliance import compose
        from appliance import config as cfg

        identity = Identity.generate()
        name = f"cvr-{secrets.token_hex(4)}"
        config = work / "callvault.toml"
        config.write_text(s3_config(work, endpoint, name, name + "-keys", str(identity.recipient)))
        c = cfg.load(config, env={}, check_paths=False)
        compose.init_archive(c)
        archive = compose.build_archive(c)
        try:
            seeded = seed(archive, n, identity.recipient)
        finally:
            archive.close()
        return row("Ceph RGW", n, seeded, rebuild(config))

    return run_with_rgw(measure, "rebuild", 1 << 30)


def main(argv: list[str]) -> int:
    if argv:
        raise SystemExit(f"unknown arguments {argv}; python -m bench rebuild takes none")
    n_local, n_rgw = _counts()
    rows = []
    with tempfile.TemporaryDirectory(prefix="callvault-rebuild-bench-", dir="/var/tmp") as d:
        rows.append(local(n_local, Path(d)))
    if n_rgw:
        r = rgw(n_rgw)
        r.pop("total_seconds", None)
        rows.append(r)
    print(f"{'store':10} {'recordings':>10} {'seed s':>8} {'rebuild s':>10} {'s per 10k':>10} {'rec/s':>8}")
    for r in rows:
        print(f"{r['store']:10} {r['recordings']:>10} {r['seed_seconds']:>8} {r['rebuild_seconds']:>10} "
              f"{r['per_10000_seconds']:>10} {r['recordings_per_second']:>8}")
    print(f"\n({os.cpu_count()} CPUs; rebuild = listings, then GET manifest + HEAD payload, 8 at once, "
          "then SQLite inserts in batches of 500)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"rebuild-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
