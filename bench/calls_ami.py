"""The AMI side of one event, for the calls benchmark.

What `callvault serve` spends on an event Asterisk sends it, from the socket to the
handlers: the event loop serve runs on (uvloop), panoramisk's protocol (split, parse,
dispatch) and ``AmiClient._dispatch``, with the handlers serve registers (the live
calls' one per ``AMI_EVENTS`` name, the archiver intake's Hangup and MixMonitorStop)
doing nothing, so the figure is the session's own cost. A stand-in Asterisk in another
process accepts the login and sends the events one at a time, ``PAUSE`` apart, as a
PBX does; the cost is this process's CPU over them. ``Newstate`` is an event serve does
not use (what each event the manager.conf filter keeps out costs), ``Newchannel`` one
it uses; both as Asterisk 22 raises them for the lab's PJSIP calls. ``floor_per_event``:
the same bytes into a protocol that does nothing (the event loop and the socket);
``panoramisk_per_event``: into a bare panoramisk ``Manager`` (the dependency alone).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

EVENTS = {
    "Newstate": {"Privilege": "call,all", "Timestamp": "1765115000.123456", "Channel": "PJSIP/lab-phone-0000002a",
                 "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "2782000001",
                 "CallerIDName": "<unknown>", "ConnectedLineNum": "<unknown>", "ConnectedLineName": "<unknown>",
                 "Language": "en", "AccountCode": "", "Context": "callvault-consent", "Exten": "s",
                 "Priority": "2", "Uniqueid": "1765115000.84", "Linkedid": "1765115000.84"},
}
EVENTS["Newchannel"] = {**EVENTS["Newstate"], "ChannelState": "0", "ChannelStateDesc": "Down",
                        "Context": "callvault-lab", "Exten": "27215550100", "Priority": "1"}
PAUSE = 0.002

FAKE_ASTERISK = r"""
import re, socket, sys, time
event, n, pause = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.sendall(b"Asterisk Call Manager/9.0.0\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += conn.recv(4096)
aid = re.search(rb"ActionID: (\S+)", buf).group(1)
conn.sendall(b"Response: Success\r\nActionID: " + aid + b"\r\nMessage: Authentication accepted\r\n\r\n")
sys.stdin.readline()  # the client is ready
for _ in range(n):
    conn.sendall(event)
    time.sleep(pause)
conn.sendall(b"Event: BenchEnd\r\n\r\n")
conn.recv(1)
"""


def raw(name: str) -> bytes:
    lines = [f"Event: {name}"] + [f"{k}: {v}" for k, v in EVENTS[name].items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _fake(name: str, n: int) -> tuple[subprocess.Popen, int]:
    fake = subprocess.Popen([sys.executable, "-c", FAKE_ASTERISK, raw(name).hex(), str(n), str(PAUSE)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return fake, int(fake.stdout.readline())


def _go(fake: subprocess.Popen) -> float:
    t0 = time.process_time()
    fake.stdin.write("go\n")
    fake.stdin.flush()
    return t0


def _run(measure) -> float:
    from agi.server import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(measure)
    finally:
        loop.close()


def cost_per_event(name: str, n: int = 1000) -> float:
    """Microseconds of this process's CPU per ``name`` event received by an ``AmiClient``."""
    from agi.ami import AmiClient
    from agi.dialplan import AMI_EVENTS

    fake, port = _fake(name, n)

    async def measure() -> float:
        client = AmiClient("127.0.0.1", port, "bench", "unused", fetch_version=False, ping_interval=3600)
        for event in (*AMI_EVENTS, "Hangup", "MixMonitorStop"):
            client.on_event(event, lambda e: None)
        end = asyncio.get_running_loop().create_future()
        client.on_event("BenchEnd", lambda e: end.done() or end.set_result(None))
        client.start()
        await client.wait_connected(10)
        await asyncio.sleep(0.2)
        t0 = _go(fake)
        await asyncio.wait_for(end, 60)
        used = time.process_time() - t0
        assert client.events_received[name] == n
        await client.close()
        return used / n * 1e6

    try:
        return _run(measure())
    finally:
        fake.kill()
        fake.wait()


def panoramisk_per_event(n: int = 1000) -> float:
    """The same events into a bare panoramisk ``Manager`` with a no-op handler per name, as
    the floor process (bench/calls_floor.py) has: the dependency's own cost per event."""
    import panoramisk

    from agi.dialplan import AMI_EVENTS

    fake, port = _fake("Newstate", n)

    async def measure() -> float:
        loop = asyncio.get_running_loop()
        end, seen = loop.create_future(), [0]
        manager = panoramisk.Manager(loop=loop, host="127.0.0.1", port=port, username="bench", secret="unused",
                                     ping_delay=3600, ping_interval=3600)
        for event in (*AMI_EVENTS, "Newstate"):
            manager.register_event(event, lambda _m, _e: seen.__setitem__(0, seen[0] + 1))
        manager.register_event("BenchEnd", lambda _m, _e: end.done() or end.set_result(None))
        await manager.connect()
        await asyncio.sleep(0.2)
        t0 = _go(fake)
        await asyncio.wait_for(end, 60)
        used = time.process_time() - t0
        assert seen[0] == n
        manager.close()
        return used / n * 1e6

    try:
        return _run(measure())
    finally:
        fake.kill()
        fake.wait()


def floor_per_event(n: int = 1000) -> float:
    """The same events into a protocol that does nothing with them: the loop's share."""
    fake, port = _fake("Newstate", n)

    async def measure() -> float:
        loop = asyncio.get_running_loop()
        end = loop.create_future()

        class Nothing(asyncio.Protocol):
            def connection_made(self, transport) -> None:
                transport.write(b"Action: Login\r\nActionID: 1\r\n\r\n")

            def data_received(self, data: bytes) -> None:
                if b"BenchEnd" in data and not end.done():
                    end.set_result(None)

        await loop.create_connection(Nothing, "127.0.0.1", port)
        await asyncio.sleep(0.2)
        t0 = _go(fake)
        await asyncio.wait_for(end, 60)
        return (time.process_time() - t0) / n * 1e6

    try:
        return _run(measure())
    finally:
        fake.kill()
        fake.wait()
