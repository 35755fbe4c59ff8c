"""The AGI machine and the FastAGI server under random and hostile input.

Whatever bytes arrive, in whatever pieces, the machine yields well-formed events or
raises ProtocolError (and stays failed); between events it never holds more than one
partial line of at most ``max_line`` bytes. Floods (an endless line, an endless
environment block or usage block, a stream of HANGUP lines while the handler is busy)
end with a refusal or a paused socket, with bounded memory (tracemalloc peak).
Bounded in time: a fixed number of examples, derandomized."""

from __future__ import annotations

import asyncio
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agi.errors import ProtocolError
from agi.events import NEED_DATA, Closed, Environment, Hangup, Response
from agi.protocol import FINAL_CODES, MAX_ENV_BYTES, MAX_LINE, AgiConnection, State, parse_final
from agi.routes import RouteTable
from agi.server import FastAgiServer

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
ENV = b"agi_network_script: consent\nagi_uniqueid: 1.1\n\n"


def run(chunks: list[bytes], max_line: int = MAX_LINE) -> tuple[list, ProtocolError | None]:
    """Feed ``chunks`` then end of stream, acting as the server does (a command after the
    environment and after each reply). Checks the invariants at every step."""
    conn = AgiConnection(max_line=max_line)
    events: list = []

    def pump() -> None:
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                # Between events: at most one partial line, never longer than the cap.
                assert conn.buffered <= max_line
                return
            events.append(event)
            if isinstance(event, Closed):
                return
            if isinstance(event, (Environment, Response)) and conn.can_send:
                conn.send_command("NOOP")

    try:
        for chunk in [*chunks, b""]:
            if conn.eof:
                break
            conn.receive_data(chunk)
            pump()
    except ProtocolError as e:
        assert conn.state is State.ERROR
        try:
            conn.next_event()
            raise AssertionError("a failed connection produced another event")
        except ProtocolError:
            pass
        return events, e
    return events, None


def check_events(events: list) -> None:
    kinds = [type(e) for e in events]
    assert kinds.count(Environment) <= 1 and (Environment not in kinds or kinds.index(Environment) == 0)
    assert Closed not in kinds[:-1], "an event after Closed"
    for e in events:
        assert isinstance(e, (Environment, Response, Hangup, Closed))
        if isinstance(e, Response):
            assert e.code in FINAL_CODES
            assert e.code != 200 or e.raw_result is not None
        if isinstance(e, Environment):
            assert e.vars and all(k.startswith("agi_") for k in e.vars)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@FUZZ
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6), with_env=st.booleans())
def test_random_bytes_give_events_or_a_protocol_error(data, cuts, with_env):
    events, _ = run(split((ENV if with_env else b"") + data, cuts))
    check_events(events)


# Lines that look like Asterisk's, in random order and framing: reaches deep states.
agi_lines = st.one_of(
    st.sampled_from([b"", b"HANGUP", b"100 result=0 Trying...", b"200 result=1", b"200 result=-1 endpos=0",
                     b"200 result=1 (timeout)", b"200 result=1 (a) b) endpos=3 x", b"200 result=",
                     b"510 Invalid or unknown command", b"511 Command Not Permitted on a dead channel",
                     b"520-Invalid command syntax.  Proper usage follows:", b"520 End of proper usage.",
                     b"503 result=-2 Memory allocation failure", b"200 result=1 (unbalanced", b"agi_x: y",
                     b"agi_x:", b"agi_Y: z", b"600 what", b"200-x", b"\x00", b"\xff\xfe", b"\r"]),
    st.binary(max_size=20),
    st.builds(lambda c, r: f"{c} {r}".encode(), st.integers(0, 999), st.text(max_size=20)),
    st.builds(lambda k, v: f"agi_{k}: {v}".encode(), st.text("abcxyz_09", min_size=1, max_size=8),
              st.text(max_size=12)))


@FUZZ
@given(lines=st.lists(agi_lines, max_size=25), crlf=st.booleans(), cuts=st.lists(st.integers(0, 2000), max_size=8),
       with_env=st.booleans())
def test_asterisk_like_lines_give_events_or_a_protocol_error(lines, crlf, cuts, with_env):
    data = (ENV if with_env else b"") + b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines)
    events, _ = run(split(data, cuts), max_line=64)
    check_events(events)


@FUZZ
@given(code=st.sampled_from(sorted(FINAL_CODES)), rest=st.text(max_size=60))
def test_reply_parser_returns_a_response_or_a_protocol_error(code, rest):
    try:
        r = parse_final(code, rest)
    except ProtocolError:
        return
    assert r.code == code
    if code == 200:
        assert isinstance(r.fields, dict) and all(k and v is not None for k, v in r.fields.items())


def peak_while(feed) -> tuple[int, object]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        outcome = feed()
        return tracemalloc.get_traced_memory()[1] - base, outcome
    finally:
        tracemalloc.stop()


def flood(conn: AgiConnection, piece: bytes, total: int) -> ProtocolError | None:
    sent = 0
    while sent < total:
        conn.receive_data(piece)
        sent += len(piece)
        try:
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, (Environment, Response)) and conn.can_send:
                    conn.send_command("NOOP")
        except ProtocolError as e:
            return e
    return None


def test_floods_are_refused_with_bounded_memory():
    chunk = 64 * 1024
    cases = {
        "an endless line": (b"", b"agi_" + b"x" * (chunk - 4)),
        "an endless environment block": (b"", b"".join(b"agi_k%d: v\n" % i for i in range(chunk // 12))),
        "an endless usage block": (ENV + b"520-Invalid command syntax.  Proper usage follows:\n",
                                   b"usage line\n" * (chunk // 11)),
        "an endless reply line": (ENV, b"200 result=1 (" + b"y" * (chunk - 14)),
    }
    for what, (start, piece) in cases.items():
        conn = AgiConnection()
        if start:
            conn.receive_data(start)
        peak, error = peak_while(lambda: flood(conn, piece, 64 << 20))
        assert isinstance(error, ProtocolError), f"{what}: not refused"
        assert peak < MAX_ENV_BYTES + 4 * chunk, f"{what}: peak {peak} bytes"


def test_endless_hangup_and_trying_lines_are_consumed_with_bounded_memory():
    for piece in (b"HANGUP\n" * 9000, b"100 result=0 Trying...\n" * 3000):
        conn = AgiConnection()
        conn.receive_data(ENV)
        conn.next_event()
        conn.send_command("NOOP")
        peak, error = peak_while(lambda: flood(conn, piece, 1 << 20))
        assert error is None and conn.buffered == 0
        assert peak < 4 * len(piece), f"peak {peak} bytes"


async def test_a_peer_flooding_a_busy_handler_is_paused_not_buffered():
    """While the handler is busy (no command outstanding), a peer that keeps sending is
    read up to a cap, then the socket is paused: memory stays bounded."""
    busy = asyncio.Event()
    release = asyncio.Event()

    async def handler(session) -> None:
        busy.set()
        await release.wait()

    server = FastAgiServer(RouteTable([("consent", handler)]), "127.0.0.1", 0, read_timeout=5)
    await server.start()
    tracemalloc.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENV)
        await asyncio.wait_for(busy.wait(), 5)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        piece, sent = b"HANGUP\n" * 9000, 0
        try:
            while sent < (64 << 20):
                writer.write(piece)
                await asyncio.wait_for(writer.drain(), 1.0)
                sent += len(piece)
        except asyncio.TimeoutError:
            pass  # the server stopped reading: the kernel buffers are full
        peak = tracemalloc.get_traced_memory()[1] - base
        assert sent < (64 << 20), "the server read everything the peer sent"
        assert peak < 2 << 20, f"peak {peak} bytes while flooded"
        writer.transport.abort()
        release.set()
        await server.wait_idle(5)
    finally:
        tracemalloc.stop()
        server.close()
        await server.drain(5)
