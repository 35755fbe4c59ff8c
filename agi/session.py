"""The small interface handlers use to drive a channel, and its socket implementation.

Handlers see ``AgiSession`` only: never a socket, never protocol state. Every read
has a deadline; a hangup surfaces as :class:`AgiHangup` wherever it happens.
"""

from __future__ import annotations

import abc
import asyncio
import logging

from .errors import AgiHangup, AgiTimeout, CommandFailed, ProtocolError
from .events import NEED_DATA, Closed, Environment, Hangup, Response
from .protocol import AgiConnection, quote

log = logging.getLogger(__name__)


class AgiSession(abc.ABC):
    env: Environment

    @abc.abstractmethod
    async def command(self, line: str, *, timeout: float | None = None) -> Response: ...

    async def get_variable(self, name: str) -> str | None:
        r = await self.command(f"GET VARIABLE {name}")
        return r.data if r.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        r = await self.command(f"GET FULL VARIABLE {expression}")
        return r.data if r.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {name} {quote(value)}")

    async def stream_file(self, name: str, escape_digits: str = "") -> tuple[str | None, int]:
        """Play a sound; return (digit pressed or None, end position in samples)."""
        r = await self.command(f"STREAM FILE {name} {quote(escape_digits)}")
        if r.result_int < 0:
            await self._raise_if_hung_up()
            log.warning("sound %r could not be played (missing in every format?)", name)
            return None, 0
        return (chr(r.result_int) if r.result_int > 0 else None), r.endpos

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``prompt`` and collect up to ``max_digits``; return (digits, timed out)."""
        r = await self.command(f"GET DATA {prompt} {int(timeout_ms)} {int(max_digits)}",
                               timeout=self.read_timeout + timeout_ms / 1000 * 2)
        if r.result.startswith("-"):
            await self._raise_if_hung_up()
            return "", True
        return r.result, r.data == "timeout"

    async def exec(self, app: str, args: str = "") -> int:
        r = await self.command(f"EXEC {app} {quote(args)}")
        if r.result_int == -2:
            raise CommandFailed(f"EXEC {app}", 200, f"application {app} not found")
        return r.result_int

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command(f"VERBOSE {quote(message)} {level}")

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def hangup(self) -> None:
        await self.command("HANGUP")

    async def _raise_if_hung_up(self) -> None:
        # -1 means "failed or hung up"; a dead channel answers CHANNEL STATUS with 511.
        await self.command("CHANNEL STATUS")

    read_timeout: float = 30.0


class StreamSession(AgiSession):
    """An AgiSession over an asyncio stream (one FastAGI connection)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: AgiConnection, env: Environment, *, read_timeout: float = 30.0):
        self._reader, self._writer, self._conn = reader, writer, conn
        self.env = env
        self.read_timeout = read_timeout
        self.hung_up = False

    async def command(self, line: str, *, timeout: float | None = None) -> Response:
        if self.hung_up:
            raise AgiHangup(f"channel gone before {line.split(' ')[0]}")
        self._writer.write(self._conn.send_command(line))
        await self._writer.drain()
        while True:
            event = await next_event(self._reader, self._conn, timeout or self.read_timeout)
            if isinstance(event, Hangup):
                self.hung_up = True
                continue  # the command's own reply still follows
            if isinstance(event, Closed):
                self.hung_up = True
                raise AgiHangup("Asterisk closed the connection")
            assert isinstance(event, Response)
            if event.code == 511:
                self.hung_up = True
                raise AgiHangup("channel is dead (511)")
            if event.code in (510, 520):
                raise CommandFailed(line, event.code, event.text)
            if self.hung_up and event.result_int < 0:
                raise AgiHangup(f"hung up during {line.split(' ')[0]}")
            return event


async def next_event(reader: asyncio.StreamReader, conn: AgiConnection, timeout: float):
    """The next protocol event, reading as needed, within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = conn.next_event()
        if event is not NEED_DATA:
            return event
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AgiTimeout(f"no reply from Asterisk within {timeout:.1f} s")
        try:
            chunk = await asyncio.wait_for(reader.read(4096), remaining)
        except asyncio.TimeoutError:
            raise AgiTimeout(f"no reply from Asterisk within {timeout:.1f} s") from None
        except ConnectionError as e:
            raise ProtocolError(f"connection error: {e}") from None
        conn.receive_data(chunk)
