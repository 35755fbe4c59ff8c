"""Data-subject benchmark: what finding, exporting and erasing one person's calls cost.

    python -m bench subjects                       the defaults below
    python -m bench subjects --rows 200000 --export 100 --erase 200   a quick look

1. find: ``archiver.dsar.find_subject`` (three caller HMACs, one of them catalogued:
   the forms of one number) over a SQLite catalog of ``--rows`` archived recordings
   with as many consent entries in the ledger (seeded by ``INSERT ... SELECT``; the
   ``ledger_subjects`` index filled by its migration's backfill, timed), p95, against an
   empty catalog (300 rows) in the same run; plus one pass of the full scan of every
   consent entry that ``find_subject`` made before the index.
2. export: ``write_bundle`` of ``--export`` 30-second recordings (8 kHz 16-bit mono,
   archived by the real pipeline to local stores) into a file, in a child process:
   MB/s of recording audio and the child's peak RSS (``ru_maxrss``), next to a child
   that only decrypts the same recordings to nowhere (the baseline).
3. erasure: ``Eraser.request`` (single approval) of ``--erase`` one-second recordings
   of one caller on local stores, in seconds.

Printed as a table; written to bench/results/subjects-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .catalog_bench import CALLERS, _p95, _shifted, seed

ROOT = Path(__file__).resolve().parent.parent
RATE = 16_000  # bytes per second of 8 kHz 16-bit mono
SUBJECT = "ab" * 32  # the caller of every recording archiveenv makes


def _seed_consents_sql(dialect: str) -> str:
    """Consent entries 1..? for the seeded catalog's recordings (same caller_hmac formula).
    The hashes are placeholders: the find path never checks the chain."""
    assert dialect == "sqlite"
    return (
        "INSERT INTO ledger (seq, ts, kind, call_id, recording_id, body, prev_hash, hash) "
        "SELECT i, '2026-01-01T00:00:00.000000Z', 'consent', 'l' || i, 'r' || printf('%024x', i), "
        "'{\"caller_hmac\":\"' || printf('%064x', (i * 7919) % " + str(CALLERS) + ") || "
        "'\",\"consent_id\":\"c' || printf('%024x', i) || '\",\"outcome\":\"granted\",\"record\":true,"
        "\"recording_id\":\"r' || printf('%024x', i) || '\",\"started_at\":1700000000}', "
        "printf('%064x', i - 1), printf('%064x', i) "
        "FROM (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) SELECT i FROM s)")


def seed_world(path: Path, rows: int) -> dict:
    """Catalog and ledger of ``rows`` recordings; the seconds each part took."""
    from storage.dburl import open_database
    from storage.ledger import MIGRATIONS, Ledger

    with open_database(f"sqlite:///{path}") as db:
        took = {"seed catalog s": seed(db, rows)}
        db.migrate("ledger", MIGRATIONS)
        t = time.perf_counter()
        with db.write() as c:  # a bench database only: the chain's insert trigger would want real hashes
            c.execute("DROP TRIGGER ledger_insert_extends_head")
        sql, done = _seed_consents_sql(db.dialect), 0
        while done < rows:
            n = min(250_000, rows - done)
            with db.write() as c:
                c.execute(_shifted(sql, done), (n,))
            done += n
        took["seed ledger s"] = time.perf_counter() - t
        t = time.perf_counter()
        Ledger(db)  # the ledger_subjects migration: its one-time backfill
        took["index backfill s"] = time.perf_counter() - t
    return took


def measure_find(path: Path, rows: int) -> dict:
    from archiver.dsar import find_subject
    from storage.catalog import Catalog
    from storage.dburl import open_database
    from storage.ledger import Ledger

    caller = format((4 * 7919) % CALLERS, "064x")
    hmacs = [caller, "fe" * 32, "fd" * 32]
    with open_database(f"sqlite:///{path}") as db:
        catalog, ledger = Catalog(db, node="bench"), Ledger(db)
        found = find_subject(catalog, ledger, hmacs)
        out = {"find p95 ms": _p95(lambda: find_subject(catalog, ledger, hmacs)),
               "recordings found": len(found.recordings), "consents found": len(found.consents)}
        t = time.perf_counter()  # what find_subject did before the index: every consent entry
        scanned = [e.seq for e in ledger.find(kind="consent") if e.data.get("caller_hmac") in hmacs]
        out["full scan (before) ms"] = (time.perf_counter() - t) * 1000
        assert scanned == [c["seq"] for c in found.consents]
    return out


def _env(root: Path, identity):
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from archiveenv import Env

    from archiver.spool import SpoolRules
    from storage.localstore import LocalStore

    return Env(root, identity, LocalStore.create(root / "payload"), LocalStore.create(root / "headers"),
               spool_rules=SpoolRules(settle=0.0, quiet=0.0, missing_grace=0.0))


def archived_env(root: Path, n: int, seconds: int):
    """An Env with ``n`` recordings of ``seconds`` each archived to local stores."""
    from storage.age import Identity

    identity = Identity.generate()
    env = _env(root, identity)
    rids = [env.recording(RATE * seconds) for _ in range(n)]
    time.sleep(0.05)
    for rid in rids:
        env.drive(rid)
        assert env.catalog.get(rid).state == "archived", env.catalog.get(rid).state
    return env, identity


def child(args: dict) -> dict:
    """In a fresh process: export (or only decrypt) every recording of SUBJECT."""
    from archiver.archive import Archive
    from archiver.dsar import find_subject, write_bundle
    from storage.age import Identity
    from storage.catalog import Catalog
    from storage.dburl import open_database
    from storage.ledger import Ledger
    from storage.localstore import LocalStore

    root = Path(args["root"])
    identity = Identity.parse(args["identity"])
    archive = Archive(LocalStore(root / "payload"), LocalStore(root / "headers"))
    with open_database(f"sqlite:///{root / 'callvault.db'}") as db, open(root / "bundle.age", "wb") as out:
        catalog, ledger = Catalog(db), Ledger(db)
        t = time.perf_counter()
        subject = find_subject(catalog, ledger, [SUBJECT])
        audio = 0
        if args["mode"] == "export":
            manifest = write_bundle(subject, archive=archive, identities=[identity], ledger=ledger,
                                    reference="BENCH-1", actor={"actor": "bench", "via": "bench"},
                                    write=out.write, passphrase="bench-passphrase")
            audio = sum(f["size"] for n, f in manifest["files"].items() if n.startswith("recordings/"))
        else:
            class Null:
                def write(self, data) -> int:
                    return len(data)

            for rec in subject.recordings:
                audio += archive.decrypt_to(rec, [identity], Null()) or 0
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "audio bytes": audio, "recordings": len(subject.recordings),
            "out bytes": (root / "bundle.age").stat().st_size,
            "peak rss MB": _vm_hwm_mb()}


def _vm_hwm_mb() -> float:
    """This process's peak RSS. Not ``ru_maxrss``: Linux keeps that across exec, so a
    child forked from the big seeding parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.subjects_bench", "--child", json.dumps(args)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_export(root: Path, n: int) -> dict:
    env, identity = archived_env(root, n, 30)
    env.close()
    out: dict = {}
    for mode in ("decrypt", "export"):
        r = run_child({"root": str(root), "mode": mode, "identity": identity.secret_string()})
        out[mode] = {**r, "MB/s": r["audio bytes"] / r["seconds"] / 1e6}
    return out


def measure_erasure(root: Path, n: int) -> dict:
    from archiver.erasure import Eraser
    from storage.erasures import ErasureRequests

    env, _ = archived_env(root, n, 1)
    eraser = Eraser(env.catalog, env.ledger, env.archive(), ErasureRequests(env.db),
                    work_dir=env.spool / ".callvault-work")
    t = time.perf_counter()
    _, cert = eraser.request("BENCH-ERASE", {"caller_hmacs": [SUBJECT]}, "officer1", {"via": "bench"})
    seconds = time.perf_counter() - t
    assert len(cert["recordings"]) == n, len(cert["recordings"])
    env.close()
    return {"erase s": seconds, "recordings/s": n / seconds}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench subjects")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--export", type=int, default=500, help="30-second recordings to export")
    parser.add_argument("--erase", type=int, default=1000, help="recordings to erase")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    results: dict = {"rows": args.rows, "export recordings": args.export, "erase recordings": args.erase}
    with tempfile.TemporaryDirectory(prefix="callvault-subjects-bench-") as d:
        for size, rows in (("empty", 300), ("full", args.rows)):
            path = Path(d) / f"{size}.db"
            results[size] = seed_world(path, rows)
            print(f"{size}: {rows} recordings and consents seeded: {results[size]}", flush=True)
            results[size].update(measure_find(path, rows))
            print(f"{size}: {results[size]}", flush=True)
        (Path(d) / "export").mkdir()
        results["export"] = measure_export(Path(d) / "export", args.export)
        print(f"export: {results['export']}", flush=True)
        (Path(d) / "erase").mkdir()
        results["erasure"] = measure_erasure(Path(d) / "erase", args.erase)
    print(table(results))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"subjects-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    return 0


def table(r: dict) -> str:
    e, f = r["empty"], r["full"]
    x, d = r["export"]["export"], r["export"]["decrypt"]
    rows = [("measure", "baseline", "value", "ratio"),
            ("find p95 ms (empty | full catalog)", f"{e['find p95 ms']:.2f}", f"{f['find p95 ms']:.2f}",
             f"{f['find p95 ms'] / e['find p95 ms']:.2f}"),
            ("find: full scan before the index, ms", f"{f['find p95 ms']:.2f}", f"{f['full scan (before) ms']:.0f}",
             f"{f['full scan (before) ms'] / f['find p95 ms']:.0f}"),
            ("index backfill s (full)", "-", f"{f['index backfill s']:.1f}", "-"),
            (f"export MB/s (decrypt only | export), {r['export recordings']} x 30 s", f"{d['MB/s']:.1f}",
             f"{x['MB/s']:.1f}", f"{x['MB/s'] / d['MB/s']:.2f}"),
            ("export peak RSS MB (decrypt only | export)", f"{d['peak rss MB']:.0f}", f"{x['peak rss MB']:.0f}",
             f"{x['peak rss MB'] / d['peak rss MB']:.2f}"),
            (f"erase {r['erase recordings']} recordings s", "-", f"{r['erasure']['erase s']:.1f}", "-")]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows) + \
        f"\n({r['rows']} recordings and consent entries in the full catalog; {os.cpu_count()} CPUs)"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
