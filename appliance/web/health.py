"""The appliance's health: up/down for anyone (`/healthz`, the status page), details for admins.

Up means each part a call's recording depends on answers: the AMI session is logged
in, the archive storage answers a probe, the database answers a query. The probe
result is kept ``STORAGE_CHECK_EVERY`` seconds, so a load balancer polling `/healthz`
costs S3 at most one probe per interval; one probe runs at a time.

The public answer names parts only ("storage"), never versions, addresses, routes,
bucket names or error texts: those are in ``details``, for the admin page and
``/api/admin/health``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from ..keys import AppKeys as K
from ..nodeconfig import ASTERISK_ROLES
from .state import WebKeys as W

PARTS = ("ami", "storage", "database")




async def down_parts(app: web.Application) -> list[str]:
    """The parts (of ``PARTS``) that do not answer now; empty when up."""
    ami = app.get(K.ami)
    probe = app[W.probe]
    # A retrieval node has no AMI session: it cannot be down.
    ami_up = bool(ami and ami.connected) or app[K.config].node.role not in ASTERISK_ROLES
    storage_up, db_up = await asyncio.gather(probe.check_storage(), probe.check_database())
    return [part for part, up in zip(PARTS, (ami_up, storage_up, db_up)) if not up]


def details(app: web.Application) -> dict[str, Any]:
    """What is connected and running, with versions and last errors: for admins only."""
    ami = app.get(K.ami)
    agi = app.get(K.agi)
    archiver = app.get(K.archiver)
    return {
        "node": {"name": app[K.config].node.name, "role": app[K.config].node.role},
        "uptime_s": round(time.time() - app[K.started], 1),
        "ami": ami.status.as_dict() if ami else {"state": "stopped"},
        "agi": agi.stats() if agi else {"listening": False},
        "archiver": archiver.stats.as_dict() if archiver else {"running": False},
    }
