"""Typed keys for the state the aiohttp application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from agi.ami import AmiClient
    from agi.server import FastAgiServer
    from archiver.archive import Archive
    from archiver.retention import RetentionSweeper
    from archiver.service import Archiver
    from storage.catalog import Catalog
    from storage.db import Database
    from storage.ledger import Ledger
    from storage.nodes import Nodes

    from .anchoring import AnchorKeeper
    from .config import Config
    from .livebus import LiveBus


class AppKeys:
    config: "web.AppKey[Config]" = web.AppKey("config")
    started: web.AppKey[float] = web.AppKey("started", float)
    db: "web.AppKey[Database]" = web.AppKey("db")
    ledger: "web.AppKey[Ledger]" = web.AppKey("ledger")
    catalog: "web.AppKey[Catalog]" = web.AppKey("catalog")
    hmac_key: web.AppKey[bytes] = web.AppKey("hmac_key", bytes)
    ami: "web.AppKey[AmiClient]" = web.AppKey("ami")
    agi: "web.AppKey[FastAgiServer]" = web.AppKey("agi")
    archive: "web.AppKey[Archive]" = web.AppKey("archive")
    sweeper: "web.AppKey[RetentionSweeper]" = web.AppKey("sweeper")
    archiver: "web.AppKey[Archiver]" = web.AppKey("archiver")
    anchors: "web.AppKey[AnchorKeeper]" = web.AppKey("anchors")
    nodes: "web.AppKey[Nodes]" = web.AppKey("nodes")
    bus: "web.AppKey[LiveBus]" = web.AppKey("bus")
