"""Catalog-scale benchmark: what the catalog costs with a large archive behind it.

    python -m bench catalog                  SQLite, 2,000,000 archived rows
    python -m bench catalog --rows 200000    fewer rows (a quick look)
    python -m bench catalog --postgresql     PostgreSQL too (appliance/lab/pgserver.py)
    python -m bench catalog --postgresql --no-sqlite   PostgreSQL only

For each backend, in the same run: an *empty* catalog (a few hundred rows) and a *full*
one (``--rows`` archived recordings, seeded by one generated ``INSERT ... SELECT``, so
every index and trigger of the schema is maintained as in production), then:

* p95 of ``Catalog.search`` per supervisor filter (DID, agent, caller, consent, date
  range, state, combined ones; newest first, limit 100),
* ``queue_counts`` (after every archived job, every metrics scrape, ``callvault status``),
  ``retention_due``, ``by_spool_path`` (the spool scan), ``by_uniqueid`` (every hang-up),
  ``archived_since`` / ``last_archived_at`` (every scrape, the admin page),
* consent rate: ledger appends with the catalog row in the same group commit
  (``Ledger.append_async(also=Catalog.add_op)``), 50 callers at once, as the consent
  handler does,
* drain rate: the catalog side of archive jobs (hang-up: ``by_uniqueid`` + ``mark_ended``;
  claim, the three state moves of a fresh job, the queue figures at most once a second,
  as the archiver makes them), two workers; no encryption or upload (``python -m bench archiver`` measures those),

with the full/empty ratio (rates: the median of ``--rounds`` measurements, empty and full
catalog alternately, so the shared machine's load swings hit both). Printed as a table; written to bench/results/catalog-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0  # the first seeded call; one every 15 s after it
STEP = 15.0
DIDS, AGENTS, CALLERS = 500, 200, 100_000
REPEAT = 40
CONSENTS, DRAIN_JOBS = 5000, 1500
SPOOL = "/var/spool/asterisk/callvault"


def _seed_sql(dialect: str) -> str:
    """INSERT ... SELECT of rows 1..? (archived, retained seven years; the first 1,000 due now)."""
    if dialect == "sqlite":
        hx = lambda e, w: f"printf('%0{w}x', {e})"
        source = "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) SELECT i FROM s) AS g"
    else:
        hx = lambda e, w: f"lpad(to_hex(({e})::bigint), {w}, '0')"
        source = "generate_series(1, ?::bigint) AS g(i)"
    cat = "||"
    rid = f"'r' {cat} {hx('i', 24)}"
    started = f"{T0} + i * {STEP}"
    return (
        "INSERT INTO recordings (recording_id, consent_id, uniqueid, linkedid, channel, spool_path, caller_hmac, "
        "did, agent, rule, jurisdiction, retention_class, consent_state, started_at, ended_at, state, attempts, "
        "object_key, header_key, version_id, retain_until, manifest, archived_at, node) "
        f"SELECT {rid}, 'c' {cat} {hx('i', 24)}, 'u' {cat} i, 'l' {cat} i, 'PJSIP/trunk-' {cat} {hx('i', 8)}, "
        f"'{SPOOL}/' {cat} {rid} {cat} '.wav', {hx(f'(i * 7919) % {CALLERS}', 64)}, "
        f"'2721555' {cat} (i % {DIDS}), CASE WHEN i % 10 = 0 THEN '' ELSE 'agent' {cat} (i % {AGENTS}) END, "
        "'opt-in', 'ZA', 'default', CASE WHEN i % 50 = 0 THEN 'declined' WHEN i % 7 = 0 THEN 'implied' "
        f"ELSE 'granted' END, {started}, {started} + 300, 'archived', 1, "
        f"'rec/' {cat} {rid}, 'hdr/' {cat} {rid}, 'v1', "
        f"CASE WHEN i <= 1000 THEN {started} ELSE {started} + 220752000 END, '{{}}', {started} + 400, 'bench' "
        f"FROM {source}")


def seed(db, rows: int, url: str) -> float:
    """``rows`` archived recordings into ``db`` (at ``url``); returns the seconds it took."""
    from storage.catalog import Catalog

    Catalog(db, node="bench")  # migrated
    t = time.perf_counter()
    sql = _seed_sql(db.dialect)
    # PostgreSQL: 1,000 rows a transaction. The totals trigger updates one row of
    # recording_totals per inserted row, and each update of a row within one transaction
    # walks the versions the earlier ones left: a 250,000-row transaction takes hours.
    chunk = 250_000 if db.dialect == "sqlite" else 1_000
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        with db.write() as c:
            c.execute(_shifted(sql, done), (n,))
        done += n
    if db.dialect == "postgresql":  # what autovacuum does to rows that arrived over years
        import psycopg

        conn = psycopg.connect(url, autocommit=True)  # VACUUM: outside a transaction
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
        conn.close()
    else:  # the seed's WAL into the file now, not during the measurements
        conn = sqlite3.connect(db.path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    return time.perf_counter() - t


def _shifted(sql: str, offset: int) -> str:
    """The seed statement numbering its rows from ``offset + 1``."""
    if not offset:
        return sql
    if "generate_series" in sql:
        return sql.replace("generate_series(1, ?::bigint)", f"generate_series({offset + 1}, {offset} + ?::bigint)")
    return sql.replace("SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?",
                       f"SELECT {offset + 1} UNION ALL SELECT i + 1 FROM s WHERE i < {offset} + ?")


def _p95(fn, repeat: int = REPEAT) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.quantiles(times, n=20)[-1] * 1000


def searches(rows: int) -> dict[str, dict]:
    """Supervisor filters: the keyword arguments of Catalog.search (a DID, agent and
    caller that exist in the seeded data; date ranges in the seeded year)."""
    mid = T0 + max(rows, 1) * STEP / 2
    caller = format((4 * 7919) % CALLERS, "064x")
    return {
        "newest": {},
        "did": {"did": "2721555123"},
        "agent": {"agent": "agent17"},
        "caller": {"caller_hmac": caller},
        "consent": {"consent_state": "declined"},
        "date (one day)": {"since": mid, "until": mid + 86400},
        "state failed": {"state": "failed"},
        "did + date": {"did": "2721555123", "since": mid, "until": mid + 7 * 86400},
        "agent + date": {"agent": "agent17", "since": mid, "until": mid + 7 * 86400},
        "consent + date": {"consent_state": "declined", "since": mid, "until": mid + 86400},
        "did + consent": {"did": "2721555123", "consent_state": "declined"},
        "did + agent": {"did": "2721555123", "agent": "agent23"},
    }


def measure_queries(db, rows: int) -> dict[str, float]:
    from storage.catalog import Catalog

    catalog = Catalog(db, node="bench")
    out = {f"search {name}": _p95(lambda kw=kw: catalog.search(**kw, limit=100))
           for name, kw in searches(rows).items()}
    now = T0 + (rows + 10) * STEP
    some = f"r{max(rows // 3, 1):024x}"
    out["queue_counts"] = _p95(catalog.queue_counts)
    out["retrying+quarantined"] = _p95(lambda: (catalog.retrying_count(), catalog.quarantined_count()))
    out["retention_due"] = _p95(lambda: catalog.retention_due(now), repeat=10)
    out["by_spool_path"] = _p95(lambda: catalog.by_spool_path(f"/other/root/{some}.wav"))
    out["by_uniqueid"] = _p95(lambda: catalog.by_uniqueid(f"u{max(rows // 3, 1)}"))
    out["archived_since"] = _p95(lambda: catalog.archived_since(now))
    out["last_archived_at"] = _p95(catalog.last_archived_at)
    return out


def _recording(i: int, tag: str):
    """A new call's row as the consent route makes it: its ids from the route's own
    ``new_id``, a caller HMAC (random, as keyed hashes of numbers are)."""
    from agi.handlers.consent import new_id
    from storage.catalog import Recording

    rid = new_id("r")
    return Recording(recording_id=rid, consent_id=new_id("c"), uniqueid=f"bu{tag}{i}", linkedid=f"bl{tag}{i}",
                     channel="PJSIP/trunk-1", spool_path=f"{SPOOL}/{rid}.wav", caller_hmac=os.urandom(32).hex(),
                     did="27215550100", agent="", rule="opt-in", jurisdiction="ZA", retention_class="default",
                     consent_state="granted", started_at=time.time())


def measure_rates(db, tag: str) -> dict[str, float]:
    """Consent appends (with their catalog rows) and catalog-side drain, per second."""
    from storage.catalog import Catalog
    from storage.ledger import Ledger

    catalog, ledger = Catalog(db, node="bench"), Ledger(db)

    async def consents() -> float:
        queue = iter(range(CONSENTS))

        async def caller() -> None:
            for i in queue:
                rec = _recording(i, tag)
                await ledger.append_async("consent", {"recording_id": rec.recording_id,
                                                      "caller_hmac": rec.caller_hmac},
                                          recording_id=rec.recording_id, also=catalog.add_op(rec))

        t = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(50)))
        return CONSENTS / (time.perf_counter() - t)

    consent_rate = asyncio.run(consents())
    for i in range(DRAIN_JOBS):  # the hang-ups: each queues its recording
        rec = _recording(i, tag)
        for r in catalog.by_uniqueid(rec.uniqueid):
            catalog.mark_ended(r.recording_id, time.time())
    done = [0]

    counted = [0.0]

    def worker() -> None:  # a fresh one-part job's commits, as archiver/pipeline.py makes them
        while (rec := catalog.claim(lease=300)) is not None:
            catalog.update(rec.recording_id, state="uploading", manifest="{}")
            catalog.update(rec.recording_id, state="archived", archived_at=time.time(), lease_until=0)
            if time.monotonic() - counted[0] >= 1.0:  # the queue figures, at most once a second
                counted[0] = time.monotonic()
                catalog.queue_counts(), catalog.retrying_count(), catalog.quarantined_count()
            done[0] += 1

    t = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    drain = done[0] / (time.perf_counter() - t)
    assert done[0] == DRAIN_JOBS, done[0]
    return {"consent/s": consent_rate, "drain jobs/s": drain}


def run(url, rows: int, label: str, rounds: int) -> dict:
    """Both catalogs seeded, their queries measured, then their rates ``rounds`` times,
    empty and full alternately (the machine's load swings hit both alike): the median."""
    from storage.dburl import open_database

    result: dict = {}
    with ExitStack() as stack:
        dbs = {}
        for size in ("empty", "full"):
            at = url(size)
            dbs[size] = db = stack.enter_context(open_database(at))
            n = rows if size == "full" else 300
            result[f"seed {size} s"] = seed(db, n, at)
            print(f"{label}: {size} catalog seeded with {n} rows in {result[f'seed {size} s']:.1f} s", flush=True)
            result[size] = measure_queries(db, n)
        rates: dict = {"empty": [], "full": []}
        for i in range(rounds):
            for size, db in dbs.items():
                rates[size].append(measure_rates(db, f"{size[0]}{i}"))
        for size, runs in rates.items():
            result[size].update({key: statistics.median(r[key] for r in runs) for key in runs[0]})
            result[f"{size} rates"] = runs
    return result


def table(results: dict) -> str:
    lines = []
    for label, r in results.items():
        rows = [(label, "empty (ms | /s)", "full (ms | /s)", "full/empty")]
        for key in r["empty"]:
            e, f = r["empty"][key], r["full"][key]
            rows.append((key, f"{e:.2f}", f"{f:.2f}", f"{f / e:.2f}" if e else "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows] + [""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench catalog")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL as well as SQLite")
    parser.add_argument("--no-sqlite", action="store_true", help="leave SQLite out (with --postgresql)")
    parser.add_argument("--rounds", type=int, default=3, help="rate measurements per catalog (median)")
    args = parser.parse_args(argv)
    if args.no_sqlite and not args.postgresql:
        parser.error("--no-sqlite leaves nothing to measure without --postgresql")
    results: dict = {}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="callvault-catalog-bench-") as d:
            results["SQLite"] = run(lambda size: f"sqlite:///{Path(d) / size}.db", args.rows, "SQLite", args.rounds)
    if args.postgresql:
        from appliance.lab.pgserver import PgServer

        with PgServer(fsync=True) as server:
            results["PostgreSQL"] = run(lambda size: server.new_database(), args.rows, "PostgreSQL", args.rounds)
    print(table(results))
    print(f"({args.rows} archived rows in the full catalog; p95 of {REPEAT} calls; rates: median of "
          f"{args.rounds} rounds, empty and full alternately; {os.cpu_count()} CPUs)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"catalog-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(
        json.dumps({"rows": args.rows, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
