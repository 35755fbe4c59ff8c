"""The FastAGI server: a short loop per connection (read, feed, act, with deadlines).

Every way a connection can go wrong ends the same way: one log line naming the
uniqueid (never caller data) and, where the channel is still there, the fail-closed
outcome on the channel (``CALLVAULT_CONSENT=error``, ``CALLVAULT_RECORD=no``) so
the dialplan continues without recording.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from . import variables as v
from .errors import AgiError, AgiHangup, AgiTimeout, ProtocolError
from .events import Environment
from .protocol import AgiConnection
from .routes import RouteTable
from .session import AgiSession, StreamSession, next_event

log = logging.getLogger(__name__)

FailClosed = Callable[[AgiSession, str], Awaitable[None]]


async def fail_closed(session: AgiSession, reason: str) -> None:
    """Best effort: tell the dialplan "not recorded"; the channel may be gone."""
    try:
        await session.set_variable(v.RECORD, "no")
        await session.set_variable(v.CONSENT, "error")
    except AgiError:
        pass


@dataclass
class ServerStats:
    active: int = 0
    total: int = 0
    errors: int = 0


class FastAgiServer:
    def __init__(self, routes: RouteTable, host: str = "127.0.0.1", port: int = 4573, *,
                 read_timeout: float = 30.0, env_timeout: float = 5.0,
                 on_fail: FailClosed = fail_closed):
        self.routes = routes
        self.host, self._port = host, port
        self.read_timeout = read_timeout
        self.env_timeout = env_timeout
        self.on_fail = on_fail
        self.counters = ServerStats()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self._port,
                                                  reuse_address=True, backlog=1024)

    def close(self) -> None:
        """Stop accepting; calls in progress go on (see ``drain``)."""
        if self._server is not None:
            self._server.close()

    async def drain(self, timeout: float) -> None:
        """Wait for calls in progress; cancel what is still running after ``timeout``."""
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("FastAGI: %d call(s) cut off at shutdown", len(pending))
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def wait_idle(self, timeout: float) -> None:
        """Wait until no call is in progress (tests, and drain)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def stats(self) -> dict:
        return {"listening": self._server is not None and self._server.is_serving(),
                "port": self.port, "active": self.counters.active,
                "total": self.counters.total, "errors": self.counters.errors,
                "routes": self.routes.names()}

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        self.counters.active += 1
        self.counters.total += 1
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (OSError, asyncio.TimeoutError):
                pass
            self.counters.active -= 1
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AgiConnection()
        peer = writer.get_extra_info("peername")
        try:
            env = await next_event(reader, conn, self.env_timeout)
        except (ProtocolError, AgiTimeout) as e:
            self.counters.errors += 1
            log.warning("FastAGI from %s: closed before a call started: %s", peer, e)
            return
        if not isinstance(env, Environment):
            return  # connected and closed without a word
        session = StreamSession(reader, writer, conn, env, read_timeout=self.read_timeout)
        handler = self.routes.get(env.route)
        if handler is None:
            self.counters.errors += 1
            log.error("FastAGI call %s: unknown route %r; not recorded", env.uniqueid, env.route)
            await self.on_fail(session, "unknown-route")
            return
        try:
            await handler(session)
        except AgiHangup:
            pass  # the caller hung up: normal
        except (ProtocolError, AgiTimeout) as e:
            self.counters.errors += 1
            log.error("FastAGI call %s on %s: Asterisk link failed: %s; not recorded",
                      env.uniqueid, env.route, e)
        except Exception as e:  # the connection boundary: nothing may leave a channel stuck
            self.counters.errors += 1
            log.error("FastAGI call %s on %s failed: %s: %s; not recorded", env.uniqueid,
                      env.route, type(e).__name__, e, exc_info=log.isEnabledFor(logging.DEBUG))
            await self.on_fail(session, "internal-error")
