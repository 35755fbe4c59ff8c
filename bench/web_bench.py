"""Playback benchmark: time to first audio byte after a seek, and the bytes fetched for it.

    python -m bench web                  # starts its own Ceph RGW from the lab root
    CALLVAULT_BENCH_LAB=lab python -m bench web   # or uses a running `callvault lab up`

A one-hour recording (8 kHz 16-bit mono WAV, 57.6 MB) is age-encrypted and stored in
RGW as the archiver stores it (header and payload objects, catalog row). The whole
appliance web app is started (`serve`'s application; no Asterisk needed), a supervisor
signs in and asks for a play grant, then:

1. cold seek: the first ``Range: bytes=<minute 45>-`` request of the grant (fetches the
   header, unwraps the file key, reads the payload nonce and the chunks at minute 45);
2. warm seeks: 30 more seeks to random points in minutes 40-50 with the key cached;
each measured from sending the request to the first body byte, reading that first
piece and closing the connection as a browser does when it seeks again. Bytes
fetched are the ciphertext bytes the server read from RGW for that request.
Baseline: a plain boto3 ranged GET of the same 128 KiB from the same RGW.

Target: first byte after a seek < 150 ms. Results go to bench/results/web-<time>.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import time
import wave
from pathlib import Path

from .rgw import run_with_rgw, s3_config

MiB = 1 << 20
RATE = 16_000  # bytes per second of 8 kHz 16-bit mono
HOUR = 3600
SEEK_TO = 45 * 60
WARM_SEEKS = 30
TARGET_MS = 150.0
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1"


def write_wav(path: Path, seconds: int) -> None:
    block = os.urandom(RATE)  # a second of noise: as incompressible as speech after encryption
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        for i in range(seconds):
            w.writeframesraw(block[i % 7:] + block[:i % 7])


def with_identity(config, path: Path):
    """``[web] identity_file`` set."""
    return config.replace(web=config.web.replace(identity_file=path))


def store_recording(config, identity, work: Path) -> tuple[str, int, int]:
    """Encrypt and store a one-hour recording; returns (id, plaintext size, payload size)."""
    from appliance.compose import build_archive
    from archiver.archive import Archive
    from archiver.manifest import Manifest
    from storage.age import encrypt_file
    from storage.catalog import Catalog, Recording
    from storage.dburl import open_database
    from storage.users import Users

    rid = "r" + secrets.token_hex(12)
    wav, hdr, pay = work / "hour.wav", work / "hour.hdr", work / "hour.pay"
    write_wav(wav, HOUR)
    m = Manifest.of(encrypt_file(wav, hdr, pay, [identity.recipient]))
    archive = build_archive(config)
    try:
        archive.headers.put(Archive.header_key(rid), hdr.read_bytes(), sha256=m.header_sha256)
        with open(pay, "rb") as f:
            put = archive.payload.put(Archive.payload_key(rid), f, size=m.payload_size, sha256=m.payload_sha256)
    finally:
        archive.close()
    for p in (wav, pay):
        p.unlink()
    db = open_database(config.database.url)
    try:
        Users(db).add("bench", "supervisor", PASSWORD)
        catalog = Catalog(db)
        now = time.time()
        catalog.add(Recording(recording_id=rid, consent_id="c" + rid[1:], uniqueid="bench-2", linkedid="bench-1",
                              channel="PJSIP/trunk-1", spool_path=f"/nonexistent/{rid}.wav", caller_hmac="x",
                              did="27215550100", agent="", rule="default", jurisdiction="ZA",
                              retention_class="default", consent_state="granted", started_at=now - HOUR - 60))
        catalog.update(rid, state="archived", ended_at=now - 60, archived_at=now - 50, object_key=Archive.payload_key(rid),
                       header_key=Archive.header_key(rid), version_id=put.version_id or "", manifest=m.to_json())
    finally:
        db.close()
    return rid, m.plaintext_size, m.payload_size


def baseline_ms(config, rid: str, offset: int, n: int = 15) -> float:
    """A bare ranged GET of one 128 KiB window from RGW (no web app, no decryption)."""
    from archiver.archive import Archive
    from storage.age import CHUNK_SIZE, ENC_CHUNK_SIZE, NONCE_SIZE
    from storage.s3store import S3Settings

    s = config.storage
    client = S3Settings(endpoint_url=s.endpoint_url, region=s.region, access_key_id=s.access_key_id,
                        secret_access_key=s.secret_access_key.reveal(), addressing_style="path").client()
    start = NONCE_SIZE + (offset // CHUNK_SIZE) * ENC_CHUNK_SIZE
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            client.get_object(Bucket=s.bucket, Key=Archive.payload_key(rid),
                              Range=f"bytes={start}-{start + 2 * ENC_CHUNK_SIZE - 1}")["Body"].read()
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        client.close()
    return statistics.median(times)


async def measure_http(config, rid: str, plain_size: int) -> dict:
    import aiohttp
    from aiohttp import web

    from appliance.service import build_app
    from appliance.web.state import WebKeys as W

    host, port = config.web.address
    url = f"http://{host}:{port}"
    runner = web.AppRunner(build_app(config), shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    metrics = runner.app[W.metrics]
    try:
        async with aiohttp.ClientSession(url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get("/login") as r:
                await r.read()
            token = next(c.value for c in client.cookie_jar if c.key == "cv_login")
            async with client.post("/login", data={"csrf": token, "name": "bench", "password": PASSWORD}) as r:
                await r.read()
            async with client.get("/api/me") as r:
                csrf = (await r.json())["csrf_token"]
            async with client.post(f"/api/recordings/{rid}/access", headers={"X-CSRF-Token": csrf},
                                   json={"purpose": "play", "reason": "benchmark"}) as r:
                audio = (await r.json())["url"]

            async def seek(offset: int) -> tuple[float, int, int]:
                before = metrics.playback_fetched_bytes
                t0 = time.perf_counter()
                r = await client.get(audio, headers={"Range": f"bytes={offset}-"})
                first = await r.content.readany()
                ms = (time.perf_counter() - t0) * 1000
                assert r.status == 206 and first, (r.status, len(first))
                r.close()  # the browser seeks elsewhere: this response is abandoned
                await asyncio.sleep(0.05)  # let the server notice and stop
                return ms, metrics.playback_fetched_bytes - before, len(first)

            minute45 = 44 + SEEK_TO * RATE
            cold_ms, cold_bytes, _ = await seek(minute45)
            rng = random.Random(45)
            warm = [await seek(44 + 2 * (rng.randrange(40 * 60 * RATE, 50 * 60 * RATE) // 2))
                    for _ in range(WARM_SEEKS)]
    finally:
        await runner.cleanup()
    warm_ms = sorted(w[0] for w in warm)
    return {"cold_first_byte_ms": cold_ms, "cold_fetched_bytes": cold_bytes,
            "warm_first_byte_ms_median": statistics.median(warm_ms),
            "warm_first_byte_ms_p95": warm_ms[int(0.95 * (len(warm_ms) - 1))],
            "warm_fetched_bytes_median": statistics.median(w[1] for w in warm),
            "warm_fetched_bytes_max": max(w[1] for w in warm), "seeks": WARM_SEEKS}


def measure(endpoint, work: Path) -> dict:
    from appliance import config as cfg
    from storage import keys
    from storage.age import Identity
    from storage.s3store import S3Settings, S3Store

    bucket = f"webbench-{secrets.token_hex(4)}"
    settings = S3Settings(endpoint_url=endpoint.endpoint_url, region=endpoint.region,
                          access_key_id=endpoint.access_key_id, secret_access_key=endpoint.secret_access_key,
                          addressing_style="path")
    with S3Store(settings, bucket, object_lock=True) as p, S3Store(settings, bucket + "-keys", object_lock=False) as k:
        p.create_bucket(lock=True)
        k.create_bucket(lock=False)
    identity = Identity.generate()
    keys.write_identity(work / "identity.txt", identity)
    (work / "callvault.toml").write_text(s3_config(work, endpoint, bucket, bucket + "-keys",
                                                     str(identity.recipient)))
    config = with_identity(cfg.load(work / "callvault.toml", env={}), work / "identity.txt")
    print("storing a one-hour recording ...", flush=True)
    rid, plain_size, payload_size = store_recording(config, identity, work)
    results = {"recording_seconds": HOUR, "plaintext_bytes": plain_size, "payload_bytes": payload_size,
               "seek_to_seconds": SEEK_TO}
    results["baseline_s3_window_ms"] = baseline_ms(config, rid, 44 + SEEK_TO * RATE)
    print("seeking ...", flush=True)
    results.update(asyncio.run(measure_http(config, rid, plain_size)))
    results["target_ms"] = TARGET_MS
    results["meets_target"] = max(results["cold_first_byte_ms"], results["warm_first_byte_ms_p95"]) < TARGET_MS
    return results


def table(r: dict) -> str:
    frac = lambda n: f"{n:,} B ({100 * n / r['payload_bytes']:.2f} % of the object)"
    rows = [
        ("first audio byte, cold seek to 45:00 (header, unwrap, nonce, chunks)", f"{r['cold_first_byte_ms']:.1f} ms",
         frac(r["cold_fetched_bytes"])),
        (f"first audio byte, warm seeks in 40:00-50:00 (median of {r['seeks']})",
         f"{r['warm_first_byte_ms_median']:.1f} ms", frac(int(r["warm_fetched_bytes_median"]))),
        ("  p95 / most fetched", f"{r['warm_first_byte_ms_p95']:.1f} ms", frac(r["warm_fetched_bytes_max"])),
        ("baseline: bare S3 ranged GET of the same 128 KiB", f"{r['baseline_s3_window_ms']:.1f} ms", ""),
        ("target", f"< {r['target_ms']:.0f} ms", "met" if r["meets_target"] else "NOT MET"),
    ]
    width = max(len(a) for a, _, _ in rows)
    return "\n".join(f"{a.ljust(width)}  {b:>10}  {c}" for a, b, c in rows)


def main(argv: list[str]) -> int:
    results = run_with_rgw(measure, "webbench", 2 << 30)
    print()
    print(f"web playback: a {HOUR // 60}-minute recording ({results['payload_bytes'] / MiB:.1f} MiB encrypted) in RGW")
    print(table(results))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"web-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    return 0 if results["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
