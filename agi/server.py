"""The FastAGI server: a short loop per connection (read, feed, act, with deadlines).

Every connection ends one of four ways:

* the handler returns, or the caller hangs up (:class:`AgiHangup`): quietly;
* unknown route, or the handler raises: the ``on_error`` hook runs (default
  :func:`fail_closed`: ``CALLVAULT_CONSENT=error``, ``CALLVAULT_RECORD=no``, best
  effort) and ONE line is logged, naming the uniqueid and never other caller data;
* the peer breaks the protocol (oversized or junk environment, end of stream
  mid-line, unknown reply code) or goes quiet past a deadline: the connection is
  closed with ONE log line;
* the server drains at shutdown and cancels what is still running.

A peer outside ``allow`` (``[agi] allow``) is closed as soon as it connects, before
a byte is read, with one log line, and counted in ``refused``.

The generated dialplan presets the fail-closed values before ``AGI()``, so even a
connection that never reaches a handler leaves the call "not recorded".
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Self

from . import variables as v
from .errors import AgiError, AgiHangup
from .routes import RouteTable
from .session import (
    DEFAULT_PLAYBACK_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    AgiProtocol,
    AgiSession,
    ProtocolSession,
)

log = logging.getLogger(__name__)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop ``callvault serve`` runs on: uvloop (libuv, in C).

    It halves what the event loop and socket transports cost per AGI command
    compared with asyncio's pure-Python selector loop (``python -m bench agi``).
    """
    import uvloop

    return uvloop.new_event_loop()


# The cyclic collector's youngest generation is collected after every 700 net new
# container objects by default. Under 1,000 concurrent calls that is several
# collections per consent flow, each walking the young objects of every call in
# progress: 22-28 us of CPU per flow (``python -m bench agi``, a gc callback in the
# server), a twentieth of the flow. The server's objects are freed by reference
# counting; the few cycles (a traceback, a closed transport) wait a little longer.
GC_THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Once a long-running server has started: collect what start-up left, move
    every object it made (modules, configuration, the composition) out of the
    collector's sight for good (``gc.freeze``), and collect the youngest generation
    every 20,000 net new objects. With this the collector costs 3-4 us per flow."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


LOOPBACK = ("127.0.0.1", "::1")
FailClosed = Callable[[AgiSession, str], Awaitable[None]]

_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


async def fail_closed(session: AgiSession, reason: str) -> None:
    """Default ``on_error`` hook: tell the dialplan "error, not recorded"."""
    await session.set_variable(v.RECORD, v.NO)
    await session.set_variable(v.CONSENT, v.ERROR)


def _safe(value: str) -> str:
    """Ids and route names from the peer, only if they look like ids."""
    return value if _SAFE_ID.fullmatch(value) else "?"


def _where(exc: BaseException) -> str:
    """file:line where an exception was raised: useful, and free of caller data."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"


def _describe(exc: Exception) -> str:
    # Our own errors never carry caller data; anything else might, in its message.
    if isinstance(exc, AgiError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} at {_where(exc)}"


class FastAgiServer:
    def __init__(self, routes: RouteTable, host: str = "127.0.0.1", port: int = 4573, *,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, env_timeout: float = 5.0,
                 playback_timeout: float = DEFAULT_PLAYBACK_TIMEOUT,
                 on_error: FailClosed = fail_closed, allow: Iterable[str] = LOOPBACK):
        self.routes = routes
        self.allow = tuple(ipaddress.ip_network(a, strict=False) for a in allow)
        self._verdicts: dict[str, bool] = {}  # peer address -> allowed
        self.host = host
        self._port = port
        self.read_timeout = read_timeout
        self.env_timeout = env_timeout
        self.playback_timeout = playback_timeout
        self.on_error = on_error
        self.active = 0
        self.total = 0
        self.errors = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FastAgiServer already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self._port,
                                                reuse_address=True, backlog=1024)

    def close(self) -> None:
        """Stop accepting; calls in progress go on (see :meth:`drain`)."""
        if self._server is not None:
            self._server.close()

    async def drain(self, timeout: float) -> bool:
        """Wait for calls in progress; cancel the rest after ``timeout``. True if none was cut."""
        await asyncio.sleep(0)  # let connections accepted just before close() register
        pending: set[asyncio.Task] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("FastAGI: %d call(s) cut off at shutdown", len(pending))
                await asyncio.wait(pending)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        return not pending

    async def wait_idle(self, timeout: float) -> None:
        """Wait until no connection is in progress."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.drain(5.0)

    def stats(self) -> dict:
        return {"listening": self._server is not None and self._server.is_serving(),
                "port": self.port, "active": self.active, "total": self.total,
                "errors": self.errors, "refused": self.refused, "routes": self.routes.names()}

    # -- one connection -----------------------------------------------------------

    def _protocol(self) -> AgiProtocol:
        return _ServerProtocol(self)

    def _allowed(self, transport: asyncio.BaseTransport) -> bool:
        peer = transport.get_extra_info("peername")
        if not isinstance(peer, tuple) or not peer:
            return False
        host = peer[0]
        allowed = self._verdicts.get(host)  # the same Asterisk connects again and again
        if allowed is None:
            allowed = self._check_peer(host)
            if len(self._verdicts) < 1024:
                self._verdicts[host] = allowed
        return allowed

    def _check_peer(self, host: object) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except (TypeError, ValueError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's IPv4 peer
        return any(address in net for net in self.allow)

    def _connection_made(self, protocol: AgiProtocol) -> None:
        transport = protocol.transport
        if transport is not None and not self._allowed(transport):
            self.refused += 1
            log.warning("FastAGI connection from %s refused: not in [agi] allow", _peer(protocol))
            transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._on_connection(protocol))
        self._tasks.add(task)  # also keeps a reference to the task
        self._idle.clear()
        task.add_done_callback(self._connection_done)

    def _connection_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _on_connection(self, protocol: AgiProtocol) -> None:
        self.active += 1
        self.total += 1
        try:
            await self._serve(protocol)
        finally:
            transport = protocol.transport
            if transport is not None:
                transport.close()  # what is still buffered is written first
            self.active -= 1

    async def _serve(self, protocol: AgiProtocol) -> None:
        try:
            session = await ProtocolSession.accept(
                protocol, env_timeout=self.env_timeout, read_timeout=self.read_timeout,
                playback_timeout=self.playback_timeout)
        except AgiHangup:
            log.info("FastAGI connection from %s closed before the environment block",
                     _peer(protocol))
            return
        except Exception as exc:  # noqa: BLE001 - connection boundary: junk must not reach a handler
            self.errors += 1
            log.warning("FastAGI connection from %s dropped: %s", _peer(protocol), _describe(exc))
            return

        env = session.env
        uniqueid, route = _safe(env.uniqueid), _safe(env.route)
        handler = self.routes.resolve(env)
        if handler is None:
            await self._fail(session, f"FastAGI call {uniqueid}: unknown route {route}",
                             "unknown-route")
            return
        try:
            await handler(session)
        except AgiHangup:
            log.debug("FastAGI call %s on %s: hung up", uniqueid, route)
            return
        except Exception as exc:  # noqa: BLE001 - connection boundary: every failure is failed closed
            await self._fail(session, f"FastAGI call {uniqueid} on {route}: {_describe(exc)}",
                             "handler-error")
            return
        if session.broken:  # the handler swallowed a timeout or protocol error
            self.errors += 1
            log.error("FastAGI call %s on %s: ended with a broken AGI link", uniqueid, route)

    async def _fail(self, session: ProtocolSession, what: str, reason: str) -> None:
        """Run the fail-closed hook (best effort), then log one line."""
        self.errors += 1
        if not session.usable:
            outcome = "channel unreachable"
        elif session.hung_up:
            outcome = "failed closed (channel already hung up)"
            await self._run_hook(session, reason)
        else:
            outcome = await self._run_hook(session, reason)
        log.error("%s; %s", what, outcome)

    async def _run_hook(self, session: ProtocolSession, reason: str) -> str:
        try:
            await self.on_error(session, reason)
        except Exception as exc:  # noqa: BLE001 - best effort: the dialplan preset still says "no"
            return f"fail-closed hook failed: {_describe(exc)}"
        return "failed closed"


def _peer(protocol: AgiProtocol) -> str:
    peer = protocol.transport.get_extra_info("peername") if protocol.transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


class _ServerProtocol(AgiProtocol):
    """Starts the connection's task as soon as the connection is made."""

    def __init__(self, server: FastAgiServer) -> None:
        super().__init__()
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server._connection_made(self)
