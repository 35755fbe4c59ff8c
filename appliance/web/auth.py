"""Who may do what: sessions, roles, CSRF, login throttling, security headers.

Every route declares its access with ``@public`` or ``@requires(permission, ...)``;
a route that declares nothing is refused (deny by default). The middleware answers
a request without a valid session with 401 (API, WebSocket) or a redirect to the
login page (pages), and a session without the permission with a bare 403 that says
nothing about whether the thing asked for exists.

CSRF: every session has its own random token, given to pages in
``<meta name=csrf-token>`` and to API clients by ``GET /api/me``. Every
state-changing request (POST, PUT, PATCH, DELETE) must carry it in the
``X-CSRF-Token`` header (or a ``csrf`` form field), and a request whose ``Origin``
is another site is refused whatever it carries. The login form, which has no
session yet, uses a double-submit cookie. Cookies are ``HttpOnly``,
``SameSite=Strict``, and ``Secure`` when the request came over HTTPS, which is also
when responses carry ``Strict-Transport-Security`` (for a request through a trusted
reverse proxy, the scheme the proxy saw: web/proxy.py).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Self
from urllib.parse import urlsplit

from aiohttp import web

from storage.users import Session, Users

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "cv_session"
LOGIN_COOKIE = "cv_login"
SESSION_TTL = 12 * 3600.0  # absolute
SESSION_IDLE = 30 * 60.0
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PERMISSIONS: dict[str, frozenset[str]] = {
    "agent": frozenset({"calls.own", "calls.control"}),
    "supervisor": frozenset({"calls.all", "recordings.read", "recordings.play"}),
    # ``subjects``: data-subject requests (find, export, erase, objections) and
    # legal-hold cases; officers only (POPIA's information officer).
    "officer": frozenset({"calls.all", "recordings.read", "recordings.play", "recordings.hold", "subjects"}),
    "admin": frozenset({"admin"}),
}
HOME = {"agent": "/agent", "supervisor": "/supervisor", "officer": "/officer", "admin": "/admin"}

HSTS = "max-age=31536000"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def public(handler: Handler) -> Handler:
    handler.access = ()  # type: ignore[attr-defined]
    return handler


def requires(*permissions: str) -> Callable[[Handler], Handler]:
    """The session's role must grant at least one of ``permissions``."""

    def mark(handler: Handler) -> Handler:
        handler.access = permissions  # type: ignore[attr-defined]
        return handler

    return mark


SESSION: web.RequestKey[Session | None] = web.RequestKey("session", object)  # type: ignore[arg-type]
ANY_ROLE = "*"  # any signed-in user


def allowed(session: Session | None, *permissions: str) -> bool:
    if session is None:
        return False
    return ANY_ROLE in permissions or bool(PERMISSIONS.get(session.user.role, frozenset()) & set(permissions))


def session_of(request: web.Request) -> Session:
    """The request's session (only for handlers behind ``requires``)."""
    session = request[SESSION]
    assert session is not None
    return session


# -- throttling ---------------------------------------------------------------------------

class Throttled(Exception):
    """A login refused before its password is hashed: 429 (this name or address) or 503 (overload)."""

    def __init__(self, status: int, retry_after: float, why: str):
        super().__init__(why)
        self.status, self.retry_after = status, max(1, math.ceil(retry_after))


class Attempt:
    """A reserved login slot: report the outcome, then ``release`` (``with`` does it)."""

    def __init__(self, throttle: LoginThrottle, name: str, addr: str):
        self.throttle, self.name, self.addr = throttle, name, addr

    def failed(self) -> None:
        self.throttle._failed(self.name, self.addr)

    def succeeded(self) -> None:
        self.throttle._fails.pop(("name", self.name), None)

    def release(self) -> None:
        self.throttle._release(self.name, self.addr)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LoginThrottle:
    """Failed logins slow down further tries, per user name and per client address.

    After ``free`` failures within ``window`` seconds, each further try must wait
    ``base * 2**(extra failures)`` seconds (at most ``cap``) after the last failure.
    ``attempt`` checks and reserves in one step on the event loop, before the password
    is hashed: a try still in flight counts as a failure for the check, and at most
    ``per_name`` tries per user name, ``per_addr`` per client address and ``total``
    in all may wait for or run a hash at once. So parallel guesses cannot slip past
    the count, and a flood cannot queue scrypt work (~128 MiB each) without bound.
    In memory, per process: each node of a cluster throttles on its own.
    """

    def __init__(self, *, window: float = 900.0, free_per_name: int = 5, free_per_addr: int = 20,
                 base: float = 15.0, cap: float = 900.0, max_keys: int = 10_000,
                 per_name: int = 2, per_addr: int = 8, total: int = 32):
        self.window, self.base, self.cap, self.max_keys = window, base, cap, max_keys
        self.free = {"name": free_per_name, "addr": free_per_addr}
        self.limit = {"name": per_name, "addr": per_addr}
        self.total = total
        self._fails: dict[tuple[str, str], deque[float]] = {}
        self._busy: dict[tuple[str, str], int] = {}  # tries reserved and not yet released
        self._busy_total = 0
        self.hashing = asyncio.Semaphore(2)  # password hashes computed at once (create inside the loop)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._fails.get(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def retry_after(self, name: str, addr: str, now: float | None = None) -> float:
        """Seconds until a login may be tried (0: now), counting tries in flight as failures."""
        now = time.time() if now is None else now
        wait = 0.0
        for kind, value in (("name", name), ("addr", addr)):
            q = self._recent((kind, value), now)
            busy = self._busy.get((kind, value), 0)
            extra = len(q) + busy - self.free[kind]
            if extra >= 0:
                last = now if busy else q[-1]
                wait = max(wait, last + min(self.cap, self.base * 2 ** extra) - now)
        return max(0.0, wait)

    def attempt(self, name: str, addr: str, now: float | None = None) -> Attempt:
        """Reserve a try for ``name`` from ``addr`` or raise ``Throttled`` (no await: atomic)."""
        if self._busy_total >= self.total:
            raise Throttled(503, 1, "too many sign-ins in progress")
        for kind, value in (("name", name), ("addr", addr)):
            if self._busy.get((kind, value), 0) >= self.limit[kind]:
                raise Throttled(429, 1, f"sign-ins for this {kind} already in progress")
        wait = self.retry_after(name, addr, now)
        if wait > 0:
            raise Throttled(429, wait, "too many failed sign-ins")
        for key in (("name", name), ("addr", addr)):
            self._busy[key] = self._busy.get(key, 0) + 1
        self._busy_total += 1
        return Attempt(self, name, addr)

    def _release(self, name: str, addr: str) -> None:
        for key in (("name", name), ("addr", addr)):
            left = self._busy.get(key, 0) - 1
            if left > 0:
                self._busy[key] = left
            else:
                self._busy.pop(key, None)
        self._busy_total -= 1

    def _failed(self, name: str, addr: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if len(self._fails) >= self.max_keys:
            for key in [k for k, q in self._fails.items() if not q or now - q[-1] > self.window]:
                del self._fails[key]
        for key in (("name", name), ("addr", addr)):
            q = self._recent(key, now)
            q.append(now)
            self._fails[key] = q


# -- the middleware --------------------------------------------------------------------------

def same_origin(request: web.Request) -> bool:
    """False only when the browser says the request comes from another origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a cross-site browser request (or a very old browser)
    if origin == "null":
        return False
    u = urlsplit(origin)
    return u.scheme == request.scheme and u.netloc == request.host


async def _csrf_token_given(request: web.Request) -> str:
    token = request.headers.get("X-CSRF-Token", "")
    if not token and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        value = form.get("csrf", "")
        token = value if isinstance(value, str) else ""
    return token


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/ws"


def deny(request: web.Request, status: int = 403) -> web.Response:
    if status == 401:
        if _is_api(request):
            return web.json_response({"error": "authentication required"}, status=401,
                                     headers={"WWW-Authenticate": 'Cookie realm="callvault"'})
        target = request.path_qs if request.method == "GET" else "/"
        raise web.HTTPSeeOther(f"/login?next={_safe_next(target)}")
    if _is_api(request):
        return web.json_response({"error": "forbidden"}, status=403)
    return web.Response(text="403: forbidden", status=403)


def _safe_next(target: str) -> str:
    from urllib.parse import quote

    return quote(target if target.startswith("/") and not target.startswith("//") else "/", safe="")


def make_middleware(users_key: web.AppKey) -> Callable:
    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.cookies.get(SESSION_COOKIE, "")
        session = None
        if token:
            users: Users = request.app[users_key]
            session = await asyncio.to_thread(users.session, token, idle=SESSION_IDLE)
        request[SESSION] = session
        route = request.match_info.route
        access = getattr(request.match_info.handler, "access", None)
        if request.path.startswith("/static/") or getattr(route, "status", None) in (404, 405):
            access = ()  # static files and aiohttp's own 404/405 answers
        if access is None:
            return deny(request)
        if request.method in UNSAFE:
            if not same_origin(request):
                return deny(request)
            if session is not None and access:
                given = await _csrf_token_given(request)
                if not given or not hmac.compare_digest(given, session.csrf):
                    return deny(request)
        if access:
            if session is None:
                return deny(request, 401)
            if not allowed(session, *access):
                return deny(request)
        response = await handler(request)
        return response

    return auth_middleware


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:
        response = e
        _headers(request, response)
        raise
    _headers(request, response)
    return response


def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Chromium send Origin: null
    h.setdefault("X-Frame-Options", "DENY")
    if request.secure:  # over HTTPS, natively or through a trusted proxy (web/proxy.py)
        h.setdefault("Strict-Transport-Security", HSTS)
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure,
                        path="/", max_age=int(SESSION_TTL))


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


def login_csrf(request: web.Request) -> tuple[str, bool]:
    """The login form's double-submit token (the cookie's value) and whether it is new."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    if len(token) >= 32:
        return token, False
    return secrets.token_urlsafe(32), True


def set_login_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure,
                        path="/login")
