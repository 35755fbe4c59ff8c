"""Typed keys for the web app's state (next to ``appliance.keys.AppKeys``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from storage.users import Users

    from .auth import LoginThrottle
    from .live import LiveCalls
    from .metrics import Metrics
    from .probe import Probe
    from .retrieval import Retrieval


class WebKeys:
    users: web.AppKey[Users] = web.AppKey("web.users")
    live: web.AppKey[LiveCalls] = web.AppKey("web.live")
    retrieval: web.AppKey[Retrieval] = web.AppKey("web.retrieval")
    metrics: web.AppKey[Metrics] = web.AppKey("web.metrics")
    throttle: web.AppKey[LoginThrottle] = web.AppKey("web.throttle")
    probe: web.AppKey[Probe] = web.AppKey("web.probe")
