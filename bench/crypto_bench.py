"""Encryption efficiency: ``Encryptor.encrypt_to`` as the archiver runs it (a payload
of more than one 8 MiB part also gets each part's CRC32C, as the streamed upload sends
with each part) against baselines measured in the same run.

    python -m bench crypto                 # 256 MiB, 3 rounds (about a minute)
    python -m bench crypto --size 64 --rounds 2
    python -m bench crypto --quick         # 64 MiB, 2 rounds

Each round measures, on the same random data:

- raw ChaCha20-Poly1305 (``cryptography``, ``encrypt_into`` over the same 64 KiB
  chunks into a reused buffer): on one thread, and split over as many threads as
  ``encrypt_to`` runs (counted while it runs);
- SHA-256 alone, one pass in 1 MiB updates (the manifest needs two passes, the
  plaintext and the payload), and CRC32C alone, likewise (a multi-part upload's part
  checksums, ``storage.s3upload.part_checksum``);
- ``encrypt_to`` in memory (``io.BytesIO`` in, the pieces dropped), with its CPU time;
- ``encrypt_to`` from a file to ``/dev/null`` and the ``age`` CLI (1.1.1 here) on
  the same file to ``/dev/null`` (wall time, the file in the page cache).

Then, per recording (median of 10 per round), 1- and 5-minute recordings (8 kHz 16-bit
mono, 0.96 and 4.8 MB, what the archiver mostly sees): ``encrypt_to`` from the file,
the same work done bare on one thread (read, seal, two SHA-256 passes), and the age
CLI (a process start included). Ratios there are speed ratios (baseline time / ours).

The "ideal" line is what this host could do if every core were busy with nothing
but the work itself: ``cores / (1/chacha + 2/sha256 + parts/crc32c)`` from the same
round's single-thread figures (``parts`` is 1 for a multi-part payload, else 0). The median of the rounds is printed (min-max beside it) and
written to bench/results/crypto-<time>.json.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
PART_SIZE = 8 * MiB  # the S3 store's default part size (storage/s3store.py)


def raw_chacha(data: memoryview, threads: int) -> float:
    """Seconds to seal ``data`` in 64 KiB chunks over ``threads`` threads."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from storage.age.stream import CHUNK_SIZE, ENC_CHUNK_SIZE, chunk_nonce

    aead = ChaCha20Poly1305(os.urandom(32))
    chunks = -(-len(data) // CHUNK_SIZE)
    per = -(-chunks // threads)

    def seal(first: int) -> None:
        out = memoryview(bytearray(16 * ENC_CHUNK_SIZE))
        for k in range(first, min(chunks, first + per)):
            piece = data[k * CHUNK_SIZE:(k + 1) * CHUNK_SIZE]
            at = (k % 16) * ENC_CHUNK_SIZE
            aead.encrypt_into(chunk_nonce(k, False), piece, None, out[at:at + len(piece) + 16])

    workers = [threading.Thread(target=seal, args=(t * per,)) for t in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def sha256_pass(data: memoryview) -> float:
    import hashlib

    h = hashlib.sha256()
    t0 = time.perf_counter()
    for i in range(0, len(data), MiB):
        h.update(data[i:i + MiB])
    return time.perf_counter() - t0


def crc32c_pass(data: memoryview) -> float:
    import crc32c

    crc = 0
    t0 = time.perf_counter()
    for i in range(0, len(data), MiB):
        crc = crc32c.crc32c(data[i:i + MiB], crc)
    return time.perf_counter() - t0


def multipart(size: int) -> bool:
    """Whether a recording of ``size`` bytes is streamed as a multipart upload."""
    from storage.age import payload_size_for
    from storage.blobstore import part_size_for

    return payload_size_for(size) > part_size_for(payload_size_for(size), PART_SIZE)


def encryptor(source, write, size: int) -> tuple[float, float, int]:
    """Wall and CPU seconds of one archiver-style ``encrypt_to`` (with each part's
    CRC32C for a multipart payload), and the most threads seen while it ran (the
    calling thread included)."""
    import crc32c

    from storage.age import Encryptor

    enc = Encryptor([RECIPIENT])
    before = threading.active_count()
    most, parts = 0, multipart(size)
    crc = filled = 0

    def counted(piece) -> None:
        nonlocal most, crc, filled
        most = max(most, threading.active_count())
        write(piece)
        mv = memoryview(piece)
        while parts and len(mv):  # what the upload's part threads do, part by part
            take = min(len(mv), PART_SIZE - filled)
            crc, filled, mv = crc32c.crc32c(mv[:take], crc), filled + take, mv[take:]
            if filled == PART_SIZE:
                crc = filled = 0

    t0, c0 = time.perf_counter(), time.process_time()
    enc.encrypt_to(source, counted)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, most - before + 1


def age_cli(path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["age", "-r", str(RECIPIENT), "-o", os.devnull, str(path)], check=True)
    return time.perf_counter() - t0


def work_alone(path: Path, size: int) -> float:
    """Seconds for the bare work on one thread: read the file, seal it, hash the
    plaintext and the payload (one part: its digest is the payload's)."""
    import hashlib

    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from storage.age.stream import CHUNK_SIZE, chunk_nonce

    aead = ChaCha20Poly1305(os.urandom(32))
    out = memoryview(bytearray(size + 16 * (size // CHUNK_SIZE + 1)))
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        pt = memoryview(f.read())
    c = 0
    for k in range(0, size, CHUNK_SIZE):
        piece = pt[k:k + CHUNK_SIZE]
        aead.encrypt_into(chunk_nonce(k // CHUNK_SIZE, False), piece, None, out[c:c + len(piece) + 16])
        c += len(piece) + 16
    hashlib.sha256(pt).digest()
    hashlib.sha256(out[:c]).digest()
    return time.perf_counter() - t0


def small_recordings(tmp: Path, rounds: int) -> dict:
    """Per-recording milliseconds (median of many) for 1- and 5-minute recordings
    (8 kHz 16-bit mono): ``encrypt_to`` file -> /dev/null, the work alone, the age CLI."""
    out = {}
    for label, seconds in (("1min", 60), ("5min", 300)):
        size = seconds * 16_000 + 44
        path = tmp / f"{label}.wav"
        path.write_bytes(os.urandom(size))
        times: dict[str, list[float]] = {"encrypt": [], "work": [], "age_cli": []}
        with open(os.devnull, "wb", buffering=0) as null:
            for _ in range(10 * rounds):
                with open(path, "rb", buffering=0) as src:
                    times["encrypt"].append(encryptor(src, null.write, size)[0])
                times["work"].append(work_alone(path, size))
                if len(times["age_cli"]) < 3 * rounds:
                    times["age_cli"].append(age_cli(path))
        out[label] = {k: statistics.median(v) * 1e3 for k, v in times.items()} | {"size": size}
    return out


def one_round(data: memoryview, path: Path, threads: int) -> dict:
    size = len(data)
    r: dict = {}
    with open(os.devnull, "wb", buffering=0) as null:
        with open(path, "rb", buffering=0) as src:
            wall, _, _ = encryptor(src, null.write, size)
        r["encrypt_file_s"] = wall
    r["age_cli_s"] = age_cli(path)
    wall, cpu, threads_seen = encryptor(io.BytesIO(data), lambda piece: None, size)
    r["encrypt_s"], r["encrypt_cpu_s"], r["threads"] = wall, cpu, threads_seen
    r["raw_1_s"] = raw_chacha(data, 1)
    r["raw_n_s"] = raw_chacha(data, threads or threads_seen)
    r["sha256_s"] = sha256_pass(data)
    r["crc32c_s"] = crc32c_pass(data)
    return r


RECIPIENT = None


def measure(size: int, rounds: int) -> dict:
    global RECIPIENT
    from storage.age import Identity

    RECIPIENT = Identity.generate().recipient
    data = memoryview(os.urandom(size))
    runs = []
    with tempfile.TemporaryDirectory(prefix="crypto-bench-") as tmp:
        path = Path(tmp) / "source.wav"
        path.write_bytes(data)
        encryptor(io.BytesIO(data[:4 * MiB]), lambda piece: None, 4 * MiB)  # warm: imports, pools
        threads = encryptor(io.BytesIO(data), lambda piece: None, size)[2]
        for n in range(rounds):
            print(f"round {n + 1}/{rounds} ...", flush=True)
            runs.append(one_round(data, path, threads))
        print("1- and 5-minute recordings ...", flush=True)
        small = small_recordings(Path(tmp), rounds)
    return {"size": size, "rounds": runs, "cpus": os.cpu_count(), "threads": threads,
            "crc32c_passes": int(multipart(size)), "small": small}


def summarise(res: dict) -> dict:
    """Per-round rates (MB/s) and ratios; median and spread over the rounds."""
    size, cores, crc = res["size"], res["cpus"], res["crc32c_passes"]
    per_round = []
    for r in res["rounds"]:
        rate = {k[:-2]: size / v / 1e6 for k, v in r.items() if k.endswith("_s")}
        rate["ideal"] = cores / (1 / rate["raw_1"] + 2 / rate["sha256"] + crc / rate["crc32c"])
        rate["cpu_s_per_gib"] = r["encrypt_cpu_s"] * (1 << 30) / size
        rate["vs_raw_n"] = rate["encrypt"] / rate["raw_n"]
        rate["vs_raw_1"] = rate["encrypt"] / rate["raw_1"]
        rate["vs_age"] = rate["encrypt_file"] / rate["age_cli"]
        rate["vs_ideal"] = rate["encrypt"] / rate["ideal"]
        rate["work_s_per_gib"] = (1 << 30) / 1e6 * (1 / rate["raw_1"] + 2 / rate["sha256"] + crc / rate["crc32c"])
        per_round.append(rate)
    return {k: (statistics.median(r[k] for r in per_round), min(r[k] for r in per_round),
                max(r[k] for r in per_round)) for k in per_round[0]}


def table(res: dict, s: dict) -> str:
    def fig(k: str, unit: str = " MB/s", fmt: str = "{:.0f}") -> str:
        med, lo, hi = s[k]
        return f"{fmt.format(med)}{unit} ({fmt.format(lo)}-{fmt.format(hi)})"

    n = res["threads"]
    work = "ChaCha + 2 SHA-256" + (" + CRC32C" if res["crc32c_passes"] else "")
    rows = [("metric", "callvault", "baseline (same run)", "ratio", "target"),
            ("encrypt_to, in memory", fig("encrypt"), f"raw ChaCha20-Poly1305, {n} threads {fig('raw_n')}",
             fig("vs_raw_n", "", "{:.2f}"), ">= 0.7"),
            ("", "", f"raw ChaCha20-Poly1305, 1 thread {fig('raw_1')}", fig("vs_raw_1", "", "{:.2f}"), ""),
            ("", "", f"ideal: {res['cpus']} cores, {work} {fig('ideal')}",
             fig("vs_ideal", "", "{:.2f}"), ""),
            ("encrypt_to, file -> /dev/null", fig("encrypt_file"), f"age CLI, same file {fig('age_cli')}",
             fig("vs_age", "", "{:.2f}"), "> 1.0"),
            ("encrypt_to CPU time", fig("cpu_s_per_gib", " s/GiB", "{:.2f}"),
             f"the work alone ({work}) {fig('work_s_per_gib', ' s/GiB', '{:.2f}')}", "", ""),
            ("SHA-256, one pass (reference)", fig("sha256"), "", "", ""),
            ("CRC32C, one pass (reference)", fig("crc32c"), "", "", "")]
    for label, name in (("1min", "1-min"), ("5min", "5-min")):
        r = res["small"][label]
        rows.append((f"encrypt_to, {name} recording ({r['size'] / 1e6:.2f} MB)", f"{r['encrypt']:.2f} ms",
                     f"the work alone, 1 thread {r['work']:.2f} ms", f"{r['work'] / r['encrypt']:.2f}", ""))
        rows.append(("", "", f"age CLI, same file {r['age_cli']:.2f} ms", f"{r['age_cli'] / r['encrypt']:.2f}",
                     "> 1.0"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    size_mib, rounds = 256, 3
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--quick":
            size_mib, rounds = 64, 2
        elif a in ("--size", "--rounds") and args and args[0].isdigit() and int(args[0]) > 0:
            value = int(args.pop(0))
            size_mib, rounds = (value, rounds) if a == "--size" else (size_mib, value)
        else:
            raise SystemExit(f"unknown argument {a!r}; options: --quick, --size MIB, --rounds N")
    t0 = time.perf_counter()
    res = measure(size_mib * MiB, rounds)
    s = summarise(res)
    print()
    print(table(res, s))
    print(f"\n({size_mib} MiB, median of {rounds} rounds (min-max); {res['cpus']} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}; {time.perf_counter() - t0:.0f} s)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"crypto-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(
        json.dumps({**res, "summary": s}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
