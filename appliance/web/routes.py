"""HTTP routes: pages for people, a JSON API, a WebSocket for live calls, metrics.

``setup_routes(app)`` is the entry point ``appliance.service.build_app`` calls. It adds
the web app's own lifecycle step (users, live calls, retrieval), started after the
database and the AMI session and stopped before them.

Public (no sign-in): ``/`` (up or down), ``/healthz`` (the same as JSON), ``/metrics`` (a bearer token when
``[web] metrics_token`` is set), ``/api/openapi.json``, ``/login``, ``/static/``. None
of them shows personal data. Everything else needs a session with the right role
(``auth.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import WSCloseCode, web

from storage.users import Users

from ..keys import AppKeys as K
from . import pages
from .admin import ADMIN, Admin, add_admin_routes
from .api import add_api_routes
from .auth import (
    SESSION_IDLE,
    LoginThrottle,
    allowed,
    make_middleware,
    public,
    requires,
    same_origin,
    security_headers,
    session_of,
)
from .cases_views import add_case_routes
from .erasure_views import add_erasure_routes
from .health import down_parts
from .live import LiveCalls
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .openapi import document
from .probe import Probe
from .proxy import make_middleware as proxy_middleware
from .reports_views import add_report_routes
from .retrieval import Retrieval
from .state import WebKeys as W
from .subject_views import add_subject_routes
from .views import add_view_routes

STATIC = Path(__file__).resolve().parent / "static"
SESSION_RECHECK = 5.0


@public
async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "up"}``, or 503 ``{"status": "down", "down": [parts]}``: nothing more."""
    down = await down_parts(request.app)
    if down:
        return web.json_response({"status": "down", "down": down}, status=503)
    return web.json_response({"status": "up"})


@public
async def index(request: web.Request) -> web.Response:
    down = await down_parts(request.app)
    return web.Response(text=pages.status_page(down), content_type="text/html", status=503 if down else 200)


@public
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    token = app[K.config].web.metrics_token
    if token is not None and not _bearer_matches(request, token.reveal()):
        return web.Response(status=401, text="a bearer token is required for /metrics\n",
                            headers={"WWW-Authenticate": 'Bearer realm="callvault metrics"'})
    ami, agi, archiver, live = app.get(K.ami), app.get(K.agi), app.get(K.archiver), app.get(W.live)
    anchors = app.get(K.anchors)
    body = await app[W.metrics].render(
        catalog=app.get(K.catalog), ami_connected=bool(ami and ami.connected), agi=agi.stats() if agi else {},
        archiver=archiver.stats.as_dict() if archiver else {},
        live_calls=sum(1 for c in live.calls.values() if c.ended_at is None) if live else 0,
        anchors=anchors.stats() if anchors else None, ami_events=ami.events_received if ami else None)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def _bearer_matches(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@public
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


@requires("calls.own", "calls.all")
async def live_socket(request: web.Request) -> web.StreamResponse:
    """Live call updates: a snapshot, then one message per change (``{"type": "call", ...}``;
    ``{"type": "gone", "call_id": ...}`` when the call was transferred away from this agent).

    The session is checked again every ``SESSION_RECHECK`` seconds whatever the traffic,
    and the socket closed (1008) once it is gone (signed out elsewhere, expired, the
    user disabled) or the user's role changed; signing out of this session closes it
    at once."""
    if not same_origin(request):  # a WebSocket is a GET: no CSRF token, so the origin decides
        return web.json_response({"error": "forbidden"}, status=403)
    session, live, users = session_of(request), request.app[W.live], request.app[W.users]
    token = request.cookies.get("cv_session", "")
    sees_all = allowed(session, "calls.all")
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    sub = live.subscribe(session.user, sees_all, session.id)
    sub.ws = ws

    async def send() -> None:
        await ws.send_json({"type": "snapshot", "calls": [c.public() for c in live.visible(session.user, sees_all)]})
        while True:
            await ws.send_json(await sub.queue.get())

    async def still_valid() -> bool:
        if sub.ended.is_set():
            return False
        current = await asyncio.to_thread(users.session, token, idle=SESSION_IDLE)
        return current is not None and current.user.role == session.user.role

    async def watch() -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(sub.ended.wait(), SESSION_RECHECK)
            if not await still_valid():
                sub.closing = True
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session ended")
                return

    sender, watcher = asyncio.create_task(send()), asyncio.create_task(watch())
    try:
        async for _ in ws:  # the page sends nothing; this waits for it to go away
            pass
    finally:
        live.unsubscribe(sub)
        sender.cancel()
        if not sub.closing:
            watcher.cancel()  # else let it finish the close handshake it started
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await asyncio.gather(sender, watcher)
    return ws


async def _web_state(app: web.Application) -> AsyncIterator[None]:
    metrics_ = Metrics(app[K.archive], app[K.config].spool.dir)
    app[W.metrics] = metrics_
    app[W.throttle] = LoginThrottle()
    app[W.probe] = Probe(app)
    users = await asyncio.to_thread(Users, app[K.db])
    app[W.users] = users
    retrieval = Retrieval(app[K.config], app[K.catalog], app[K.ledger], app[K.archive])
    await retrieval.start()
    app[W.retrieval] = retrieval
    live = LiveCalls(users=users, catalog=app[K.catalog], ledger=app[K.ledger], metrics=metrics_)
    await live.start(app.get(K.ami))  # none on a retrieval node
    app[W.live] = live
    app[ADMIN] = Admin(app)
    yield
    await live.stop()
    retrieval.close()


async def _close_sockets(app: web.Application) -> None:
    live = app.get(W.live)
    for sub in live.subscribers() if live else []:
        ws = getattr(sub, "ws", None)
        if ws is not None:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def setup_routes(app: web.Application) -> None:
    web_ = app[K.config].web
    # The proxy middleware runs first: everything after it sees the client's scheme and address.
    app.middlewares.extend([proxy_middleware(web_.trusted_proxies, web_.proxy_headers), security_headers,
                            make_middleware(W.users)])
    app.cleanup_ctx.append(_web_state)
    app.on_shutdown.append(_close_sockets)
    r = app.router
    r.add_get("/", index)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/ws", live_socket)
    r.add_static("/static/", STATIC, append_version=False)
    add_view_routes(app)
    add_api_routes(app)
    add_admin_routes(app)
    add_case_routes(app)
    add_subject_routes(app)
    add_report_routes(app)
    add_erasure_routes(app)
