"""The FastAGI session over a real socket pair: what each reply means for a handler."""

from __future__ import annotations

import asyncio
import socket

import pytest
from waiting import until

from agi.errors import AgiHangup, AgiTimeout, CommandFailed, ProtocolError
from agi.session import AgiProtocol, ProtocolSession

ENV = b"agi_network_script: consent\nagi_uniqueid: 1.1\n\n"
WAIT = 5.0


class Pbx:
    """The Asterisk end of the pair: reads our commands, writes scripted replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def expect(self, command: str, *replies: str) -> None:
        async with asyncio.timeout(WAIT):
            line = await self.reader.readline()
        assert line.decode() == command + "\n"
        self.writer.write("".join(r + "\n" for r in replies).encode())
        await self.writer.drain()


@pytest.fixture
async def pair():
    """Our session on the server's AgiProtocol, and the PBX end of the socket pair."""
    ours, theirs = socket.socketpair()
    r2, w2 = await asyncio.open_connection(sock=theirs)
    w2.write(ENV)
    transport, protocol = await asyncio.get_running_loop().create_connection(AgiProtocol, sock=ours)
    session = await ProtocolSession.accept(protocol, env_timeout=WAIT, read_timeout=WAIT)
    close = transport.close
    yield session, Pbx(r2, w2)
    close()
    w2.close()
    try:
        await w2.wait_closed()
    except OSError:
        pass


async def run(coro, pbx_script):
    """Run a session call and the PBX's side of it together; return the call's result."""
    task = asyncio.ensure_future(coro)
    await pbx_script
    async with asyncio.timeout(WAIT):
        return await task


async def test_variables_and_quoting(pair):
    s, pbx = pair
    assert s.env.uniqueid == "1.1"
    assert await run(s.get_variable("CHANNEL(language)"),
                     pbx.expect('GET VARIABLE "CHANNEL(language)"', "200 result=1 (en)")) == "en"
    assert await run(s.get_variable("NOPE"), pbx.expect('GET VARIABLE "NOPE"', "200 result=0")) is None
    assert await run(s.get_variable("EMPTY"), pbx.expect('GET VARIABLE "EMPTY"', "200 result=1 ()")) == ""
    assert await run(s.get_full_variable("${CALLERID(num)}"),
                     pbx.expect('GET FULL VARIABLE "${CALLERID(num)}"', "200 result=1 (2721)")) == "2721"
    await run(s.set_variable("A", 'say "hi" \\o/'),
              pbx.expect(r'SET VARIABLE "A" "say \"hi\" \\o/"', "200 result=1"))
    await run(s.verbose("consent logged"), pbx.expect('VERBOSE "consent logged" 1', "200 result=1"))


async def test_stream_file_digits_and_endpos(pair):
    s, pbx = pair
    assert await run(s.stream_file("beep", "12"),
                     pbx.expect('STREAM FILE "beep" "12"', "200 result=0 endpos=3404")) == (None, 3404)
    assert await run(s.stream_file("beep", "12"),
                     pbx.expect('STREAM FILE "beep" "12"', "200 result=50 endpos=100")) == ("2", 100)


async def test_missing_sound_is_a_failure_not_a_hangup(pair):
    s, pbx = pair

    async def script():
        await pbx.expect('STREAM FILE "no-such-file" ""', "200 result=-1 endpos=0")
        await pbx.expect("CHANNEL STATUS", "200 result=6")

    with pytest.raises(CommandFailed) as info:
        await run(s.stream_file("no-such-file"), script())
    assert "no-such-file" not in str(info.value)
    assert s.usable and not s.hung_up


async def test_hangup_during_playback_is_told_apart_by_the_probe(pair):
    s, pbx = pair

    async def script():
        await pbx.expect('STREAM FILE "notice" ""', "200 result=-1 endpos=1200")
        # Asterisk writes HANGUP before it reads the next command.
        await pbx.expect("CHANNEL STATUS", "HANGUP", "511 Command Not Permitted on a dead channel")

    with pytest.raises(AgiHangup):
        await run(s.stream_file("notice"), script())
    assert s.hung_up


async def test_hangup_line_before_the_reply_and_dead_channel_commands(pair):
    s, pbx = pair
    with pytest.raises(AgiHangup):
        await run(s.get_data("notice", 4000, 1),
                  pbx.expect('GET DATA "notice" 4000 1', "HANGUP", "200 result=-1"))
    # Commands Asterisk allows on a dead channel still work (fail-closed variables).
    await run(s.set_variable("CALLVAULT_RECORD", "no"),
              pbx.expect('SET VARIABLE "CALLVAULT_RECORD" "no"', "200 result=1"))
    with pytest.raises(AgiHangup):
        await run(s.stream_file("x"), pbx.expect('STREAM FILE "x" ""', "511 Command Not Permitted on a dead channel"))


@pytest.mark.parametrize("reply,expected", [
    ("200 result=1", ("1", False)),
    ("200 result=0123", ("0123", False)),
    ("200 result= (timeout)", ("", True)),
    ("200 result=1 (timeout)", ("1", True)),
])
async def test_get_data(pair, reply, expected):
    s, pbx = pair
    assert await run(s.get_data("beep", 4000, 4), pbx.expect('GET DATA "beep" 4000 4', reply)) == expected


async def test_exec_and_rejections(pair):
    s, pbx = pair
    assert await run(s.exec("UserEvent", "RecordingConsent,Status: granted"),
                     pbx.expect('EXEC "UserEvent" "RecordingConsent,Status: granted"', "200 result=0")) == 0
    assert await run(s.exec("Gosub", "x,s,1"), pbx.expect(
        'EXEC "Gosub" "x,s,1"', "100 result=0 Trying...", "200 result=0 Gosub complete")) == 0
    with pytest.raises(CommandFailed):
        await run(s.exec("NoSuchApp"), pbx.expect('EXEC "NoSuchApp" ""', "200 result=-2"))
    with pytest.raises(CommandFailed) as info:
        await run(s.answer(), pbx.expect("ANSWER", "520-Invalid command syntax.  Proper usage follows:",
                                         " Usage: ANSWER", "520 End of proper usage."))
    assert info.value.response.usage == (" Usage: ANSWER",)
    with pytest.raises(CommandFailed):
        await run(s.hangup(), pbx.expect("HANGUP", "510 Invalid or unknown command"))
    assert s.usable


async def test_timeout_leaves_the_session_broken(pair):
    s, _pbx = pair
    s.read_timeout = 0.05
    with pytest.raises(AgiTimeout):
        await s.answer()  # the PBX never answers
    assert s.broken and not s.usable


async def test_each_wait_keeps_its_own_deadline(pair):
    """One timer per connection: an earlier, shorter deadline does not cut a later
    wait short, and a later, shorter one still fires on time."""
    s, pbx = pair
    s.read_timeout = 0.2
    await run(s.answer(), pbx.expect("ANSWER", "200 result=0"))  # armed for +0.2 s

    async def slow_reply():
        async with asyncio.timeout(WAIT):
            await pbx.reader.readline()
        await asyncio.sleep(0.4)  # past the first command's deadline, within this one's
        pbx.writer.write(b"200 result=1\n")
        await pbx.writer.drain()

    s.read_timeout = 1.0
    await run(s.set_variable("X", "1"), slow_reply())
    s.read_timeout = 0.1
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(AgiTimeout):
        await s.answer()  # the PBX never answers
    assert asyncio.get_running_loop().time() - t0 < 0.9


async def test_connection_closed_while_waiting_is_a_hangup(pair):
    s, pbx = pair

    async def script():
        async with asyncio.timeout(WAIT):
            await pbx.reader.readline()
        pbx.writer.close()

    with pytest.raises(AgiHangup):
        await run(s.answer(), script())


async def test_garbage_reply_is_a_protocol_error(pair):
    s, pbx = pair
    with pytest.raises(ProtocolError):
        await run(s.answer(), pbx.expect("ANSWER", "999 what"))
    assert s.broken


# -- the server's transport (AgiProtocol) -------------------------------------------


async def _protocol_pair(env: bytes = ENV):
    ours, theirs = socket.socketpair()
    r2, w2 = await asyncio.open_connection(sock=theirs)
    transport, protocol = await asyncio.get_running_loop().create_connection(AgiProtocol, sock=ours)
    if env:
        w2.write(env)
    return transport, protocol, Pbx(r2, w2)


async def _close(transport, pbx):
    transport.close()
    pbx.writer.close()
    try:
        await pbx.writer.wait_closed()
    except OSError:
        pass


async def test_protocol_reply_in_pieces_and_hangup_in_the_same_chunk():
    transport, protocol, pbx = await _protocol_pair(ENV[:5])
    pbx.writer.write(ENV[5:])
    s = await ProtocolSession.accept(protocol, env_timeout=WAIT, read_timeout=WAIT)
    assert s.env.uniqueid == "1.1"

    async def dribble():
        async with asyncio.timeout(WAIT):
            await pbx.reader.readline()
        for byte in b"200 result=1 (en)\n":
            pbx.writer.write(bytes([byte]))
            await pbx.writer.drain()
            await asyncio.sleep(0)

    assert await run(s.get_variable("CHANNEL(language)"), dribble()) == "en"
    await run(s.set_variable("A", "b"), pbx.expect('SET VARIABLE "A" "b"', "HANGUP\n200 result=1"))
    assert s.hung_up and s.usable
    await _close(transport, pbx)


async def test_protocol_no_environment_is_a_timeout():
    transport, protocol, pbx = await _protocol_pair(b"")
    with pytest.raises(AgiTimeout):
        await ProtocolSession.accept(protocol, env_timeout=0.05)
    await _close(transport, pbx)


async def test_protocol_pauses_reading_when_the_peer_floods():
    transport, protocol, pbx = await _protocol_pair()
    s = await ProtocolSession.accept(protocol, env_timeout=WAIT, read_timeout=WAIT)
    pbx.writer.write(b"2" * (1024 * 1024))  # no newline, no command outstanding
    await until(lambda: protocol._read_paused, WAIT, what="reading to pause")
    await asyncio.sleep(0.05)  # not a wait for an event: time in which a wrong reader would read on
    assert protocol.conn.buffered < 2 * 256 * 1024  # the rest waits in the kernel
    with pytest.raises(ProtocolError, match="line longer"):
        await s.answer()
    assert s.broken
    await _close(transport, pbx)


async def test_protocol_write_after_the_peer_is_gone_is_a_hangup():
    transport, protocol, pbx = await _protocol_pair()
    s = await ProtocolSession.accept(protocol, env_timeout=WAIT, read_timeout=WAIT)
    transport.abort()
    await asyncio.sleep(0)
    with pytest.raises(AgiHangup, match="connection lost"):
        await s.answer()
    await _close(transport, pbx)
