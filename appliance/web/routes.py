"""HTTP routes: pages for people and a JSON API."""

from __future__ import annotations

import time

from aiohttp import web

from ..keys import AppKeys as K
from . import pages


def health(app: web.Application) -> dict:
    """What is connected and running: no personal data, safe to show unauthenticated."""
    ami = app.get(K.ami)
    agi = app.get(K.agi)
    archiver = app.get(K.archiver)
    return {
        "status": "ok",
        "uptime_s": round(time.time() - app[K.started], 1),
        "ami": ami.status.as_dict() if ami else {"state": "stopped"},
        "agi": agi.stats() if agi else {"listening": False},
        "archiver": archiver.stats.as_dict() if archiver else {"running": False},
    }


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(health(request.app))


async def index(request: web.Request) -> web.Response:
    return web.Response(text=pages.status_page(health(request.app)), content_type="text/html")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
