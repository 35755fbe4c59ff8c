"""Live call changes between nodes over PostgreSQL ``LISTEN/NOTIFY``: pbx nodes publish
each change of their calls on channel ``callvault_live``; web nodes listen and merge
other nodes' calls into their live view (docs/database.md). Best effort: a change lost
while the database is away is corrected by the call's next change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "callvault_live"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
RECONNECT = 2.0


def payload(node: str, call: dict[str, Any]) -> str | None:
    """The NOTIFY payload for one call change, under ``MAX_PAYLOAD`` bytes (None if it cannot be)."""
    text = json.dumps({"node": node, "call": call}, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD:
        call = {**call, "agents": call.get("agents", [])[:8], "rule": str(call.get("rule", ""))[:64]}
        text = json.dumps({"node": node, "call": call}, separators=(",", ":"))
    return text if len(text.encode()) <= MAX_PAYLOAD else None


class LiveBus:
    """Publishes this node's call changes and hands other nodes' to ``on_remote``."""

    def __init__(self, url: str, node: str, *, publish: bool,
                 on_remote: Callable[[str, dict[str, Any]], None] | None):
        self.url, self.node, self.publish, self.on_remote = url, node, publish, on_remote
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=1024)
        self.listening = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def send(self, call: dict[str, Any]) -> None:
        text = payload(self.node, call)
        if text is None:
            log.warning("live call %s not published: too large for NOTIFY", call.get("call_id"))
            return
        with contextlib.suppress(asyncio.QueueFull):  # the database is away: live state is best effort
            self.outbox.put_nowait(text)

    async def start(self) -> None:
        if self.publish:
            self._tasks.append(asyncio.create_task(self._sender(), name="live-publish"))
        if self.on_remote is not None:
            self._tasks.append(asyncio.create_task(self._listener(), name="live-listen"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sender(self) -> None:
        conn: psycopg.AsyncConnection | None = None
        try:
            while True:
                text = await self.outbox.get()
                for attempt in (1, 2):
                    try:
                        if conn is None or conn.closed:
                            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, text))
                        break
                    except psycopg.Error as e:
                        log.warning("live call change not published (attempt %d): %s", attempt, e)
                        conn = None
                        await asyncio.sleep(RECONNECT if attempt == 1 else 0)
        finally:
            if conn is not None:
                await conn.close()

    async def _listener(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    async for n in conn.notifies():
                        self._received(n.payload)
            except psycopg.Error as e:
                log.warning("live calls of other nodes not received: %s; reconnecting", e)
            self.listening.clear()
            await asyncio.sleep(RECONNECT)

    def _received(self, text: str) -> None:
        try:
            message = json.loads(text)
            node, call = str(message["node"]), dict(message["call"])
        except (ValueError, KeyError, TypeError):
            log.warning("a malformed live call message was ignored")
            return
        if node != self.node and self.on_remote is not None:
            self.on_remote(node, call)
