"""FastAgiServer on 127.0.0.1:0, driven by a scripted fake Asterisk over real sockets."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agi.routes import RouteTable
from agi.server import FastAgiServer
from agi.session import AgiSession

WAIT = 5.0
UNIQUEID = "1795329357.1"
CALLER = "27215550123"
CALLER_NAME = "Test Caller"
FAIL_CLOSED = [('SET VARIABLE "CALLVAULT_RECORD" "no"', "200 result=1"),
               ('SET VARIABLE "CALLVAULT_CONSENT" "error"', "200 result=1")]


def env_block(script: str = "consent?lang=en", uniqueid: str = UNIQUEID, args: tuple[str, ...] = ()) -> bytes:
    lines = [f"agi_network_script: {script}", f"agi_request: agi://127.0.0.1:4573/{script}",
             "agi_channel: Local/100@consent-test-00000000;2", "agi_language: en",
             f"agi_uniqueid: {uniqueid}", f"agi_callerid: {CALLER}", f"agi_calleridname: {CALLER_NAME}",
             "agi_extension: 100", "agi_accountcode: "]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


class FakeAsterisk:
    """One FastAGI connection as Asterisk makes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, data: bytes = b"") -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        pbx = cls(reader, writer)
        if data:
            await pbx.send(data)
        return pbx

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self) -> str:
        async with asyncio.timeout(WAIT):
            line = await self.reader.readline()
        assert line.endswith(b"\n"), f"connection ended instead of a command: {line!r}"
        return line.decode()[:-1]

    async def expect(self, command: str, reply: str) -> None:
        assert await self.command() == command
        await self.send(reply.encode() + b"\n")

    async def closed_by_server(self) -> None:
        """Wait until the server closes the connection (what it sends is discarded)."""
        async with asyncio.timeout(WAIT):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


@pytest.fixture
async def serve():
    servers: list[FastAgiServer] = []
    clients: list[FakeAsterisk] = []

    async def start(routes, **options) -> FastAgiServer:
        options.setdefault("read_timeout", WAIT)
        server = FastAgiServer(RouteTable(routes), "127.0.0.1", 0, **options)
        await server.start()
        servers.append(server)
        return server

    async def connect(server: FastAgiServer, data: bytes = b"") -> FakeAsterisk:
        client = await FakeAsterisk.connect(server.port, data)
        clients.append(client)
        return client

    start.connect = connect
    yield start
    for client in clients:
        await client.aclose()
    for server in servers:
        server.close()
        assert await server.drain(WAIT)


def server_lines(caplog, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "agi.server" and r.levelno >= level]


async def test_routed_call_with_query_and_arguments(serve, caplog):
    caplog.set_level(logging.DEBUG, logger="agi.server")
    seen: dict = {}

    async def consent(session: AgiSession) -> None:
        env = session.env
        seen.update(route=env.route, query=env.query, args=env.args, uniqueid=env.uniqueid)
        seen["language"] = await session.get_variable("CHANNEL(language)")
        await session.set_variable("CALLVAULT_CONSENT", "granted")

    server = await serve([("consent", consent), ("status", consent)])
    assert server.port != 0
    args = tuple(f"arg{i}" for i in range(1, 12))
    pbx = await serve.connect(server, env_block("/consent?lang=en&did=%2B27215550199", args=args))
    await pbx.expect('GET VARIABLE "CHANNEL(language)"', "200 result=1 (en)")
    await pbx.expect('SET VARIABLE "CALLVAULT_CONSENT" "granted"', "200 result=1")
    await pbx.closed_by_server()
    await server.wait_idle(WAIT)
    assert seen == {"route": "consent", "query": {"lang": "en", "did": "+27215550199"}, "args": args,
                    "uniqueid": UNIQUEID, "language": "en"}
    assert server.stats() | {"listening": None} == {"listening": None, "port": server.port, "active": 0,
                                                   "total": 1, "errors": 0, "refused": 0,
                                                   "routes": ["consent", "status"]}
    assert server_lines(caplog, logging.WARNING) == []


async def test_unknown_route_fails_closed_and_logs_once(serve, caplog):
    caplog.set_level(logging.INFO, logger="agi.server")
    server = await serve([("consent", lambda s: asyncio.sleep(0))])
    pbx = await serve.connect(server, env_block("nosuch?lang=en"))
    for command, reply in FAIL_CLOSED:
        await pbx.expect(command, reply)
    await pbx.closed_by_server()
    await server.wait_idle(WAIT)
    [line] = server_lines(caplog)
    assert UNIQUEID in line and "unknown route nosuch" in line and "failed closed" in line
    assert server.errors == 1


async def test_handler_exception_fails_closed_and_logs_one_line_without_caller_data(serve, caplog):
    caplog.set_level(logging.INFO, logger="agi.server")

    async def broken(session: AgiSession) -> None:
        raise RuntimeError(f"ledger down while handling {session.env.callerid} {session.env.calleridname}")

    server = await serve([("consent", broken)])
    pbx = await serve.connect(server, env_block())
    for command, reply in FAIL_CLOSED:
        await pbx.expect(command, reply)
    await pbx.closed_by_server()
    await server.wait_idle(WAIT)
    [line] = server_lines(caplog)
    assert UNIQUEID in line and "RuntimeError" in line and "test_server.py:" in line
    assert CALLER not in line and CALLER_NAME not in line
    assert server.errors == 1


async def test_fail_closed_hook_is_the_callers_and_best_effort(serve, caplog):
    caplog.set_level(logging.INFO, logger="agi.server")
    reasons = []

    async def hook(session: AgiSession, reason: str) -> None:
        reasons.append(reason)
        await session.set_variable("X", "y")

    async def broken(session: AgiSession) -> None:
        raise ValueError("boom")

    server = await serve([("consent", broken)], on_error=hook)
    pbx = await serve.connect(server, env_block())
    await pbx.expect('SET VARIABLE "X" "y"', "510 Invalid or unknown command")
    await pbx.closed_by_server()
    await server.wait_idle(WAIT)
    assert reasons == ["handler-error"]
    [line] = server_lines(caplog)
    assert "ValueError" in line and "fail-closed hook failed: CommandFailed" in line


async def test_hangup_ends_quietly(serve, caplog):
    caplog.set_level(logging.INFO, logger="agi.server")
    done = asyncio.Event()

    async def consent(session: AgiSession) -> None:
        try:
            await session.get_data("notice", 4000, 1)
        finally:
            done.set()

    server = await serve([("consent", consent)])
    pbx = await serve.connect(server, env_block())
    assert await pbx.command() == 'GET DATA "notice" 4000 1'
    await pbx.send(b"HANGUP\n200 result=-1\n")
    await pbx.closed_by_server()
    await server.wait_idle(WAIT)
    assert done.is_set() and server_lines(caplog) == [] and server.errors == 0


GARBAGE = {
    "oversized-env": b"".join(b"agi_v%d: %s\n" % (i, b"x" * 1000) for i in range(100)),
    "overlong-line": b"agi_network_script: " + b"x" * 10_000,
    "binary-junk": bytes(range(256)) * 4,
    "eof-mid-line": b"agi_network_script: consent\nagi_uniqueid: 1.",
    "unknown-result-code": env_block(uniqueid="666.1"),
    "silence": b"",
}


@pytest.mark.parametrize("kind", GARBAGE)
async def test_garbage_closes_with_one_line_while_a_good_call_completes(serve, caplog, kind):
    caplog.set_level(logging.INFO, logger="agi.server")

    async def consent(session: AgiSession) -> None:
        value = await session.get_variable("CHANNEL(linkedid)")
        await session.set_variable("CALLVAULT_CONSENT_ID", value or "")

    server = await serve([("consent", consent)], env_timeout=0.5)
    good = await serve.connect(server, env_block())
    assert await good.command() == 'GET VARIABLE "CHANNEL(linkedid)"'  # the good call is in flight

    bad = await serve.connect(server, GARBAGE[kind])
    if kind == "eof-mid-line":
        bad.writer.write_eof()
    if kind == "unknown-result-code":
        assert await bad.command() == 'GET VARIABLE "CHANNEL(linkedid)"'
        await bad.send(b"299 result=1\n")
    await bad.closed_by_server()
    [line] = server_lines(caplog)
    assert "FastAGI" in line and CALLER not in line

    await good.send(b"200 result=1 (1795329357.0)\n")
    await good.expect('SET VARIABLE "CALLVAULT_CONSENT_ID" "1795329357.0"', "200 result=1")
    await good.closed_by_server()
    await server.wait_idle(WAIT)
    assert server_lines(caplog) == [line]
    assert (server.total, server.errors, server.active) == (2, 1, 0)


async def test_connect_and_close_is_one_info_line(serve, caplog):
    caplog.set_level(logging.INFO, logger="agi.server")
    server = await serve([])
    pbx = await serve.connect(server)
    pbx.writer.write_eof()
    await pbx.closed_by_server()
    await server.wait_idle(WAIT)
    [record] = [r for r in caplog.records if r.name == "agi.server"]
    assert record.levelno == logging.INFO and server.errors == 0


async def test_close_stops_accepting_and_drain_waits_for_calls_in_progress(serve):
    async def consent(session: AgiSession) -> None:
        await session.set_variable("A", await session.get_variable("B") or "")

    server = await serve([("consent", consent)])
    port = server.port
    pbx = await serve.connect(server, env_block())
    assert await pbx.command() == 'GET VARIABLE "B"'
    server.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    drained = asyncio.ensure_future(server.drain(WAIT))
    await pbx.send(b"200 result=1 (b)\n")
    await pbx.expect('SET VARIABLE "A" "b"', "200 result=1")
    async with asyncio.timeout(WAIT):
        assert await drained is True
    assert server.stats()["listening"] is False


async def test_drain_cancels_calls_still_running_after_the_timeout(serve):
    async def consent(session: AgiSession) -> None:
        await session.get_variable("B")

    server = await serve([("consent", consent)])
    pbx = await serve.connect(server, env_block())
    assert await pbx.command() == 'GET VARIABLE "B"'
    server.close()
    assert await server.drain(0.05) is False
    await pbx.closed_by_server()
    assert server.active == 0


def test_duplicate_routes_fail_at_construction():
    async def h(session: AgiSession) -> None: ...

    with pytest.raises(ValueError, match="duplicate"):
        RouteTable([("consent", h), ("status", h), ("consent", h)])
    for bad in ("/consent", "consent?x=1", "", "a b"):
        with pytest.raises(ValueError):
            RouteTable([(bad, h)])
    table = RouteTable([("consent", h), ("admin/status", h)])
    assert table.get("consent") is h and table.get("nope") is None
    assert table.names() == ["admin/status", "consent"] and "consent" in table and len(table) == 2


async def test_peers_outside_allow_are_closed_unread_logged_and_counted(serve, caplog):
    """[agi] allow: a peer not on it is closed at once, before any handler or read."""
    ran = []

    async def consent(session: AgiSession) -> None:
        ran.append(session.env.uniqueid)
        await session.set_variable("CALLVAULT_CONSENT", "granted")

    server = await serve([("consent", consent)], allow=("127.0.0.2", "10.0.0.0/8"))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.1", 0))
    writer.write(env_block())
    pbx = FakeAsterisk(reader, writer)
    await pbx.closed_by_server()
    await pbx.aclose()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
    pbx = FakeAsterisk(reader, writer)
    await pbx.send(env_block(uniqueid="1795329357.2"))
    await pbx.expect('SET VARIABLE "CALLVAULT_CONSENT" "granted"', "200 result=1")
    await pbx.closed_by_server()
    await pbx.aclose()
    await server.wait_idle(WAIT)
    assert ran == ["1795329357.2"]
    assert (server.stats()["refused"], server.stats()["total"]) == (1, 1)
    [line] = server_lines(caplog, logging.WARNING)
    assert line.startswith("FastAGI connection from 127.0.0.1:") and line.endswith("refused: not in [agi] allow")


async def test_default_allow_is_loopback_only(serve):
    server = await serve([])
    assert [str(n) for n in server.allow] == ["127.0.0.1/32", "::1/128"]


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold():
    # In a child: the collector settings are process-wide.
    import subprocess
    import sys

    code = ("import gc; from agi.server import GC_THRESHOLDS, settle_heap; "
            "assert gc.get_freeze_count() == 0; settle_heap(); "
            "print(gc.get_freeze_count(), *gc.get_threshold(), *GC_THRESHOLDS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    frozen, *rest = (int(x) for x in out)
    assert frozen > 1000  # the modules' objects
    assert rest[:3] == rest[3:] and rest[0] >= 10_000
