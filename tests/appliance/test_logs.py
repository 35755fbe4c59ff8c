"""[log] format = "json": every line `serve` writes is one JSON object, and the lines of a
call carry its ids (linkedid, consent_id, recording_id), from the FastAGI consent
handler and from the archive job that later stores the recording."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time
import wave
from pathlib import Path

import pytest
from standalone import standalone_config, start_serve

from appliance.config import LogConfig
from appliance.logs import configure
from storage import logcontext
from storage.spool_names import done_marker, recording_file

LINKEDID = "1795329357.41"
ENV = ("agi_network_script: consent\nagi_request: agi://127.0.0.1/consent\n"
       "agi_channel: PJSIP/trunk-0000002a\nagi_language: en\nagi_uniqueid: 1795329357.42\n"
       "agi_callerid: 27215550123\nagi_calleridname: Test Caller\nagi_extension: 27215550100\n"
       "agi_arg_1: 27215550100\n\n")


def reply_to(command: str) -> str:
    """Asterisk's answers for a caller who presses 1."""
    if command == 'GET VARIABLE "CHANNEL(linkedid)"':
        return f"200 result=1 ({LINKEDID})"
    if command.startswith("GET DATA"):
        return "200 result=1"
    if command.startswith("STREAM FILE"):
        return "200 result=0 endpos=8000"
    if command.startswith("EXEC"):
        return "200 result=0"
    return "200 result=1"


def consent_call(port: int) -> list[str]:
    """One FastAGI consent call as Asterisk places it; returns the commands received."""
    commands = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(ENV.encode())
        f = s.makefile("rwb")
        while line := f.readline():
            command = line.decode().rstrip("\n")
            commands.append(command)
            f.write(reply_to(command).encode() + b"\n")
            f.flush()
    return commands


def variables_set(commands: list[str]) -> dict[str, str]:
    """The channel variables a consent flow set: one ``EXEC "MSet" "A=1,B=2"`` for plain
    values, ``SET VARIABLE "A" "1"`` each otherwise."""
    found = {}
    for c in commands:
        if c.startswith('EXEC "MSet" '):
            found.update(pair.split("=", 1) for pair in c.split('"')[3].split(","))
        elif c.startswith("SET VARIABLE "):
            found[c.split('"')[1]] = c.split('"')[3]
    return found


def json_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]  # every line must parse


def test_json_log_lines_carry_the_call_ids(tmp_path, english_prompts):
    config = standalone_config(tmp_path / "site", '[log]\nformat = "json"\n', spool="scan_interval = 0.5")
    english_prompts.install(tmp_path / "site" / "sounds")  # no notice installed, no consent asked
    serve = start_serve(config, tmp_path / "serve.log")
    try:
        serve.wait_ready()
        commands = consent_call(serve.config.agi.address[1])
        variables = variables_set(commands)
        rid, cid = variables["CALLVAULT_RECORDING_ID"], variables["CALLVAULT_CONSENT_ID"]
        # MixMonitor's part: the recording, then the marker that says it is closed.
        spool = serve.config.spool.dir / recording_file(rid)
        with wave.open(str(spool), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\0\0" * 8000)
        Path(done_marker(str(spool))).touch()
        deadline = time.monotonic() + 30
        while "archived and verified" not in serve.log.read_text():
            assert time.monotonic() < deadline, serve.log.read_text()[-3000:]
            time.sleep(0.1)
        assert serve.stop() == 0
    finally:
        serve.kill()

    lines = json_lines(serve.log)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    ids = {"linkedid": LINKEDID, "consent_id": cid, "recording_id": rid}
    [decided] = [line for line in lines if line["logger"] == "agi.handlers.consent"]
    assert decided["message"] == "consent granted (pressed-allow) by the caller, rule default" and decided["level"] == "info"
    assert {k: decided[k] for k in ids} == ids
    [archived] = [line for line in lines if "archived and verified" in line["message"]]
    assert {k: archived[k] for k in ids} == ids
    # Lines about no call carry no ids; caller data is never in the log.
    started = [line for line in lines if line["message"].startswith("FastAGI listening")]
    assert started and not set(ids) & set(started[0])
    assert "27215550123" not in serve.log.read_text() and "Test Caller" not in serve.log.read_text()


@pytest.fixture
def root_logging():
    """The root logger's handlers and level, put back after the test's configure()."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    logcontext.bind(linkedid=None, recording_id=None)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_format_appends_the_ids_and_json_keeps_exceptions(root_logging):
    out = io.StringIO()
    log = logging.getLogger("callvault.test.logs")
    configure(LogConfig(format="text", level="info"), stream=out)
    logcontext.bind(linkedid="1.2", recording_id="r1")
    log.debug("hidden at info")
    log.info("stored")
    assert out.getvalue().endswith("INFO callvault.test.logs: stored [linkedid=1.2 recording_id=r1]\n")

    out.truncate(0), out.seek(0)
    configure(LogConfig(format="json", level="debug"), stream=out)
    logcontext.bind(recording_id=None)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    line = json.loads(out.getvalue())
    assert line["message"] == "failed" and line["level"] == "error" and line["linkedid"] == "1.2"
    assert "recording_id" not in line and line["exception"].endswith("ValueError: boom")


def test_lines_logged_on_an_event_loop_are_written_once_per_turn_and_none_is_lost(root_logging):
    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, s: str) -> int:
            self.writes.append(s)
            return super().write(s)

    out = Writes()
    log = logging.getLogger("callvault.test.batched")
    configure(LogConfig(format="text", level="info"), stream=out)

    async def calls() -> list[str]:
        log.info("before the loop turns")
        for n in range(3):
            asyncio.get_running_loop().call_soon(log.info, "call %d decided", n)
        await asyncio.sleep(0)  # the three callbacks run in this turn
        await asyncio.sleep(0)  # the flush they scheduled runs in the next
        seen = list(out.writes)
        log.info("held")
        log.warning("a warning is written at once, after what was held")
        return seen

    seen = asyncio.run(calls())
    log.info("no loop: at once")
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "before the loop turns", "call 0 decided", "call 1 decided", "call 2 decided", "held",
        "a warning is written at once, after what was held", "no loop: at once"]
    assert len(seen) == 2 and seen[1].count("\n") == 3  # "before..." alone, then the three calls in one write
    assert out.writes[2:] == [lines[4] + "\n" + lines[5] + "\n", lines[6] + "\n"]


def test_held_lines_are_written_when_the_handler_is_flushed(root_logging):
    out = io.StringIO()
    log = logging.getLogger("callvault.test.batched")
    configure(LogConfig(format="text", level="info"), stream=out)
    loop = asyncio.new_event_loop()

    def last_words() -> None:
        log.info("held when the loop stops")
        loop.stop()  # before the turn the flush was scheduled for

    loop.call_soon(last_words)
    loop.run_forever()
    loop.close()
    assert out.getvalue() == ""
    [handler] = root_logging.handlers
    handler.flush()  # what logging.shutdown() does at exit
    assert out.getvalue().endswith("held when the loop stops\n")
