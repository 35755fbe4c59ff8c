"""FastAGI's implementation of :class:`agi.interface.AgiSession`, over a socket.

Handlers see :class:`AgiSession` only: never a socket, never protocol state.

How replies map to outcomes (see also ``agi.errors``):

* ``511`` or a closed connection -> :class:`AgiHangup`; a ``HANGUP`` line is
  remembered and the command's own reply is still read (commands Asterisk allows
  on a dead channel, such as ``SET VARIABLE``, still work);
* ``510``, ``520``, ``503`` -> :class:`CommandFailed`;
* ``result=-1`` from ANSWER, STREAM FILE, GET DATA or EXEC means "failed *or* hung
  up". Unless a ``HANGUP`` was already seen, ``CHANNEL STATUS`` is asked: Asterisk
  writes ``HANGUP`` before reading the next command when the channel is gone, so
  the answer is :class:`AgiHangup` or :class:`CommandFailed` (e.g. a missing sound
  file: the notice was *not* played, which must never pass for consent).
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

from .errors import AgiHangup, AgiTimeout, CommandFailed, ProtocolError
from .events import NEED_DATA, Closed, Environment, Event, Hangup, Response
from .interface import DEFAULT_PLAYBACK_TIMEOUT, DEFAULT_READ_TIMEOUT, AgiSession
from .protocol import AgiConnection, State, build_command, verb_of

# The command lines of STREAM FILE and GET DATA, built once per prompt: a handful of
# sounds and timeouts in practice (bounded all the same).
_PLAYS: dict[tuple, str] = {}


def _play_command(verb: str, name: str, a: str | int, b: int | None = None) -> str:
    command = build_command(verb, name, a) if b is None else build_command(verb, name, a, b)
    if len(_PLAYS) < 512 and type(name) is str and type(a) in (str, int) and type(b) in (int, type(None)):
        _PLAYS[(verb, name, a) if b is None else (verb, name, a, b)] = command
    return command


_LOST = object()  # the connection broke while a command was being written


# Bytes read ahead of the parser before the socket is paused (a peer that floods us
# while no command is outstanding); the protocol machine caps lines and blocks itself.
_MAX_BUFFERED = 256 * 1024


class AgiProtocol(asyncio.Protocol):
    """One FastAGI connection at the transport level: feeds an :class:`AgiConnection`.

    The server's per-command path is: ``transport.write``, one future awaited until
    a reply line has arrived, and a deadline that is only a number: one timer per
    connection, armed for the earliest deadline still to come, checks it when it
    fires (a call's commands rarely wait more than milliseconds, so it seldom does).
    No ``StreamReader``, no ``drain()`` unless the socket's send buffer is actually
    full, no ``asyncio.timeout()`` context (which costs a task lookup and a
    reschedule per command), no timer per command. Replies are parsed by the same
    sans-I/O machine as everywhere else.
    """

    def __init__(self, conn: AgiConnection | None = None) -> None:
        self.conn = conn or AgiConnection()
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timed_out = False
        self._deadline = 0.0  # loop time by which the awaited data must have come
        self._timer: asyncio.TimerHandle | None = None  # fires at or before _deadline
        self._lost = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_paused = False

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        if conn.buffered > _MAX_BUFFERED and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._end_of_stream()
        return True  # half-closed: our fail-closed commands may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._end_of_stream()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _end_of_stream(self) -> None:
        if not self.conn.eof:
            self.conn.receive_data(b"")
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the session -------------------------------------------------------------

    def write(self, wire: bytes) -> bool:
        """Write ``wire``; False if the connection is gone. Then :meth:`drain` if
        :attr:`write_paused` (the socket's send buffer is full)."""
        if self._lost or self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(wire)
        return True

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def drain(self) -> bool:
        """Wait until the send buffer has room again; False if the connection is gone."""
        if self._write_paused and not self._lost:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        return not self._lost

    async def next_event(self, timeout: float) -> Event | None:
        """The next event that is not a ``Hangup``; None if ``timeout`` passed first."""
        conn = self.conn
        event = conn.next_event()
        if event is not NEED_DATA and type(event) is not Hangup:
            return event
        loop = self._loop
        self._timed_out = False
        self._deadline = deadline = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._on_timer)
        while True:
            if event is NEED_DATA:
                if self._read_paused:
                    self._read_paused = False
                    self.transport.resume_reading()
                self._waiter = waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
                if self._timed_out:
                    return None
            elif type(event) is not Hangup:
                return event
            event = conn.next_event()

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nothing awaited: the next wait arms a timer of its own
        if self._loop.time() < self._deadline:  # armed for an earlier wait
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        self._timed_out = True
        waiter.set_result(None)


class ProtocolSession(AgiSession):
    """An :class:`AgiSession` over an :class:`AgiProtocol` (what :class:`FastAgiServer` uses)."""

    def __init__(self, protocol: AgiProtocol, env: Environment, *,
                 read_timeout: float = DEFAULT_READ_TIMEOUT,
                 playback_timeout: float = DEFAULT_PLAYBACK_TIMEOUT):
        self._protocol, self._conn = protocol, protocol.conn
        self.env = env
        self.read_timeout = read_timeout
        self.playback_timeout = playback_timeout

    @classmethod
    async def accept(cls, protocol: AgiProtocol, *, env_timeout: float = 5.0,
                     **options: float) -> ProtocolSession:
        """Read the environment block (all of it within ``env_timeout``).

        Raises :class:`AgiHangup` if the peer closes before sending anything,
        :class:`AgiTimeout` past the deadline, :class:`ProtocolError` on junk.
        """
        event = await protocol.next_event(env_timeout)
        if event is None:
            raise AgiTimeout(f"no environment block within {env_timeout:g} s")
        if isinstance(event, Closed):
            raise AgiHangup("connection closed before the environment block")
        if not isinstance(event, Environment):
            raise ProtocolError("expected the environment block")
        return cls(protocol, event, **options)

    @property
    def hung_up(self) -> bool:
        return self._conn.hangup_seen or self._conn.state is State.CLOSED

    @property
    def usable(self) -> bool:
        """Whether another command can be sent (false after a timeout or protocol error)."""
        return self._conn.can_send

    @property
    def broken(self) -> bool:
        """A reply was never read (timeout) or the peer broke the protocol."""
        return self._conn.state in (State.AWAITING, State.ERROR)

    # -- the interface --------------------------------------------------------------

    async def get_variable(self, name: str) -> str | None:
        r = await self._command(build_command("GET VARIABLE", name))
        return (r.data or "") if r.result == 1 else None

    async def get_full_variable(self, expression: str) -> str | None:
        r = await self._command(build_command("GET FULL VARIABLE", expression))
        return (r.data or "") if r.result == 1 else None

    async def set_variable(self, name: str, value: str) -> None:
        await self._command(build_command("SET VARIABLE", name, value))

    async def stream_file(self, name: str, escape_digits: str = "") -> tuple[str | None, int]:
        command = _PLAYS.get(("STREAM FILE", name, escape_digits)) or _play_command("STREAM FILE", name, escape_digits)
        r = await self._command(command, self.read_timeout + self.playback_timeout)
        if r.result is None or r.result < 0:
            await self._failed_or_hung_up(command, r, "sound could not be played")
        digit = chr(r.result) if r.result else None
        return digit, r.endpos or 0

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        command = (_PLAYS.get(("GET DATA", prompt, timeout_ms, max_digits))
                   or _play_command("GET DATA", prompt, int(timeout_ms), int(max_digits)))
        wait = self.read_timeout + self.playback_timeout + max(timeout_ms, 0) / 1000
        r = await self._command(command, wait)
        if r.raw_result.startswith("-"):
            await self._failed_or_hung_up(command, r, "prompt failed")
        return r.raw_result, r.data == "timeout"

    async def exec(self, app: str, args: str = "") -> int:
        command = build_command("EXEC", app, args)
        r = await self._command(command)
        if r.result is None:
            raise CommandFailed("EXEC", "result is not a number", r)
        if r.result == -2:
            raise CommandFailed("EXEC", "no such application", r)
        if r.result < 0:
            await self._failed_or_hung_up(command, r, "application failed")
        return r.result

    async def verbose(self, message: str, level: int = 1) -> None:
        await self._command(build_command("VERBOSE", message, int(level)))

    async def answer(self) -> None:
        command = build_command("ANSWER")
        r = await self._command(command)
        if r.result is None or r.result < 0:
            await self._failed_or_hung_up(command, r, "answer failed")

    async def hangup(self) -> None:
        await self._command(build_command("HANGUP"))

    async def channel_status(self) -> int:
        """The channel's state number (6 = up); -1 if Asterisk has no such channel."""
        r = await self._command(build_command("CHANNEL STATUS"))
        return r.result if r.result is not None else -1

    # -- the loop -----------------------------------------------------------------

    async def _command(self, command: str, timeout: float | None = None) -> Response:
        """Send one command and read its final reply: write, read, feed, within a deadline.

        One coroutine per command: the reply is taken from the parser at once when it
        is already buffered, else awaited on the protocol's future (no layer between)."""
        conn, protocol = self._conn, self._protocol
        if not protocol.write(conn.send_command(command)) or (protocol.write_paused and not await protocol.drain()):
            event: Event | None = _LOST
        else:
            event = conn.next_event()
            if event is NEED_DATA or type(event) is Hangup:
                wait = timeout or self.read_timeout
                event = await protocol.next_event(wait)
                if event is None:
                    raise AgiTimeout(f"no reply to {verb_of(command)} within {wait:g} s")
        if type(event) is Response and event.code == 200:
            return event
        verb = verb_of(command)  # only for errors: safe to log, unlike the arguments
        if isinstance(event, Closed):
            raise AgiHangup(f"{verb}: Asterisk closed the connection")
        if event is _LOST:
            raise AgiHangup(f"{verb}: connection lost")
        if not isinstance(event, Response):
            raise ProtocolError(f"unexpected event awaiting the reply to {verb}")
        if event.code == 511:
            raise AgiHangup(f"{verb}: channel is dead (511)")
        if event.code == 510:
            raise CommandFailed(verb, "unknown command (510)", event)
        if event.code == 520:
            raise CommandFailed(verb, "invalid syntax (520)", event)
        raise CommandFailed(verb, f"failed ({event.code})", event)

    async def _failed_or_hung_up(self, command: str, r: Response, what: str) -> NoReturn:
        verb = verb_of(command)
        if not self.hung_up:
            status = await self.channel_status()  # raises AgiHangup on 511
            if status < 0:
                self._conn.hangup_seen = True
        if self.hung_up:
            raise AgiHangup(f"{verb}: channel hung up")
        raise CommandFailed(verb, what, r)
