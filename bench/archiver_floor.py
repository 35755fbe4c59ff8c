"""The design floor under the archiver's drain (``python -m bench archiver``).

Per recording the design needs three PUTs: the header (header bucket), the payload
(payload bucket, Object Lock retention, tags) and the manifest object (payload bucket,
locked, tagged), each with its SHA-256 as ``x-amz-checksum-sha256`` and as ``sha256``
metadata. ``design_floor`` sends exactly those, with the sizes, lock and tags of a
recording the drain archived, from bare boto3 on as many threads as the archiver has
workers: no encryption, no catalog, no ledger, no spool. It reports recordings per
second, the client's CPU per recording (this process, which does nothing else then)
and the store's (RGW, OSD, monitor: /proc), so the drain's figures beside it show
callvault's own overhead, and the store's CPU per recording what 2 cores allow.

``local_floor`` is the rest of the work the design cannot skip, also with no callvault
code: per recording, read the spool file, seal it with bare ChaCha20-Poly1305 in age's
64 KiB chunks, SHA-256 the plaintext and the payload (the manifest's digests, the
PUT's checksum), write the payload work file, commit the two writes crash-resume needs
on disk before going on (the move to ``uploading`` before any PUT; the ``archive``
entry with ``archived`` before the spool file goes) to a WAL SQLite file with
``synchronous=FULL``, and unlink the spool and work files. The PUT floor plus this is
what a client doing only the design's work would cost.

The client has the wire settings the product's has (path addressing, SHA-256 checksum
header instead of a signed payload over plain HTTP, no extra CRC, no parameter
validation) and boto3's default retry mode.
"""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _client(e: dict) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path", "payload_signing_enabled": False},
                    request_checksum_calculation="when_required", parameter_validation=False,
                    max_pool_connections=16)
    return boto3.session.Session().client(
        "s3", endpoint_url=e["endpoint_url"], aws_access_key_id=e["access_key_id"],
        aws_secret_access_key=e["secret_access_key"], region_name=e["region"], config=config)


def sample(e: dict, bucket: str, header_bucket: str, recording_id: str) -> dict:
    """What the product stored for ``recording_id``: each object's size, the payload's
    Object Lock and the tags, to send the same again."""
    from archiver import manifest_object
    from archiver.archive import Archive

    client = _client(e)
    out: dict = {}
    for name, b, key in (("header", header_bucket, Archive.header_key(recording_id)),
                         ("payload", bucket, Archive.payload_key(recording_id)),
                         ("manifest", bucket, manifest_object.key(recording_id))):
        h = client.head_object(Bucket=b, Key=key)
        tags = client.get_object_tagging(Bucket=b, Key=key)["TagSet"]
        out[name] = {"bucket": b, "size": h["ContentLength"], "lock": h.get("ObjectLockMode"),
                     "until": h.get("ObjectLockRetainUntilDate"),
                     "tags": {t["Key"]: t["Value"] for t in tags if t["Key"] != "sha256"}}
    client.close()
    return out


def design_floor(e: dict, objects: dict, n: int, threads: int, endpoint: Any = None) -> dict:
    """``n`` recordings' three PUTs (``objects`` from ``sample``) from ``threads``
    threads: rec/s, client CPU ms per recording, store CPU ms per recording."""
    import urllib.parse

    from .rgw import store_cpu_seconds

    client = _client(e)
    puts = []
    for name in ("header", "payload", "manifest"):
        o = objects[name]
        bodies = [os.urandom(o["size"]) for _ in range(4)]
        extra: dict[str, Any] = {}
        if o["lock"]:
            extra.update(ObjectLockMode=o["lock"], ObjectLockRetainUntilDate=o["until"])
        if o["tags"]:
            extra["Tagging"] = urllib.parse.urlencode(o["tags"], quote_via=urllib.parse.quote)
        puts.append((name, o["bucket"], bodies, [hashlib.sha256(b).digest() for b in bodies], extra))
    client.head_bucket(Bucket=objects["payload"]["bucket"])

    def recording(i: int) -> None:
        for name, bucket, bodies, digests, extra in puts:
            body, digest = bodies[i % 4], digests[i % 4]
            client.put_object(Bucket=bucket, Key=f"floor/{i}.{name}", Body=body, ChecksumAlgorithm="SHA256",
                              ChecksumSHA256=base64.b64encode(digest).decode(),
                              Metadata={"sha256": digest.hex()}, **extra)

    store0 = store_cpu_seconds(endpoint) if endpoint else None
    c0, t0 = _cpu(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(recording, range(n)))
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    store1 = store_cpu_seconds(endpoint) if endpoint else None
    client.close()
    return {"floor_n": n, "floor_rec_per_s": n / seconds, "floor_cpu_ms_per_rec": cpu * 1000 / n,
            "floor_store_cpu_ms_per_rec": None if store0 is None else
            {k: (store1[k] - store0[k]) * 1000 / n for k in store0},
            "floor_sizes": {k: v["size"] for k, v in objects.items()}}


def local_floor(work: Path, audio_bytes: int, n: int) -> dict:
    """``n`` recordings' local work (module doc) on one thread: CPU ms per recording."""
    import sqlite3

    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    chunk = 64 * 1024
    block = os.urandom(audio_bytes + 44)
    work.mkdir(exist_ok=True)
    db = sqlite3.connect(work / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, state TEXT, manifest TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY, body TEXT)")
    spools = []
    for i in range(n):
        (work / f"{i}.wav").write_bytes(block)
        spools.append(work / f"{i}.wav")
        db.execute("INSERT INTO t (id, state) VALUES (?, 'pending')", (i,))
    os.sync()
    c0 = _cpu()
    for i, spool in enumerate(spools):
        aead = ChaCha20Poly1305(os.urandom(32))
        data = spool.read_bytes()
        pt, ct = hashlib.sha256(data), hashlib.sha256()
        with open(work / f"{i}.payload", "wb") as out:
            for k, at in enumerate(range(0, len(data), chunk)):
                sealed = aead.encrypt(k.to_bytes(12, "big"), data[at:at + chunk], None)
                ct.update(sealed)
                out.write(sealed)
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE t SET state = 'uploading', manifest = ? WHERE id = ?", (pt.hexdigest() + ct.hexdigest(), i))
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO ledger (body) VALUES (?)", (ct.hexdigest(),))
        db.execute("UPDATE t SET state = 'archived' WHERE id = ?", (i,))
        db.execute("COMMIT")
        spool.unlink()
        (work / f"{i}.payload").unlink()
    cpu = _cpu() - c0
    db.close()
    return {"local_floor_n": n, "local_floor_cpu_ms_per_rec": cpu * 1000 / n}


def stream_work_cpu(path: Path) -> float:
    """CPU seconds of what a streamed payload adds to ``upload_file`` of the same file
    that no design can skip, with no callvault code, on this thread: seal the file with
    bare ChaCha20-Poly1305 in age's 64 KiB chunks and SHA-256 the plaintext and the
    payload (the manifest's digests). ``upload_file`` already reads the file and takes
    each 8 MiB part's CRC32 (the pipeline's part threads take a cheaper CRC32C)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    chunk, block = 64 * 1024, 16 * 64 * 1024
    aead = ChaCha20Poly1305(os.urandom(32))
    pt_buf, ct_buf = bytearray(block), memoryview(bytearray(16 * (chunk + 16)))
    pt, ct, k = hashlib.sha256(), hashlib.sha256(), 0
    c0 = _cpu()
    with open(path, "rb", buffering=0) as f:
        view = memoryview(pt_buf)
        while n := f.readinto(pt_buf):
            c = 0
            for at in range(0, n, chunk):
                size = min(chunk, n - at)
                aead.encrypt_into(k.to_bytes(12, "big"), view[at:at + size], None, ct_buf[c:c + size + 16])
                k, c = k + 1, c + size + 16
            pt.update(view[:n])
            ct.update(ct_buf[:c])
    return _cpu() - c0
