"""A fake Asterisk that speaks AGI the way Asterisk 22 does, to load the consent flow.

Built from ``tests/agi/captures/agi-fastagi-session.txt``: the environment block has
the capture's keys and shape, and each command gets the reply Asterisk 22 gave it
(``GET VARIABLE CHANNEL(linkedid)`` -> ``200 result=1 (<id>)``, ``GET DATA`` ->
``200 result=1`` i.e. the caller pressed 1, ``STREAM FILE`` -> ``200 result=0
endpos=3404``, ``EXEC`` -> ``200 result=0``, ``SET VARIABLE`` -> ``200 result=1``,
``CHANNEL STATUS`` -> ``200 result=6``, anything else -> ``510``).

:func:`run_fastagi` runs N concurrent FastAGI calls against a server in **another
process**: :func:`serve` (the real ``FastAgiServer``, consent handler, ``Ledger`` and
``Catalog`` on a temporary SQLite file in WAL mode with ``synchronous=FULL``, or on the
PostgreSQL database named by ``db_url``, composed
by ``appliance.compose.agi_routes`` as in production) or :func:`serve_floor` (the
same bytes on the wire, no logic: what the event loop costs by itself). Both run on
the event loop ``callvault serve`` uses (``agi.server.new_event_loop``). Closed
loop: each call starts a new flow as soon as its last one ended. With ``paced=True``
the calls behave like callers (see ``NOTICE_SECONDS``), so N calls are *in progress*
without saturating the server. The classic entry point is driven, with the same
replies, by ``bench.agi_bench``.

Per-command latency is the server's turn: from the moment our reply (or the
environment block) is written to the moment the next command line arrives. It is
labelled with the command that arrives, so "EXEC MixMonitor" is the turn that
contains the ledger and catalog writes. Measured by the load generator, so it
includes the generator's own scheduling delay (an upper bound on the server's).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from .agi_procstat import machine, process_cpu, thread_cpu

ROOT = Path(__file__).resolve().parent.parent
DID = "27215550100"
CALLER = "27215550123"

# --- what Asterisk says ----------------------------------------------------------


def env_block(n: int, *, fastagi: bool, port: int = 4573) -> bytes:
    """The environment block Asterisk 22 sends, shaped like the capture."""
    uniqueid = f"{1795329357 + n // 100000}.{n % 100000}"
    lines = []
    if fastagi:
        # The generated consent context's URL: the dialplan raises the UserEvent and plays
        # the confirmation after the AGI (agi.variables.DIALPLAN_TAIL).
        lines += ["agi_network: yes", "agi_network_script: consent?tail=dialplan",
                  f"agi_request: agi://127.0.0.1:{port}/consent?tail=dialplan"]
    else:
        lines += ["agi_request: /usr/share/asterisk/agi-bin/callvault-agi"]
    lines += [f"agi_channel: Local/{DID}@callvault-lab-{n:08x};2", "agi_language: en",
              "agi_type: Local", f"agi_uniqueid: {uniqueid}",
              "agi_version: 22.10.1+dfsg+~cs6.17.60671434-1", f"agi_callerid: {CALLER}",
              "agi_calleridname: Load Caller", "agi_callingpres: 0", "agi_callingani2: 0",
              "agi_callington: 0", "agi_callingtns: 0", "agi_dnid: unknown", "agi_rdnis: unknown",
              "agi_context: callvault-consent", "agi_extension: s", "agi_priority: 4",
              "agi_enhanced: 0.0", "agi_accountcode: ", "agi_threadid: 140247111534272"]
    # FastAGI: the generated dialplan's AGI(.../consent,${ARG1},,${CHANNEL(linkedid)}).
    lines += ([f"agi_arg_1: {DID}", "agi_arg_2: ", f"agi_arg_3: {uniqueid}"] if fastagi
              else ["agi_arg_1: consent", f"agi_arg_2: {DID}"])
    return ("\n".join(lines) + "\n\n").encode()


_REPLIES = (
    (b"GET DATA", b"200 result=1\n"),
    (b"STREAM FILE", b"200 result=0 endpos=3404\n"),
    (b"EXEC", b"200 result=0\n"),
    (b"SET VARIABLE", b"200 result=1\n"),
    (b"CHANNEL STATUS", b"200 result=6\n"),
    (b"VERBOSE", b"200 result=1\n"),
    (b"ANSWER", b"200 result=0\n"),
)


def answer(command: bytes, linkedid: bytes) -> bytes:
    if command.startswith(b"GET VARIABLE"):
        if b"CHANNEL(linkedid)" in command:
            return b"200 result=1 (" + linkedid + b")\n"
        return b"200 result=0\n"
    for prefix, reply in _REPLIES:
        if command.startswith(prefix):
            return reply
    return b"510 Invalid or unknown command\n"


def label(command: bytes) -> str:
    """The command's verb (plus the application for EXEC): no arguments."""
    head = command.split(b' "', 2)
    if head[0] == b"EXEC" and len(head) > 1:
        return "EXEC " + head[1].split(b'"')[0].decode(errors="replace")
    return head[0].decode(errors="replace")


def flow_granted(commands: list[bytes]) -> bool:
    """The flow ended as a press of 1 must: MixMonitor started, then recorded and the
    confirmation named (FastAGI: for the dialplan to play) or played (classic)."""
    if not any(c.startswith((b'EXEC "MixMonitor"', b"EXEC MixMonitor")) for c in commands):
        return False
    last = commands[-1]
    if last.startswith(b'EXEC "MSet"'):
        return b"CALLVAULT_RECORD=yes" in last and b"CALLVAULT_CONFIRM=callvault/" in last
    return (any(c.startswith(b'EXEC "MSet"') and b"CALLVAULT_RECORD=yes" in c
                or c == b'SET VARIABLE "CALLVAULT_RECORD" "yes"' for c in commands)
            and last.startswith(b"STREAM FILE"))


# --- the FastAGI server, in its own process ------------------------------------------


# Short English prompts: the consent handler fails closed unless its notice is installed.
SHORT_PROMPTS = """[languages.en.prompts]
notice-opt-in = "Record? {allow} yes, {refuse} no."
notice-opt-out = "Recorded. {refuse}, no."
notice-implied = "This call is recorded."
will-record = "Recording."
will-not-record = "Not recording."
"""


def install_prompts(root: Path) -> Path:
    """Build the prompt library in ``root/prompts`` and install it in ``root/sounds``
    (once per bench run: a few seconds); returns ``root`` for :func:`config_text`."""
    from announcements.catalog import load_catalog
    from announcements.library import PromptLibrary

    (root / "prompts.toml").write_text(SHORT_PROMPTS)
    library = PromptLibrary(root / "prompts", load_catalog(str(root / "prompts.toml")))
    library.build(["en"])
    (root / "sounds").mkdir(exist_ok=True)
    library.install(root / "sounds")
    return root


def config_text(d: Path, db_url: str | None = None, prompts_root: Path | None = None) -> str:
    prompts_root = prompts_root or d
    return textwrap.dedent(f"""\
        [ami]
        secret = "unused"
        [database]
        url = "{db_url or f'sqlite:///{d / "callvault.db"}'}"
        [spool]
        dir = "{d / 'spool'}"
        [privacy]
        hmac_key_file = "{d / 'hmac.key'}"
        [prompts]
        sounds_dir = "{prompts_root / 'sounds'}"
        library = "{prompts_root / 'prompts'}"
        [[consent.rules]]
        name = "za-opt-in"
        mode = "opt-in"
        timeout = 5.0
        """)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))






async def serve(config_path: str) -> None:
    """The product's FastAGI server with the product's composition; control on stdin."""
    from agi.server import FastAgiServer, settle_heap
    from announcements.linkwatch import watch
    from appliance import config as cfg
    from appliance.compose import agi_routes
    from appliance.logs import configure as configure_logging
    from storage.catalog import Catalog
    from storage.dburl import open_database
    from storage.hmac_index import load_hmac_key
    from storage.ledger import Ledger

    _raise_nofile()
    config = cfg.load(config_path, env={}, check_paths=False)
    # Logging as `callvault serve` sets it up ([log] defaults: info, text): one line per
    # consent is part of the flow's cost. Written to /dev/null, not to a journal.
    configure_logging(config.log, stream=open(os.devnull, "w"))  # noqa: ASYNC230, SIM115 - once, at start
    db = open_database(config.database.url)
    ledger, catalog = Ledger(db), Catalog(db)

    async def no_ami(channel: str, *_: object) -> bool:
        raise RuntimeError("no AMI in the benchmark")

    routes = agi_routes(config, ledger=ledger, catalog=catalog,
                        hmac_key=load_hmac_key(config.privacy.hmac_key_file),
                        stop_mixmonitor=no_ami, mute_mixmonitor=no_ami,
                        link_watch=watch(config.prompts.sounds_dir, asyncio.get_running_loop()))
    server = FastAgiServer(routes, "127.0.0.1", 0)
    await server.start()
    settle_heap()  # as `callvault serve` does once it is up

    def counters() -> dict:
        writer = db._group  # the group-commit writer, once the first write made it
        return {"total": server.total, "errors": server.errors, "active": server.active,
                "threads": thread_cpu(), "batches": writer.batches if writer else 0,
                "ops": writer.ops if writer else 0}

    await _control(server.port, counters)
    server.close()
    await server.drain(10)
    db.close()


# The same wire exchange as a granted consent flow, with no logic at all: what any
# CPython asyncio server pays for sockets and the event loop (the floor).
_FLOOR_COMMANDS = (
    b'GET DATA "beep" 5000 1\n',
    b'EXEC "MixMonitor" "/var/spool/asterisk/callvault/r.wav,,/bin/touch /var/spool/asterisk/callvault/r.wav.done"\n',
    (b'EXEC "MSet" "CALLVAULT_RECORDING_ID=r,CALLVAULT_CONSENT_ID=c,CALLVAULT_RULE=za-opt-in,'
     b'CALLVAULT_CONSENT=granted,CALLVAULT_RECORD=yes,CALLVAULT_CONFIRM=callvault/en/will-record"\n'))


async def serve_floor() -> None:
    total = 0

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal total
        total += 1
        while (await reader.readline()) not in (b"\n", b""):
            pass
        for command in _FLOOR_COMMANDS:
            writer.write(command)
            await writer.drain()
            await reader.readline()
        writer.close()

    from agi.server import settle_heap

    _raise_nofile()
    server = await asyncio.start_server(call, "127.0.0.1", 0, backlog=1024)
    settle_heap()  # the same collector settings as the product's server
    await _control(server.sockets[0].getsockname()[1],
                   lambda: {"total": total, "errors": 0, "active": 0, "threads": thread_cpu()})
    server.close()


async def _control(port: int, counters) -> None:
    """Announce the port on stdout; answer "stats" lines on stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()
    while line := await reader.readline():
        if line.strip() == b"stats":
            sys.stdout.write(json.dumps({"cpu": process_cpu(), **counters()}) + "\n")
            sys.stdout.flush()


class ServerProcess:
    def __init__(self, workdir: Path, kind: str = "serve", db_url: str | None = None,
                 prompts_root: Path | None = None):
        self.workdir = workdir
        self.kind = kind
        self.config = workdir / "callvault.toml"
        self.config.write_text(config_text(workdir, db_url, prompts_root))
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        # e.g. AGI_BENCH_SERVER_WRAPPER="py-spy record -r 500 -o /tmp/agi.svg --" to profile
        wrapper = shlex.split(os.environ.get("AGI_BENCH_SERVER_WRAPPER", ""))
        self.proc = await asyncio.create_subprocess_exec(
            *wrapper, sys.executable, "-m", "bench.agi_load", self.kind, str(self.config),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        self.port = (await asyncio.wait_for(self._message(), 30))["port"]
        return self

    async def _message(self) -> dict:
        while True:  # a profiler wrapping the server may print its own lines
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the FastAGI server process exited")
            if line.startswith(b"{"):
                return json.loads(line)

    async def stats(self) -> dict:
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return await self._message()

    async def __aexit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def ledger_count(self) -> tuple[int, int]:
        """(granted consent entries, recordings) in the server's database."""
        from appliance import config as cfg
        from storage.dburl import open_database

        if self.kind != "serve":
            return 0, 0
        # Bodies are canonical JSON (no spaces): one LIKE serves SQLite and PostgreSQL.
        with open_database(cfg.load(self.config, env={}, check_paths=False).database.url) as db, \
                db.read() as c:
            granted = c.execute("SELECT count(*) FROM ledger WHERE kind = 'consent' "
                                "AND body LIKE ?", ('%"outcome":"granted"%',)).fetchone()[0]
            recordings = c.execute("SELECT count(*) FROM recordings").fetchone()[0]
        return granted, recordings


# --- the FastAGI load generator -------------------------------------------------------

# Paced calls: a spoken consent notice lasts ~6 s and the caller presses 1 soon
# after; "thank you" lasts 1-2 s (played by the dialplan after the AGI, or by STREAM
# FILE in a classic flow). So 1,000 calls in progress offer ~105 flows/s.
NOTICE_SECONDS = (6.0, 10.0)
CONFIRM_SECONDS = (1.0, 2.0)


@dataclass
class Sample:
    measuring: bool = False
    flows: int = 0
    failed: int = 0
    connect_errors: int = 0
    gaps: dict[str, list[float]] = field(default_factory=dict)
    live: set = field(default_factory=set)


class _Call(asyncio.Protocol):
    """One call's AGI conversation, from Asterisk's side."""

    def __init__(self, sample: Sample, env: bytes, linkedid: bytes, done: asyncio.Future,
                 paced: bool, rng: random.Random):
        self.sample, self.env, self.linkedid, self.done = sample, env, linkedid, done
        self.paced, self.rng = paced, rng
        self.buf = b""
        self.sent_at = 0.0
        self.commands: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sample.live.add(self)
        self._send(self.env)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.sent_at = time.perf_counter()
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        while (nl := self.buf.find(b"\n")) >= 0:
            line, self.buf = self.buf[:nl], self.buf[nl + 1:]
            self.commands.append(line)
            if self.sample.measuring:
                self.sample.gaps.setdefault(label(line), []).append(now - self.sent_at)
            reply = answer(line, self.linkedid)
            delay = 0.0
            if self.paced:
                if line.startswith(b"GET DATA"):
                    delay = self.rng.uniform(*NOTICE_SECONDS)
                elif line.startswith(b"STREAM FILE"):
                    delay = self.rng.uniform(*CONFIRM_SECONDS)
            if delay:
                asyncio.get_running_loop().call_later(delay, self._send, reply)
            else:
                self._send(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.sample.live.discard(self)
        if not self.done.done():
            self.done.set_result(flow_granted(self.commands))


async def run_fastagi(concurrency: int, *, seconds: float, warmup: float, workdir: Path,
                      paced: bool = False, ramp: float = 0.0, server_kind: str = "serve",
                      db_url: str | None = None, prompts_root: Path | None = None) -> dict:
    """N concurrent calls for ``warmup + seconds``; flows/s and latency over ``seconds``."""
    _raise_nofile()
    loop = asyncio.get_running_loop()
    sample = Sample()
    stop = asyncio.Event()
    counter = iter(range(10**9))
    async with ServerProcess(workdir, server_kind, db_url, prompts_root) as server:
        async def call_loop(i: int) -> None:
            rng = random.Random(i)
            if ramp:
                await asyncio.sleep(rng.uniform(0, ramp))
            while not stop.is_set():
                n = next(counter)
                done = loop.create_future()
                env = env_block(n, fastagi=True, port=server.port)
                linkedid = f"{1795329357 + n // 100000}.{n % 100000}".encode()
                try:
                    transport, _ = await loop.create_connection(
                        functools.partial(_Call, sample, env, linkedid, done, paced, rng),
                        "127.0.0.1", server.port)
                except OSError:
                    sample.connect_errors += 1
                    await asyncio.sleep(0.01)
                    continue
                ok = await done
                transport.close()
                if sample.measuring:
                    if ok:
                        sample.flows += 1
                    else:
                        sample.failed += 1
                if paced and ok:  # the dialplan plays the confirmation the AGI named
                    await asyncio.sleep(rng.uniform(*CONFIRM_SECONDS))

        tasks = [asyncio.create_task(call_loop(i)) for i in range(concurrency)]
        await asyncio.sleep(warmup)
        before, cpu0, machine0, t0 = await server.stats(), process_cpu(), machine(), time.perf_counter()
        sample.measuring = True
        await asyncio.sleep(seconds)
        sample.measuring = False
        elapsed = time.perf_counter() - t0
        after, cpu1, machine1 = await server.stats(), process_cpu(), machine()
        stop.set()
        if paced:  # the callers still listening hang up (their flows end "abandoned")
            for call in list(sample.live):
                if call.transport is not None:
                    call.transport.abort()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await asyncio.sleep(0.05)
        final = await server.stats()
    granted, recordings = server.ledger_count()
    all_gaps = [g for gs in sample.gaps.values() for g in gs]
    flows_measured = after["total"] - before["total"]
    return {
        "concurrency": concurrency, "paced": paced, "server": server.kind, "seconds": elapsed,
        "flows": sample.flows, "failed": sample.failed, "connect_errors": sample.connect_errors,
        "flows_per_s": sample.flows / elapsed,
        "p50_ms": _pct(all_gaps, 50) * 1e3, "p99_ms": _pct(all_gaps, 99) * 1e3,
        "max_ms": max(all_gaps, default=0) * 1e3, "commands": len(all_gaps),
        "by_command_ms": {k: {"n": len(v), "p50": _pct(v, 50) * 1e3, "p99": _pct(v, 99) * 1e3}
                          for k, v in sorted(sample.gaps.items())},
        "server_cpu_ms_per_flow": (after["cpu"] - before["cpu"]) / max(flows_measured, 1) * 1e3,
        # Per thread (MainThread: the event loop; callvault-db-writer: the group commit).
        "thread_cpu_ms_per_flow": {name: (cpu - before["threads"].get(name, 0.0)) / max(flows_measured, 1) * 1e3
                                   for name, cpu in after["threads"].items()},
        "writes_per_batch": ((after.get("ops", 0) - before.get("ops", 0))
                             / max(after.get("batches", 0) - before.get("batches", 0), 1)),
        "server_cpu_share": (after["cpu"] - before["cpu"]) / elapsed,
        "generator_cpu_share": (cpu1 - cpu0) / elapsed,
        # Everything else this machine ran meanwhile (other people's jobs), and the
        # hypervisor's steal: both take from the 2 cores the targets assume.
        "others_cpu_share": max(0.0, (machine1[0] - machine0[0]) / elapsed
                                - (after["cpu"] - before["cpu"]) / elapsed - (cpu1 - cpu0) / elapsed),
        "steal_share": (machine1[1] - machine0[1]) / elapsed,
        "server_errors": final["errors"], "server_flows_total": final["total"],
        "ledger_granted": granted, "catalog_recordings": recordings,
    }




def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]




if __name__ == "__main__":
    # Both servers run on the event loop `callvault serve` runs on, so the floor is
    # the floor of the product's own design.
    from agi.server import new_event_loop

    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "floor":
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve_floor())
    else:
        print("usage: python -m bench.agi_load serve CONFIG   (or: python -m bench agi)",
              file=sys.stderr)
        sys.exit(2)
