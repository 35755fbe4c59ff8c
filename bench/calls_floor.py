"""The floor for the calls benchmark: what any process beside Asterisk pays to take part.

    python -m bench.calls_floor CONFIG.json        (started by bench/calls_bench.py)

A no-logic stand-in for `callvault serve` on the same event loop (uvloop,
``agi.server.new_event_loop``), in three parts:

- a FastAGI server on the lab's AGI port that reads the environment block and sends the
  product's exchange for the scenario's fixed outcome, the same commands in the same
  order, and nothing else: declined ``GET DATA`` (the notice), ``EXEC MSet`` (naming
  will-not-record for the dialplan to play); recorded ``GET DATA``, ``EXEC MixMonitor``
  (same path form and done marker), ``EXEC MSet`` (naming will-record); the generated
  dialplan raises the UserEvent and plays the sound; no ledger, no catalog, no logs;
- a panoramisk ``Manager`` logged in as the product's AMI user (its manager.conf
  ``eventfilter`` lines), with a handler per name in ``AMI_EVENTS`` as serve has: every
  event is received and parsed; the handlers do nothing but the recorded scenario's
  Hangup;
- for a recorded call, after its Hangup event and MixMonitor's done marker: ONE bare
  boto3 ``put_object`` of the recording to the lab RGW (no encryption, no ledger, no
  catalog, no verification) in a worker thread: what storing a recording at all costs.

It prints ``ready`` once logged in and listening, ``call`` after each AGI exchange and
``stored`` after each upload; the bench counts those lines in its output file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONSENT = {"declined": ("declined", "no"), "recorded": ("granted", "yes")}


def exchange(scenario: str, cfg: dict, n: int) -> tuple[list[bytes], str | None]:
    """The product's AGI commands for a fixed outcome (agi/handlers/consent.py), the
    recording's path inside Asterisk or None."""
    consent, record = CONSENT[scenario]
    rid, cid, rule = f"rfloor{os.getpid()}x{n:06d}", f"cfloor{os.getpid()}x{n:06d}", cfg["rule"]
    variables = f"CALLVAULT_CONSENT_ID={cid},CALLVAULT_RULE={rule},CALLVAULT_CONSENT={consent},CALLVAULT_RECORD={record}"
    confirm = cfg["will_record" if record == "yes" else "will_not_record"]
    commands = [f'GET DATA "{cfg["notice"]}" {int(cfg["timeout_ms"])} 1']
    path = None
    if record == "yes":
        path = f"{cfg['spool_inside']}/{rid}.wav"
        commands.append(f'EXEC "MixMonitor" "{path},,/bin/touch {path}.done"')
        variables = f"CALLVAULT_RECORDING_ID={rid}," + variables
    commands.append(f'EXEC "MSet" "{variables},CALLVAULT_CONFIRM={confirm}"')
    return [(c + "\n").encode() for c in commands], path


async def main(cfg: dict) -> None:
    import boto3
    import panoramisk

    from agi.dialplan import AMI_EVENTS

    scenario = cfg["scenario"]
    recordings: dict[str, str] = {}  # uniqueid -> the recording's path on this host
    numbers = itertools.count()
    s3 = boto3.client("s3", endpoint_url=cfg["endpoint_url"], region_name=cfg["region"],
                      aws_access_key_id=cfg["access_key_id"], aws_secret_access_key=cfg["secret_access_key"])
    try:
        s3.create_bucket(Bucket=cfg["bucket"])
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_object(Bucket=cfg["bucket"], Key="warm-up", Body=b"")  # botocore's first-request setup, untimed

    def say(word: str) -> None:
        sys.stdout.write(word + "\n")
        sys.stdout.flush()

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uniqueid = ""
        while (line := await reader.readline()) not in (b"\n", b""):
            if line.startswith(b"agi_uniqueid:"):
                uniqueid = line.split(b":", 1)[1].strip().decode()
        commands, path = exchange(scenario, cfg, next(numbers))
        if path is not None:
            recordings[uniqueid] = cfg["spool_host"] + path[len(cfg["spool_inside"]):]
        for command in commands:
            writer.write(command)
            await reader.readline()
        writer.close()
        say("call")

    def put(path: str) -> None:
        with open(path, "rb") as body:
            s3.put_object(Bucket=cfg["bucket"], Key=os.path.basename(path), Body=body)

    async def store(path: str) -> None:
        while not os.path.exists(path + ".done"):  # MixMonitor has closed the file
            await asyncio.sleep(0.05)
        await asyncio.to_thread(put, path)
        say("stored")

    def on_event(_manager, message) -> None:
        if message.event == "Hangup" and (path := recordings.pop(message.Uniqueid, None)):
            asyncio.ensure_future(store(path))

    manager = panoramisk.Manager(loop=asyncio.get_running_loop(), host="127.0.0.1", port=cfg["ami_port"], username=cfg["ami_user"],
                                 secret=cfg["ami_secret"], ping_delay=20, ping_interval=20)
    for name in AMI_EVENTS:
        manager.register_event(name, on_event)
    await manager.connect()
    while manager.authenticated_future is None:
        await asyncio.sleep(0.01)
    if not (await manager.authenticated_future).success:
        raise SystemExit(f"AMI login as {cfg['ami_user']} refused")
    server = await asyncio.start_server(call, "127.0.0.1", cfg["agi_port"], reuse_address=True)
    say("ready")
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # until the bench closes stdin
    server.close()
    manager.close()


if __name__ == "__main__":
    from agi.server import new_event_loop

    loop = new_event_loop()
    loop.run_until_complete(main(json.loads(Path(sys.argv[1]).read_text())))


class Floor:
    """The floor as a process of its own on the lab's AGI port (serve stopped), for one scenario."""

    def __init__(self, state, work: Path, scenario: str, timeout_s: float):
        from agi.policy import ALLOW_DIGIT, REFUSE_DIGIT
        from appliance.compose import prompt_resolver
        from storage.prompt_names import keyed_name

        prompt = prompt_resolver(Path(state.sounds_host))
        s3 = state.s3_endpoint
        cfg = {"scenario": scenario, "agi_port": state.agi_port, "ami_port": state.ami_port,
               "ami_user": state.product_ami_user, "ami_secret": state.product_ami_secret,
               "rule": "bench-opt-in", "timeout_ms": int(timeout_s * 1000),
               "notice": prompt("en", keyed_name("notice-opt-in", ALLOW_DIGIT, REFUSE_DIGIT)).sound,
               "will_record": prompt("en", "will-record").sound,
               "will_not_record": prompt("en", "will-not-record").sound,
               "spool_inside": f"{state.spool_inside}/bench", "spool_host": f"{state.spool_host}/bench",
               "endpoint_url": s3.endpoint_url, "region": s3.region, "bucket": "bench-floor",
               "access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key}
        config = work / f"floor-{scenario}.json"
        config.write_text(json.dumps(cfg))
        self.out = work / f"floor-{scenario}.out"
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.calls_floor", str(config)],
                                         stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)

    def count(self, word: str) -> int:
        return self.out.read_text(errors="replace").split().count(word)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.count("ready"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"floor not ready (exit {self.proc.poll()}):\n{self.out.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def scenario(name: str, state, work: Path, lab_parts: dict[str, list[int]], calls: int, concurrency: int,
             tag: str, timeout_s: float) -> dict:
    """One scenario's calls against the floor: CPU per call of the floor, Asterisk and RGW."""
    from .calls_bench import cpu, delta, place, wait_until

    recorded = name == "recorded"
    floor = Floor(state, work, name, timeout_s)
    try:
        floor.wait_ready()
        parts = {"floor": [floor.proc.pid], **lab_parts}
        cpu0, t0 = cpu(parts), time.monotonic()
        failed = asyncio.run(place(state.sip_port, calls, concurrency, "1" if recorded else "2", recorded, tag))
        ok = calls - failed
        wait_until(lambda: floor.count("call") >= ok, 60, "the floor's AGI exchanges")
        if recorded:
            wait_until(lambda: floor.count("stored") >= ok, 300, "the floor's uploads")
        time.sleep(1.0)  # the last hang-ups' events
        used, wall = delta(cpu(parts), cpu0), time.monotonic() - t0
    finally:
        floor.stop()
    n = max(ok, 1)
    ms = {k: 1000 * used.get(k, 0.0) / n for k in parts}
    return {"calls": calls, "failed": failed, "wall_seconds": wall, "ms_per_call": ms,
            "ratio": ms["floor"] / max(ms["asterisk"], 1e-9), "stored": floor.count("stored")}
