"""Several nodes on one PostgreSQL database: the one HMAC key, the node registry,
live calls across nodes, and the retention sweeper of a retrieval node.

Live calls: a node that runs AMI (role ``pbx`` or ``all``) publishes every change the
agent WebSocket is told of (``{"node": NAME, "call": {...}}``) with ``NOTIFY
callvault_live``; a node with the web apps (``retrieval`` or ``all``) ``LISTEN``s on a
connection of its own and merges other nodes' calls into its live view. Payloads stay
under PostgreSQL's 8000-byte limit. Pausing a call is an AMI action on the PBX that
carries it: a node refuses to pause another node's call and names that node.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import shutil
import time
from collections.abc import AsyncIterator

from aiohttp import web

from archiver.errors import SetupError
from storage.nodes import DOWN_AFTER, HEARTBEAT, NodeRow, Nodes, hmac_fingerprint

from .config import Config
from .keys import AppKeys as K
from .livebus import LiveBus
from .nodeconfig import ASTERISK_ROLES, RETRIEVAL_ROLES

log = logging.getLogger(__name__)

SWEEP_EVERY = 3600.0


def shared(config: Config) -> bool:
    return config.database.url.startswith(("postgresql:", "postgres:"))


@functools.cache
def version() -> str:
    """The installed callvault's version: read once (0.26 ms a read, every heartbeat)."""
    try:
        return importlib.metadata.version("callvault")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- the one HMAC key ------------------------------------------------------------------------

def hmac_mismatch(config: Config, key: bytes, recorded: tuple[str, str] | None) -> str:
    """The refusal for a node whose caller-number HMAC key is not the database's; "" if it is."""
    mine = hmac_fingerprint(key)
    if recorded is None or recorded[0] == mine:
        return ""
    theirs, first_node = recorded
    path = config.privacy.hmac_key_file
    source = first_node if first_node != config.node.name else "the node that first used it"
    return (f"[privacy] hmac_key_file = {str(path)!r}: this key (fingerprint {mine[:16]}) is not the one the "
            f"shared database records (fingerprint {theirs[:16]}, first used by {source}); phone search "
            f"would miss calls. Every node must use one key: stop callvault here, copy the key from "
            f"{source}, e.g. `scp {source}:{path} {path}`, then `chown callvault: {path} && chmod 0600 {path}`, "
            "and start again")


def check_hmac_key(nodes: Nodes, key: bytes, config: Config) -> None:
    """Record this key's fingerprint at first use; refuse a different key (SetupError)."""
    problem = hmac_mismatch(config, key, nodes.claim_hmac_fingerprint(key, config.node.name))
    if problem:
        raise SetupError(problem)


# -- the registry ----------------------------------------------------------------------------

# An unchanged row is written again after this long: two lost beats in a row still leave
# the node up (DOWN_AFTER), and an idle node makes one durable write per REWRITE, not per beat.
REWRITE = DOWN_AFTER / 3
SPOOL_STEP = 64 << 20  # spool free space moves with every write; a smaller move is no change


class Heartbeat:
    """This node's registry row: built every ``HEARTBEAT`` seconds, written at start, when
    it changes (AMI state, queue, a spool free-space move of ``SPOOL_STEP`` or more) and
    otherwise every ``REWRITE`` seconds."""

    def __init__(self, app: web.Application, nodes: Nodes):
        self.app, self.nodes = app, nodes
        self.config: Config = app[K.config]
        self.started = time.time()
        self.written: NodeRow | None = None

    def row(self) -> NodeRow:
        c, ami = self.config, self.app.get(K.ami)
        pbx = c.node.role in ASTERISK_ROLES
        try:
            free = shutil.disk_usage(c.spool.dir).free if pbx else None
        except OSError:
            free = None
        return NodeRow(name=c.node.name, role=c.node.role, last_seen=time.time(),
                       ami=ami.status.state.value if ami is not None else "none",
                       queue=self.nodes.queue_of(c.node.name) if pbx else {}, spool_free=free,
                       version=version(), started_at=self.started)

    def beat(self) -> bool:
        """Write the row if it is due (see the class); True when written."""
        row, last = self.row(), self.written
        if last is not None and row.last_seen - last.last_seen < REWRITE and _same(row, last):
            return False
        self.nodes.upsert(row)
        self.written = row
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await asyncio.to_thread(self.beat)
            except Exception as e:  # noqa: BLE001 (task boundary: the next beat tries again)
                log.warning("node registry not updated: %s", e)


def _same(a: NodeRow, b: NodeRow) -> bool:
    """Equal but for ``last_seen`` and a spool free-space move under ``SPOOL_STEP``."""
    if (a.spool_free is None) != (b.spool_free is None) or \
            (a.spool_free is not None and abs(a.spool_free - b.spool_free) >= SPOOL_STEP):
        return False
    return (a.role, a.ami, a.queue, a.version, a.started_at) == (b.role, b.ami, b.queue, b.version, b.started_at)


# -- the retrieval node's sweeper ------------------------------------------------------------

async def sweep_loop(app: web.Application, every: float = SWEEP_EVERY) -> None:
    """Retention on a retrieval node (on ``all`` the archiver runs it)."""
    sweeper = app[K.sweeper]
    while True:
        try:
            result = await asyncio.to_thread(sweeper.sweep)
            if result.deleted or result.shredded:
                log.info("retention: deleted %d, shredded %d, held %d", len(result.deleted),
                         len(result.shredded), len(result.held))
        except Exception as e:  # noqa: BLE001 (task boundary: the next sweep tries again)
            log.error("retention sweep failed: %s", e)
        await asyncio.sleep(every)


async def cluster(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``, after the web state: registry row, live bus, retrieval sweeper."""
    from .web.state import WebKeys as W

    config = app[K.config]
    role = config.node.role
    heartbeat = Heartbeat(app, app[K.nodes])
    await asyncio.to_thread(heartbeat.beat)
    tasks = [asyncio.create_task(heartbeat.run(), name="node-heartbeat")]
    if role == "retrieval":
        tasks.append(asyncio.create_task(sweep_loop(app), name="retention"))
    bus = None
    if shared(config):
        live = app[W.live]
        bus = LiveBus(config.database.url, config.node.name, publish=role in ASTERISK_ROLES,
                      on_remote=live.merge if role in RETRIEVAL_ROLES else None)
        live.publish = bus.send if bus.publish else None
        await bus.start()
        app[K.bus] = bus
    yield
    if bus is not None:
        await bus.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
