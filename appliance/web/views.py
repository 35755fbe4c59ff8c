"""Page handlers: sign in and out, the agent, supervisor and admin pages."""

from __future__ import annotations

import asyncio
import hmac
import logging
from urllib.parse import urlsplit

from aiohttp import web

from . import pages
from .admin import ADMIN
from .api import find_recordings
from .auth import (
    ANY_ROLE,
    SESSION,
    SESSION_TTL,
    Throttled,
    allowed,
    clear_session_cookie,
    login_csrf,
    public,
    requires,
    session_of,
    set_login_cookie,
    set_session_cookie,
)
from .jsonio import BadRequest
from .state import WebKeys as W

log = logging.getLogger(__name__)

def _next(value: str) -> str:
    u = urlsplit(value or "")
    if not value.startswith("/") or value.startswith("//") or u.scheme or u.netloc or "\\" in value:
        return ""
    return value


def _login_response(request: web.Request, *, message: str = "", status: int = 200,
                    next_url: str = "") -> web.Response:
    token, new = login_csrf(request)
    response = web.Response(text=pages.login_page(csrf=token, next_url=next_url, message=message),
                            content_type="text/html", status=status)
    if new:
        set_login_cookie(request, response, token)
    return response


@public
async def login_form(request: web.Request) -> web.Response:
    session = request[SESSION]
    if session is not None:
        raise web.HTTPSeeOther(pages.home_for(session))
    return _login_response(request, next_url=_next(request.query.get("next", "")))


@public
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    get = lambda k: form.get(k) if isinstance(form.get(k), str) else ""
    cookie = request.cookies.get("cv_login", "")
    given = get("csrf")
    if not cookie or not given or not hmac.compare_digest(cookie, given):
        return web.Response(text="403: forbidden", status=403)
    name, password, next_url = get("name").strip().lower()[:64], get("password")[:1024], _next(get("next"))
    throttle, users = request.app[W.throttle], request.app[W.users]
    addr = request.remote or ""
    try:
        attempt = throttle.attempt(name, addr)
    except Throttled as e:
        message = (f"Too many failed sign-ins. Try again in {e.retry_after} s." if e.status == 429
                   else f"Too many sign-ins in progress. Try again in {e.retry_after} s.")
        response = _login_response(request, status=e.status, next_url=next_url, message=message)
        response.headers["Retry-After"] = str(e.retry_after)
        return response
    with attempt:
        async with throttle.hashing:  # scrypt costs ~128 MiB and ~0.4 s: a few at a time
            user = await asyncio.to_thread(users.authenticate, name, password)
        if user is None:
            attempt.failed()
            log.info("sign-in refused for %r from %s", name, addr)
            return _login_response(request, status=401, next_url=next_url, message="Wrong user name or password.")
        attempt.succeeded()
    token, session = await asyncio.to_thread(users.create_session, user.name, SESSION_TTL)
    log.info("%s signed in from %s", user.name, addr)
    response = web.HTTPSeeOther(next_url or pages.home_for(session))
    set_session_cookie(request, response, token)
    response.del_cookie("cv_login", path="/login")
    raise response


@requires(ANY_ROLE)
async def logout(request: web.Request) -> web.Response:
    token = request.cookies.get("cv_session", "")
    await asyncio.to_thread(request.app[W.users].end_session, token)
    request.app[W.live].end_session(session_of(request).id)
    response = web.HTTPSeeOther("/login")
    clear_session_cookie(response)
    raise response


@requires("calls.own", "calls.all")
async def agent_view(request: web.Request) -> web.Response:
    session = session_of(request)
    calls = request.app[W.live].visible(session.user, allowed(session, "calls.all"))
    html = pages.agent_page(session, [c.public() for c in calls], can_pause=allowed(session, "calls.control"))
    return web.Response(text=html, content_type="text/html")


@requires("recordings.read")
async def supervisor_view(request: web.Request) -> web.Response:
    session = session_of(request)
    query = {k: request.query.get(k, "")[:100] for k in ("since", "until", "agent", "phone", "consent", "did")}
    results, message = None, ""
    try:  # no criteria: the latest recordings
        results = await find_recordings(request)
    except BadRequest as e:
        message = str(e)
    users = await asyncio.to_thread(request.app[W.users].list)
    agents = [u.name for u in users if u.role == "agent"]
    retrieval = request.app[W.retrieval]
    playback = ("Enter a reason, then press Play or a download button." if retrieval.identities is not None
                else retrieval.refusal)
    html = pages.supervisor_page(session, query, results, message, agents,
                                 can_hold=allowed(session, "recordings.hold"), playback=playback)
    return web.Response(text=html, content_type="text/html", status=400 if message else 200)


@requires("admin")
async def admin_view(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    html = pages.admin_page(session_of(request), await admin.health(), admin.dialplan())
    return web.Response(text=html, content_type="text/html")


def add_view_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/agent", agent_view)
    r.add_get("/supervisor", supervisor_view)
    r.add_get("/admin", admin_view)
