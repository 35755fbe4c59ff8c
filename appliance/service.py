"""`callvault serve`: one asyncio process, owned by aiohttp.

The parts come from the composition root (appliance/compose.py). Each long-lived
part is a ``cleanup_ctx`` generator: started in order, stopped in reverse. On
SIGTERM aiohttp stops the web site, then the archiver finishes the step it is on,
the FastAGI listener stops accepting and waits for calls in progress (each ends
with a defined dialplan outcome), the AMI session closes, the ledger head is
anchored (appliance/anchoring.py), the archive's stores close and the database
closes last. The process then exits 0.

Under systemd (``Type=notify``, appliance/systemd.py) READY=1 is sent once every part
is up and both listeners accept, STOPPING=1 when SIGTERM starts the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator

from aiohttp import web

from agi.controls import ami_mute
from agi.server import FastAgiServer, new_event_loop, settle_heap
from announcements.linkwatch import watch
from archiver.retention import RetentionSweeper
from storage.errors import StorageError
from storage.hmac_index import load_hmac_key
from storage.ledger import Ledger
from storage.nodes import Nodes

from . import cluster, compose
from .anchoring import POLL_SECONDS, SHUTDOWN_SECONDS, AnchorKeeper
from .config import Config
from .keys import AppKeys as K
from .nodeconfig import ASTERISK_ROLES
from .systemd import notify, watchdog
from .tls import server_context

log = logging.getLogger(__name__)

DRAIN_SECONDS = 20.0


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[K.config]
    db = await asyncio.to_thread(compose.open_database, config)
    app[K.db] = db
    app[K.ledger] = await asyncio.to_thread(Ledger, db)
    app[K.catalog] = await asyncio.to_thread(compose.catalog, config, db)
    try:
        app[K.hmac_key] = key = await asyncio.to_thread(load_hmac_key, config.privacy.hmac_key_file)
        app[K.nodes] = nodes = await asyncio.to_thread(Nodes, db)
        await asyncio.to_thread(cluster.check_hmac_key, nodes, key, config)
    except BaseException:
        await asyncio.to_thread(db.close)
        raise
    yield
    await asyncio.to_thread(db.close)


async def _archive(app: web.Application) -> AsyncIterator[None]:
    """The process's one Archive (boto3 clients take ~100 ms to make: made here, not
    on the first playback's clock) and the retention sweeper on it."""
    archive = await asyncio.to_thread(compose.build_archive, app[K.config])
    app[K.archive] = archive
    app[K.sweeper] = RetentionSweeper(app[K.catalog], app[K.ledger], archive)
    yield
    await asyncio.to_thread(archive.close)


async def _ami(app: web.Application) -> AsyncIterator[None]:
    client = compose.ami_client(app[K.config])
    client.start()
    app[K.ami] = client
    yield
    await client.close()


async def _archiver(app: web.Application) -> AsyncIterator[None]:
    config = app[K.config]
    # The sweeper destroys headers: on a pbx node it does not run (the retrieval node's does).
    archiver = compose.build_archiver(config, app[K.catalog], app[K.ledger], app[K.archive],
                                      sweeper=app[K.sweeper] if config.node.role == "all" else None)
    app[K.archiver] = archiver
    compose.connect_intake(app[K.ami], archiver)
    await archiver.start()
    yield
    await archiver.stop(DRAIN_SECONDS)


async def _fastagi(app: web.Application) -> AsyncIterator[None]:
    ami = app[K.ami]

    async def stop_mixmonitor(channel: str) -> bool:
        await ami.action("StopMixMonitor", Channel=channel)
        return True

    config = app[K.config]
    link_watch = watch(config.prompts.sounds_dir, asyncio.get_running_loop())
    routes = compose.agi_routes(config, ledger=app[K.ledger], catalog=app[K.catalog],
                                hmac_key=app[K.hmac_key], stop_mixmonitor=stop_mixmonitor,
                                mute_mixmonitor=ami_mute(ami), link_watch=link_watch)
    host, port = config.agi.address
    server = FastAgiServer(routes, host, port, read_timeout=config.agi.read_timeout,
                           allow=config.agi.allowed_peers)
    try:
        await server.start()
        app[K.agi] = server
        log.info("FastAGI listening on %s:%s", host, server.port)
        yield
        server.close()
        await server.drain(DRAIN_SECONDS)
    finally:
        if link_watch is not None:
            link_watch.close()


def build_app(config: Config) -> web.Application:
    from .web.routes import setup_routes

    app = web.Application()
    app[K.config] = config
    app[K.started] = time.time()
    app.cleanup_ctx.extend([_database, _archive, anchoring])
    if config.node.role in ASTERISK_ROLES:  # a retrieval node never talks to Asterisk
        app.cleanup_ctx.extend([_ami, _archiver, _fastagi])
    setup_routes(app)
    app.cleanup_ctx.append(cluster.cluster)
    return app


async def _stopping(app: web.Application) -> None:
    notify("STOPPING=1", "STATUS=stopping: draining calls in progress and the archive step running")


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The web listener's TLS context, or None for plain HTTP (raises tls.TlsError)."""
    web_ = config.web
    if web_.tls_cert is None or web_.tls_key is None:
        return None
    return server_context(web_.tls_cert, web_.tls_key)


async def anchoring(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: after the archive (its payload store holds the anchors), before
    AMI, the archiver and FastAGI, so it stops after them and anchors their last entries."""
    c = app[K.config].ledger
    keeper = AnchorKeeper(app[K.ledger], app[K.archive].payload, node=app[K.config].node.name, every=c.anchor_every,
                          interval=c.interval_seconds, retention=c.anchor_retention)
    app[K.anchors] = keeper
    task = asyncio.create_task(keeper.run(min(POLL_SECONDS, c.interval_seconds),
                                          check_on_loop=app[K.db].dialect == "sqlite"))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        anchor = await asyncio.wait_for(asyncio.to_thread(keeper.step, True), SHUTDOWN_SECONDS)
    except (StorageError, TimeoutError) as e:
        log.error("ledger not anchored at shutdown: %s", e or "timed out")
    else:
        if anchor is None and keeper.last_result is not None and keeper.last_result.ok:
            log.info("ledger head %s already anchored", keeper.anchored_seq)


def serve(config: Config) -> int:
    host, port = config.web.address
    context = tls_context(config)
    scheme = "http" if context is None else "https"
    app = build_app(config)
    app.cleanup_ctx.append(watchdog)
    app.on_shutdown.insert(0, _stopping)

    def announce(_: str) -> None:
        # aiohttp calls this once the web site is listening, after every cleanup_ctx
        # step (database ... FastAGI listener, web state) has started.
        what = f"web on {scheme}://{host}:{port}/  (role {config.node.role}"
        if config.node.role in ASTERISK_ROLES:
            what += f", FastAGI {config.agi.listen}, AMI {config.ami.host}:{config.ami.port}"
        what += ")"
        settle_heap()
        print(f"callvault: {what}", flush=True)
        notify("READY=1", f"STATUS=serving: {what}")

    notify("STATUS=starting: database, archive, AMI, archiver, FastAGI, web")
    web.run_app(app, host=host, port=port, print=announce, shutdown_timeout=DRAIN_SECONDS,
                handle_signals=True, loop=new_event_loop(), ssl_context=context)
    return 0
