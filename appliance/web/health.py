"""The appliance's health as `/healthz`, the status page and the admin page show it."""

from __future__ import annotations

import time

from aiohttp import web

from ..keys import AppKeys as K


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
