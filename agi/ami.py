"""The AMI session: our adapter over panoramisk 1.4.

panoramisk 1.4 (the only PyPI release) misbehaves against Asterisk 22 in ways this
adapter hides from the rest of the product:

- an action answered with "... successfully queued" and sent without an ``Async``
  key raises ``KeyError: 'async'`` inside panoramisk and drops the connection
  (upstream issue gawel/panoramisk#90): every action we send carries ``Async``;
- it reconnects at a fixed interval and reports nothing: we reconnect with
  exponential backoff and keep a visible state (``AmiState``);
- a failed login is silent: we record it as ``auth-failed`` and keep retrying
  slowly, because an administrator may fix manager.conf without restarting us;
- errors come back as response messages: ``action()`` raises ``AmiActionError``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import panoramisk
import panoramisk.actions

from .errors import AmiActionError, AmiError, AmiNotConnected

log = logging.getLogger(__name__)

EventHandler = Callable[["AmiEvent"], Awaitable[None] | None]


class AmiState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_FAILED = "auth-failed"


@dataclass(frozen=True)
class AmiEvent:
    """One AMI event: its name and its headers as Asterisk sent them."""

    name: str
    fields: dict[str, Any]

    def get(self, key: str, default: str = "") -> Any:
        return self.fields.get(key, default)


@dataclass
class AmiStatus:
    state: AmiState = AmiState.STOPPED
    since: float = field(default_factory=time.time)
    asterisk_version: str = ""
    last_error: str = ""
    connects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "since": self.since, "connects": self.connects,
                "asterisk_version": self.asterisk_version, "last_error": self.last_error}


class _Manager(panoramisk.Manager):
    """panoramisk's Manager with its reconnect logic handed to AmiClient."""

    def __init__(self, owner: AmiClient, **config: Any):
        super().__init__(**config)
        self._owner = owner

    def connection_made(self, f: asyncio.Future) -> None:
        try:
            f.result()
        except OSError as e:
            self._owner._lost(f"connect failed: {e}")
            return
        super().connection_made(f)

    def login(self, future: asyncio.Future) -> bool:
        ok = super().login(future)
        message = future.result()
        self._owner._login_result(ok, message.get("Message", ""))
        return ok

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self._owner._lost(f"connection lost: {exc}" if exc else "connection closed by Asterisk")


class AmiClient:
    """A long-lived, self-healing AMI session.

    ``start()`` returns at once; the session connects in the background and keeps
    reconnecting (backoff between ``reconnect_min`` and ``reconnect_max``) until
    ``close()``. ``wait_connected()`` waits for a logged-in session.
    """

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 reconnect_min: float = 0.5, reconnect_max: float = 30.0,
                 ping_interval: int = 20, fetch_version: bool = True):
        self._cfg = {"host": host, "port": port, "username": username, "secret": secret,
                     "ping_delay": ping_interval, "ping_interval": ping_interval,
                     # Login happens through _Manager.login; this is unused.
                     "reconnect_timeout": int(reconnect_max)}
        self._min, self._max = reconnect_min, reconnect_max
        self._delay = reconnect_min
        self._handlers: list[tuple[str, EventHandler]] = []
        self._routes: dict[str, tuple[EventHandler, ...]] = {}  # event name (lower) -> its handlers
        self._manager: _Manager | None = None
        self._connected = asyncio.Event()
        self._retry: asyncio.TimerHandle | None = None
        self._closing = False
        self._version_task: asyncio.Future | None = None
        self._fetch_version_on_login = fetch_version  # CoreSettings needs write = reporting
        self.status = AmiStatus()
        # Events received and parsed, by name, over the client's life (all sessions): what
        # manager.conf's event filter lets through (``callvault_ami_events_total``).
        self.events_received: Counter[str] = Counter()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._closing = False
        self._manager = _Manager(self, loop=loop, **self._cfg)
        self._manager.register_event("*", self._dispatch)
        self._connect()

    def _connect(self) -> None:
        if self._closing or self._manager is None:
            return
        self._retry = None
        self._set_state(AmiState.CONNECTING)
        self._manager.connect()

    async def close(self) -> None:
        self._closing = True
        if self._version_task is not None and not self._version_task.done():
            self._version_task.cancel()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        self._connected.clear()
        self._set_state(AmiState.STOPPED)
        # Let the transport's close callbacks run before the loop may end.
        await asyncio.sleep(0)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    @property
    def connected(self) -> bool:
        return self.status.state is AmiState.CONNECTED

    # -- callbacks from _Manager ------------------------------------------
    def _set_state(self, state: AmiState, error: str = "") -> None:
        if state is not self.status.state:
            self.status.state = state
            self.status.since = time.time()
        if error:
            self.status.last_error = error

    def _login_result(self, ok: bool, message: str) -> None:
        if ok:
            self._delay = self._min
            self.status.connects += 1
            self._set_state(AmiState.CONNECTED)
            self._connected.set()
            log.info("AMI connected to %s:%s", self._cfg["host"], self._cfg["port"])
            if self._fetch_version_on_login:
                self._version_task = asyncio.ensure_future(self._fetch_version())
        else:
            log.error("AMI login as %r refused: %s; check manager.conf and [ami] secret",
                      self._cfg["username"], message)
            self._set_state(AmiState.AUTH_FAILED, f"login refused: {message}")
            self._delay = self._max
            if self._manager is not None:
                self._manager.close()
            self._schedule()

    async def _fetch_version(self) -> None:
        try:
            settings = await self.action("CoreSettings")
        except (TimeoutError, AmiError) as e:
            log.warning("AMI CoreSettings failed: %s", e)
            return
        self.status.asterisk_version = settings.get("AsteriskVersion", "")

    def _lost(self, why: str) -> None:
        self._connected.clear()
        if self._closing:
            return
        if self.status.state is not AmiState.AUTH_FAILED:
            if self.status.state is AmiState.CONNECTED:
                log.warning("AMI %s; reconnecting", why)
            self._set_state(AmiState.DISCONNECTED, why)
        self._schedule()

    def _schedule(self) -> None:
        if self._closing or self._retry is not None:
            return
        delay = self._delay * (0.5 + random.random() / 2)
        self._delay = min(self._max, self._delay * 2)
        self._retry = asyncio.get_running_loop().call_later(delay, self._connect)

    # -- events --------------------------------------------------------------
    def on_event(self, pattern: str, handler: EventHandler) -> None:
        """Call ``handler(event)`` for events whose name matches ``pattern``
        (``*`` for all). Coroutine handlers are run as tasks."""
        self._handlers.append((pattern.lower(), handler))
        self._routes = {}

    def remove_handler(self, handler: EventHandler) -> None:
        self._handlers = [(p, h) for p, h in self._handlers if h is not handler]
        self._routes = {}

    def _dispatch(self, _manager: Any, message: Any) -> None:
        # panoramisk's CaseInsensitiveDict keeps (header, value) under the lowercased
        # header: its values are the event's headers as sent, without a lower() per read.
        fields = dict(message._store.values())
        event = AmiEvent(fields.get("Event", ""), fields)
        self.events_received[event.name] += 1
        name = event.name.lower()
        handlers = self._routes.get(name)
        if handlers is None:
            handlers = self._routes[name] = tuple(h for p, h in self._handlers if p == "*" or p == name)
        for handler in handlers:
            try:
                ret = handler(event)
            except Exception:
                log.exception("AMI event handler failed on %s", event.name)
                continue
            if asyncio.iscoroutine(ret):
                asyncio.ensure_future(ret)

    async def wait_event(self, predicate: Callable[[AmiEvent], bool],
                         timeout: float = 10.0) -> AmiEvent:
        """Wait for the next event satisfying ``predicate`` (register before acting)."""
        async with self.expect(predicate) as fut:
            return await asyncio.wait_for(fut, timeout)

    def expect(self, predicate: Callable[[AmiEvent], bool]) -> _Expectation:
        """Context manager: start listening now, await the future later.

        Use it to avoid missing an event raised by the action you are about to send.
        """
        return _Expectation(self, predicate)

    # -- actions -------------------------------------------------------------
    async def action(self, name: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send one action and return its response headers; raise on Error."""
        manager = self._require()
        fields.setdefault("Async", "false")
        action = panoramisk.actions.Action({"Action": name, **fields}, as_list=False)
        response = await asyncio.wait_for(manager.send_action(action), timeout)
        if isinstance(response, list):
            response = response[0]
        result = dict(response.items())
        if result.get("Response") == "Error":
            raise AmiActionError(name, result.get("Message", "") or str(result), result)
        return result

    async def action_list(self, name: str, timeout: float = 10.0,
                          **fields: Any) -> list[dict[str, Any]]:
        """Send an action answered by an event list; return the list's events."""
        manager = self._require()
        fields.setdefault("Async", "false")
        action = panoramisk.actions.Action({"Action": name, **fields}, as_list=True)
        messages = await asyncio.wait_for(manager.send_action(action), timeout)
        first = dict(messages[0].items())
        if first.get("Response") == "Error":
            raise AmiActionError(name, first.get("Message", ""))
        return [dict(m.items()) for m in messages[1:]
                if not str(m.get("Event", "")).endswith("Complete")]

    async def command(self, cli: str, timeout: float = 10.0) -> str:
        """Run an Asterisk CLI command and return its output."""
        result = await self.action("Command", timeout=timeout, Command=cli)
        output = result.get("Output", "")
        return "\n".join(output) if isinstance(output, list) else output

    def _require(self) -> _Manager:
        if self._manager is None or not self.connected:
            raise AmiNotConnected(f"AMI is {self.status.state.value}"
                                  + (f" ({self.status.last_error})" if self.status.last_error else ""))
        return self._manager


class _Expectation:
    def __init__(self, client: AmiClient, predicate: Callable[[AmiEvent], bool]):
        self._client = client
        self._predicate = predicate
        self.future: asyncio.Future[AmiEvent] = asyncio.get_running_loop().create_future()

    def _on(self, event: AmiEvent) -> None:
        if not self.future.done() and self._predicate(event):
            self.future.set_result(event)

    async def __aenter__(self) -> asyncio.Future[AmiEvent]:
        self._client.on_event("*", self._on)
        return self.future

    async def __aexit__(self, *exc: object) -> None:
        self._client.remove_handler(self._on)
        if not self.future.done():
            self.future.cancel()
