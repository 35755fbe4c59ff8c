"""The consent flow's Python on the event loop alone: no sockets, no writer thread.

    python -m bench agi --logic [--profile]

The product's consent route (``appliance.compose.agi_routes``, the real session,
parser, policy, prompts, ledger and catalog preparation, log line) runs against a
transport that answers each command at once with Asterisk 22's reply, so nothing
waits; the durable write is replaced by an immediate result (the writer thread's
cost is the other table's). Beside it, in the same run, the same three commands
through the same session with no consent logic: what the AGI layer alone costs.
CPU is ``time.thread_time`` per flow, the two alternated in blocks.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

from . import agi_load


class _Answering:
    """A transport whose peer answers each command at once."""

    def __init__(self, protocol, linkedid: bytes) -> None:
        self._protocol, self._linkedid = protocol, linkedid

    def write(self, data: bytes) -> None:
        self._protocol.data_received(agi_load.answer(data.rstrip(b"\n"), self._linkedid))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, *_: object, **__: object) -> None:
        return None


def _setup(base: Path):
    from appliance import config as cfg
    from appliance.compose import agi_routes
    from appliance.logs import configure as configure_logging
    from storage.catalog import Catalog
    from storage.dburl import open_database
    from storage.hmac_index import load_hmac_key
    from storage.ledger import Ledger

    agi_load.install_prompts(base)
    (base / "callvault.toml").write_text(agi_load.config_text(base, None, base))
    config = cfg.load(str(base / "callvault.toml"), env={}, check_paths=False)
    configure_logging(config.log, stream=open(os.devnull, "w"))  # noqa: SIM115 - as serve's bench does
    db = open_database(config.database.url)

    async def committed(op):  # the writer's part is measured elsewhere
        return None

    db.write_async = committed

    async def no_ami(*_: object) -> bool:
        raise RuntimeError("no AMI in the benchmark")

    return agi_routes(config, ledger=Ledger(db), catalog=Catalog(db),
                      hmac_key=load_hmac_key(config.privacy.hmac_key_file),
                      stop_mixmonitor=no_ami, mute_mixmonitor=no_ami), db


async def _session(n: int):
    from agi.session import AgiProtocol, ProtocolSession

    protocol = AgiProtocol()
    protocol.connection_made(_Answering(protocol, f"1795329357.{n}".encode()))
    protocol.data_received(agi_load.env_block(n, fastagi=True))
    return await ProtocolSession.accept(protocol)


async def _commands_only(routes, n: int) -> None:
    session = await _session(n)
    await session.get_data("callvault/en/notice-opt-in", 5000, 1)
    await session.exec("MixMonitor", "/var/spool/asterisk/callvault/r.wav,,/bin/touch /var/spool/asterisk/callvault/r.wav.done")
    await session.set_variables(("CALLVAULT_RECORDING_ID", "r"), ("CALLVAULT_CONSENT_ID", "c"),
                                ("CALLVAULT_RULE", "za-opt-in"), ("CALLVAULT_CONSENT", "granted"),
                                ("CALLVAULT_RECORD", "yes"), ("CALLVAULT_CONFIRM", "callvault/en/will-record"))


async def _flow(routes, n: int) -> None:
    session = await _session(n)
    await routes.resolve(session.env)(session)


async def _measure(routes, flows: int, profile: bool) -> dict:
    for n in range(200):  # warm up both
        await _flow(routes, n)
        await _commands_only(routes, n)
    cpu = {"flow": 0.0, "commands": 0.0}
    block = 500
    for start in range(0, flows, block):
        for name, run in (("flow", _flow), ("commands", _commands_only)):
            t0 = time.thread_time()
            for n in range(start, start + block):
                await run(routes, n)
            cpu[name] += time.thread_time() - t0
    done = (flows + block - 1) // block * block
    out = {f"{k}_us_per_flow": v / done * 1e6 for k, v in cpu.items()}
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for n in range(2000):
            await _flow(routes, n)
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        out["profile"] = text.getvalue()
    return out


def measure(*, flows: int = 5000, profile: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="callvault-agi-logic-") as d:
        routes, db = _setup(Path(d))
        try:
            return asyncio.run(_measure(routes, flows, profile))
        finally:
            db.close()


def table(r: dict) -> str:
    flow, commands = r["flow_us_per_flow"], r["commands_us_per_flow"]
    lines = ["The consent flow's Python on the event loop, no I/O, no writer (CPU per flow, same run):", "",
             f"  consent flow (the product's route)        {flow:7.1f} us",
             f"  the same 3 commands, no consent logic     {commands:7.1f} us",
             f"  the consent logic on top                  {flow - commands:7.1f} us"]
    if "profile" in r:
        lines += ["", r["profile"]]
    return "\n".join(lines)
