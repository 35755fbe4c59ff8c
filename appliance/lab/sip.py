"""Real SIP calls into the lab Asterisk, placed by SIPp (Debian `sip-tester`).

SIPp plays the caller: it sends an INVITE to the lab's PJSIP transport with the
DID as the Request-URI user (routed into the consent context as a trunk call
would be), answers nothing itself, presses one key as RFC 4733 events from the
pcaps `sip-tester` ships, and hangs up with a BYE. The scenarios are package data
(``appliance/lab/sipp/*.xml``); each run gets its own temporary directory and its
own free SIP, media and control ports, so runs may overlap.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SIPP = "/usr/bin/sipp"
PCAPS = Path("/usr/share/sip-tester")
SCENARIOS = Path(__file__).with_name("sipp")
KEYS = "0123456789"
TALK_DELAY = 0.4  # uac-key-talk.xml: from the key to the speech


class SippError(RuntimeError):
    """SIPp is missing, or could not be started."""


@dataclass(frozen=True)
class SipCall:
    """One call: who calls (the From user) and the DID they dial."""

    caller: str
    did: str


@dataclass
class SippRun:
    returncode: int  # 0: every call completed its scenario
    elapsed: float
    errors: str  # SIPp's error log, for a failure message

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class CallerScript:
    """What every caller of a run does after the answer (times in seconds).

    ``key`` is pressed ``wait`` seconds after the answer; the caller hangs up
    ``hangup_after`` seconds after the answer. No key, or a hang-up before
    ``wait``: the caller never presses anything. With ``talk`` the caller speaks
    (about 7 s of SIPp's A-law sample) from ``TALK_DELAY`` after the key on.
    """

    key: str | None = None
    wait: float = 2.0
    hangup_after: float = 10.0
    talk: bool = False

    def __post_init__(self) -> None:
        if self.key is not None and (len(self.key) != 1 or self.key not in KEYS):
            raise ValueError(f"key must be one digit 0-9, not {self.key!r}")
        if self.hangup_after < 0 or self.wait < 0:
            raise ValueError("wait and hangup_after must not be negative")
        if self.talk and (self.key is None or self.hangup_after < self.wait + TALK_DELAY):
            raise ValueError("a caller talks after pressing a key: set key, and hangup_after past wait")

    @property
    def presses(self) -> bool:
        return self.key is not None and self.hangup_after >= self.wait


def _free_udp_block(size: int) -> int:
    """A base port with ``size`` consecutive free UDP ports (SIPp's media uses base and base+2)."""
    for _ in range(200):
        base = random.randrange(40000, 60000, 4)
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SippError("no free block of UDP ports for SIPp")


def sipp_command(sip_port: int, script: CallerScript, calls: int, workdir: Path) -> list[str]:
    """The SIPp command line for ``calls`` callers, all started at once, read from
    ``workdir/callers.csv``."""
    base = _free_udp_block(8)
    scenario = "uac-key-talk.xml" if script.talk else "uac-key.xml" if script.presses else "uac-silent.xml"
    after = script.hangup_after - script.wait if script.presses else script.hangup_after
    if script.talk:
        after -= TALK_DELAY
    cmd = [SIPP, f"127.0.0.1:{sip_port}", "-sf", str(SCENARIOS / scenario),
           "-inf", str(workdir / "callers.csv"),
           "-i", "127.0.0.1", "-p", str(base), "-mi", "127.0.0.1", "-mp", str(base + 4),
           "-cp", str(base + 1),
           "-m", str(calls), "-l", str(calls), "-r", str(calls), "-rp", "1000",
           "-d", str(int(after * 1000)),
           "-timeout", f"{int(script.hangup_after + 60)}s", "-timeout_error",
           "-nostdin", "-trace_err", "-error_file", str(workdir / "errors.log")]
    if script.presses:
        cmd += ["-set", "wait_ms", str(int(script.wait * 1000))]
    return cmd


async def place_sip_calls(sip_port: int, calls: list[SipCall], script: CallerScript) -> SippRun:
    """Run one SIPp for ``calls`` (placed at once) and wait until every call ended."""
    if not os.access(SIPP, os.X_OK):
        raise SippError(f"{SIPP} not found: install the Debian package sip-tester")
    workdir = Path(tempfile.mkdtemp(prefix="callvault-sipp-"))
    try:
        (workdir / "callers.csv").write_text(
            "SEQUENTIAL\n" + "".join(f"{c.caller};{c.did};\n" for c in calls))
        if script.presses:  # the scenario plays key.pcap from its working directory
            (workdir / "key.pcap").symlink_to(PCAPS / f"dtmf_2833_{script.key}.pcap")
        if script.talk:
            (workdir / "talk.pcap").symlink_to(PCAPS / "g711a.pcap")
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *sipp_command(sip_port, script, len(calls), workdir), cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        try:
            _, stderr = await proc.communicate()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        errors = stderr.decode(errors="replace")
        if (workdir / "errors.log").exists():
            errors += (workdir / "errors.log").read_text(errors="replace")
        return SippRun(proc.returncode, time.monotonic() - started, errors.strip())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
