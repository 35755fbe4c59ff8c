"""Real calls: what `callvault serve` costs next to the Asterisk it sits beside.

    python -m bench calls                      50 calls a scenario, 10 at a time
    python -m bench calls --calls 20 --rounds 3 --profile
    python -m bench calls --ab ../other-checkout --calls 100 --rounds 3   interleaved A/B

A lab of its own (appliance/lab/: Asterisk 22 and Ceph RGW in the cached root, the short
English prompts installed) and `callvault serve` as its own process (FastAGI, AMI,
archiver to the lab's RGW, web) with one opt-in rule. SIPp (appliance/lab/sip.py) places
``--calls`` real SIP calls, ``--concurrency`` at a time, in two scenarios:

- declined: the caller presses the refuse key during the notice and hangs up: nothing
  is recorded;
- recorded: the caller presses the allow key and talks; the call lasts until about 6 s
  of it are recorded; the scenario ends when every recording is archived (verified) in
  the catalog.

Over each scenario the bench reads the CPU (utime + stime of the process and its reaped
children, /proc/PID/stat) of `callvault serve`, of Asterisk and of the RGW processes
(radosgw, ceph-osd, ceph-mon), and serve's /metrics before and after:
``callvault_ami_events_total`` (AMI events received per call) and
``callvault_s3_requests_total`` (HTTP requests per archived recording). The idle CPU of
each part is measured over a quiet stretch first (serve's from its threads' schedstat,
nanoseconds; clock ticks are too coarse there); the table is gross (idle included).

Both scenarios run twice: with the product's manager.conf user (its ``eventfilter``
lines) and with a user of the same privileges without them (the baseline: every event of
those classes). The AMI session's own cost per event is measured against a stand-in
Asterisk (bench/calls_ami.py) and multiplied by the events per call. ``--profile`` adds a pass
of each scenario under py-spy (not counted in the table; bench/calls_profile.py): the
share of serve's CPU each part of callvault takes.

With the product's AMI user, both scenarios also run against the floor in the same run
and lab (bench/calls_floor.py, serve stopped): a no-logic FastAGI server that sends the
same AGI commands, a panoramisk session as the product's AMI user, one bare boto3
``put_object`` per recording. The table gives the floor's CPU per call, floor/Asterisk
and callvault/floor. ``--ab TREE``: declined calls only, serve from this checkout and
from TREE alternately (``--rounds`` pairs), nothing else.

Printed as a table; written to bench/results/calls-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from . import calls_ami, calls_floor, calls_profile
from .calls_report import TARGETS, report

RESULTS = Path(__file__).resolve().parent / "results"
TICK = os.sysconf("SC_CLK_TCK")
DID = "27215550100"
UNFILTERED_USER = "callvault-unfiltered"
RULE = {"name": "bench-opt-in", "mode": "opt-in", "timeout": 3.0, "repeats": 1}
IDLE_SECONDS = 10.0  # RGW's lifecycle thread wakes every 10 s in the lab


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``'s live threads (/proc/PID/task/*/schedstat, nanoseconds):
    for the idle rates, where clock ticks (10 ms) are too coarse for 10 s of serve."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def cpu(parts: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in pids) for name, pids in parts.items()}


def scrape(url: str) -> dict[str, dict[str, float]]:
    """serve's counters by family: {"callvault_ami_events": {"Hangup": 3.0, ...}, ...}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_total"):
                out.setdefault(fam.name, {})[",".join(s.labels.values()) or "-"] = s.value
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


class BenchLab:
    """The lab with one more manager.conf user: the product's privileges, no eventfilter."""

    def __init__(self) -> None:
        from agi.dialplan import manager_stanza
        from appliance.lab.harness import Lab

        class _Lab(Lab):
            def manager_stanzas(self) -> str:
                unfiltered = "".join(line + "\n" for line in manager_stanza(
                    UNFILTERED_USER, self.product_ami_secret).splitlines() if not line.startswith("eventfilter"))
                return super().manager_stanzas() + "\n" + unfiltered

        self.lab = _Lab(f"bcalls{os.getpid()}")

    def up(self, work: Path):
        from announcements.catalog import load_catalog
        from announcements.library import PromptLibrary
        from appliance.lab.harness import SHORT_ENGLISH

        state = self.lab.up(progress=lambda m: print(m, flush=True))
        (work / "prompts.toml").write_text(SHORT_ENGLISH)
        library = PromptLibrary(work / "library", load_catalog(str(work / "prompts.toml")))
        library.build(["en"])
        library.install(state.sounds_host)
        return state

    def parts(self) -> dict[str, list[int]]:
        lab = self.lab
        return {"asterisk": [lab.asterisk.proc.pid], "rgw": [p.pid for p in lab.rgw.procs.values()]}

    def down(self) -> None:
        self.lab.down()


def serve_config(state, work: Path, user: str, recipient: str) -> Path:
    from appliance.lab.asterisk import free_port

    s3 = state.s3_endpoint
    spool = Path(state.spool_host) / "bench"
    spool.mkdir(mode=0o777, exist_ok=True)
    path = work / f"callvault-{user}.toml"
    path.write_text(f"""
[agi]
listen = "127.0.0.1:{state.agi_port}"
[ami]
host = "127.0.0.1"
port = {state.ami_port}
username = "{user}"
secret_file = "{work / 'ami.secret'}"
[database]
url = "sqlite:///{work / 'callvault.db'}"
[spool]
dir = "{spool}"
asterisk_dir = "{state.spool_inside}/bench"
[archive]
recipients = ["{recipient}"]
[storage]
backend = "s3"
endpoint_url = "{s3.endpoint_url}"
region = "{s3.region}"
bucket = "bench-calls"
header_bucket = "bench-calls-headers"
access_key_id = "{s3.access_key_id}"
secret_access_key = "{s3.secret_access_key}"
[web]
listen = "127.0.0.1:{free_port()}"
[privacy]
hmac_key_file = "{work / 'hmac.key'}"
[prompts]
sounds_dir = "{state.sounds_host}"
library = "{work / 'library'}"
[[consent.rules]]
{chr(10).join(f'{k} = {json.dumps(v)}' for k, v in RULE.items())}
""")
    return path


class Serve:
    """`callvault serve -c CONFIG` as a process of its own."""

    def __init__(self, config: Path, work: Path, tree: str | None = None):
        self.out = work / f"{config.stem}.out"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if tree:  # another checkout's code (A/B): first on the path
            env["PYTHONPATH"] = tree
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "callvault"), "serve", "-c", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.url = ""

    def wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            for line in self.out.read_text(errors="replace").splitlines():
                if "callvault: web on " in line:
                    self.url = line.split("web on ", 1)[1].split()[0].rstrip("/")
            if self.url:
                try:
                    with urllib.request.urlopen(self.url + "/healthz", timeout=5):
                        return self.url  # 200: AMI logged in, archiver and storage up
                except OSError:
                    pass
            time.sleep(0.3)
        raise RuntimeError(f"serve not ready (exit {self.proc.poll()}):\n{self.out.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Catalog:
    """serve's SQLite database, read-only from here (no scrape: that would cost serve CPU)."""

    def __init__(self, path: Path):
        self.path = path

    def _one(self, sql: str, *args) -> tuple:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, args).fetchone()
        finally:
            conn.close()

    def consents(self, since: float) -> int:
        return self._one("SELECT count(*) FROM ledger WHERE kind = 'consent' AND seq > ?", since)[0]

    def last_seq(self) -> int:
        return self._one("SELECT coalesce(max(seq), 0) FROM ledger")[0]

    def archived(self, since: float) -> tuple[int, float]:
        n, seconds = self._one("SELECT count(*), avg(ended_at - started_at) FROM recordings "
                               "WHERE state = 'archived' AND started_at >= ?", since)
        return n, seconds or 0.0


async def place(sip_port: int, calls: int, concurrency: int, key: str, talk: bool, tag: str) -> int:
    """``calls`` SIP calls, ``concurrency`` at a time (one SIPp run each); the failed ones."""
    from appliance.lab.sip import CallerScript, SipCall, place_sip_calls

    script = (CallerScript(key, wait=1.0, hangup_after=8.0, talk=True) if talk
              else CallerScript(key, wait=1.0, hangup_after=2.5))
    failed = 0
    for start in range(0, calls, concurrency):
        batch = [SipCall(f"278{tag}{i:06d}", DID) for i in range(start, min(calls, start + concurrency))]
        run = await place_sip_calls(sip_port, batch, script)
        if not run.ok:
            failed += len(batch)
            print(f"  SIPp exited {run.returncode}: {run.errors[-300:]}", flush=True)
    return failed


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def scenario(name: str, serve: Serve, parts: dict[str, list[int]], catalog: Catalog, sip_port: int,
             calls: int, concurrency: int, tag: str, profile_to: Path | None = None) -> dict:
    recorded = name == "recorded"
    seq, started = catalog.last_seq(), time.time()
    metrics0 = scrape(serve.url)
    profiler = calls_profile.start(serve.proc.pid, profile_to) if profile_to else None
    cpu0, t0 = cpu(parts), time.monotonic()
    failed = asyncio.run(place(sip_port, calls, concurrency, "1" if recorded else "2", recorded, tag))
    ok = calls - failed
    wait_until(lambda: catalog.consents(seq) >= ok, 60, "the consent entries")
    if recorded:
        wait_until(lambda: catalog.archived(started)[0] >= ok, 300, "every recording archived")
    time.sleep(1.0)  # the last hang-ups' events
    cpu1, wall = cpu(parts), time.monotonic() - t0
    profile = calls_profile.stop(profiler) if profiler else None
    metrics1 = scrape(serve.url)
    n = max(ok, 1)
    used = delta(cpu1, cpu0)
    result = {
        "calls": calls, "failed": failed, "wall_seconds": wall,
        "cpu_seconds": used,
        "ms_per_call": {k: 1000 * used.get(k, 0.0) / n for k in parts},
        "ami_events_per_call": {k: v / n for k, v in sorted(delta(
            metrics1.get("callvault_ami_events", {}), metrics0.get("callvault_ami_events", {})).items())},
        "consent_outcomes": delta(metrics1.get("callvault_consent_outcomes", {}),
                                  metrics0.get("callvault_consent_outcomes", {})),
    }
    result["ratio"] = result["ms_per_call"]["callvault"] / max(result["ms_per_call"]["asterisk"], 1e-9)
    if recorded:
        archived, seconds = catalog.archived(started)
        result.update(archived=archived, recording_seconds=seconds, s3_requests_per_recording={
            k: v / max(archived, 1) for k, v in sorted(delta(
                metrics1.get("callvault_s3_requests", {}), metrics0.get("callvault_s3_requests", {})).items())})
    if profile is not None:
        result["profile"] = profile
    return result


def ab(args: argparse.Namespace, state, lab: BenchLab, work: Path, config: Path, catalog: Catalog) -> dict:
    """Declined calls, ``--rounds`` pairs, alternating serve from this checkout and from ``--ab``."""
    out: dict[str, list[dict]] = {"this": [], "ab": []}
    for rnd in range(args.rounds):
        for j, (build, tree) in enumerate((("this", None), ("ab", args.ab))[::1 if rnd % 2 == 0 else -1]):
            serve = Serve(config, work, tree)
            try:
                serve.wait_ready()
                parts = {"callvault": [serve.proc.pid], **lab.parts()}
                print(f"A/B round {rnd + 1}, {build}: {args.calls} declined calls", flush=True)
                r = scenario("declined", serve, parts, catalog, state.sip_port, args.calls, args.concurrency,
                             f"5{rnd:02d}{j}")
                print(f"  callvault {r['ms_per_call']['callvault']:.2f} ms/call, "
                      f"Asterisk {r['ms_per_call']['asterisk']:.2f}", flush=True)
                out[build].append(r)
            finally:
                serve.stop()
    return out


def run(args: argparse.Namespace) -> dict:
    from appliance import compose
    from appliance import config as cfg
    from storage import keys
    from storage.age import Identity

    work = Path(tempfile.mkdtemp(prefix="callvault-bcalls-", dir="/var/tmp"))
    lab = BenchLab()
    results: dict = {"calls": args.calls, "concurrency": args.concurrency, "rounds": args.rounds,
                     "targets": TARGETS, "passes": {}, "idle_ms_per_s": {}}
    try:
        t0 = time.monotonic()
        state = lab.up(work)
        print(f"lab up in {time.monotonic() - t0:.0f} s", flush=True)
        (work / "ami.secret").write_text(state.product_ami_secret)
        identity = Identity.generate()
        keys.write_identity(work / "identity.txt", identity)
        catalog = Catalog(work / "callvault.db")
        users = {"filtered": state.product_ami_user, "unfiltered": UNFILTERED_USER}
        if args.ab:
            config = serve_config(state, work, state.product_ami_user, str(identity.recipient))
            compose.init_archive(cfg.load(config, check_paths=False))
            results["ab"] = ab(args, state, lab, work, config, catalog)
            users = {}
        for i, (label, user) in enumerate(users.items()):
            config = serve_config(state, work, user, str(identity.recipient))
            if i == 0:
                compose.init_archive(cfg.load(config, check_paths=False))
            serve = Serve(config, work)
            try:
                serve.wait_ready()
                parts = {"callvault": [serve.proc.pid], **lab.parts()}
                c0, s0 = cpu(parts), thread_cpu_seconds(serve.proc.pid)
                time.sleep(IDLE_SECONDS)
                c1, s1 = cpu(parts), thread_cpu_seconds(serve.proc.pid)
                results["idle_ms_per_s"][label] = {k: 1000 * (c1[k] - c0[k]) / IDLE_SECONDS for k in parts}
                results["idle_ms_per_s"][label]["callvault"] = 1000 * (s1 - s0) / IDLE_SECONDS
                for rnd in range(args.rounds):
                    for name in ("declined", "recorded"):
                        print(f"{label} AMI user, {name}, round {rnd + 1}: {args.calls} calls", flush=True)
                        r = scenario(name, serve, parts, catalog, state.sip_port, args.calls,
                                     args.concurrency, f"{i}{rnd}{name[0] == 'r':d}")
                        results["passes"].setdefault(f"{name}/{label}", []).append(r)
                for name in ("declined", "recorded") if args.profile and label == "filtered" else ():
                    print(f"filtered AMI user, {name}, under py-spy", flush=True)
                    results.setdefault("profiles", {})[name] = scenario(
                        name, serve, parts, catalog, state.sip_port, args.calls, args.concurrency,
                        f"{i}9{name[0] == 'r':d}", profile_to=work / f"profile-{name}.txt")
            finally:
                serve.stop()
            if label == "filtered" and not args.no_floor:
                for rnd in range(args.rounds):
                    for name in ("declined", "recorded"):
                        print(f"the floor, {name}, round {rnd + 1}: {args.calls} calls", flush=True)
                        results.setdefault("floor", {}).setdefault(name, []).append(calls_floor.scenario(
                            name, state, work, lab.parts(), args.calls, args.concurrency,
                            f"7{rnd}{name[0] == 'r':d}", RULE["timeout"]))
            if args.filtered_only:
                break
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    results["ami_us_per_event"] = {name: statistics.median(calls_ami.cost_per_event(name) for _ in range(3))
                                   for name in calls_ami.EVENTS}
    results["ami_floor_us_per_event"] = statistics.median(calls_ami.floor_per_event() for _ in range(3))
    results["ami_panoramisk_us_per_event"] = statistics.median(calls_ami.panoramisk_per_event() for _ in range(3))
    results["total_seconds"] = time.monotonic() - t0
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench calls", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="calls per scenario (default 50)")
    parser.add_argument("--concurrency", type=int, default=10, help="calls at a time (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat each scenario (default 1)")
    parser.add_argument("--profile", action="store_true", help="one more pass of each scenario under py-spy")
    parser.add_argument("--ab", metavar="TREE", help="A/B: declined calls only, --rounds pairs alternating "
                        "serve from this checkout and from TREE (another checkout of callvault)")
    parser.add_argument("--no-floor", action="store_true", help="skip the no-logic floor's passes")
    parser.add_argument("--filtered-only", action="store_true",
                        help="skip the passes with the unfiltered AMI user (see \"AMI events\")")
    args = parser.parse_args(argv)
    results = run(args)
    print(report(results))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"calls-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {out} ({results['total_seconds']:.0f} s)")
    return 0
