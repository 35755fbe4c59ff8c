"""HTTPS: behind a private nginx (TLS reverse proxy) and with native TLS.

In headless Chromium a user signs in over https through nginx when nginx is listed
in ``[web] trusted_proxies`` (Secure cookie, HSTS), and with native TLS; without
``trusted_proxies`` the same proxy set-up fails the origin check (403), as it did
before the app knew about proxies. Forwarding headers from a peer that is not
trusted change nothing: not the scheme, not the address the login throttle counts.
"""

from __future__ import annotations

import contextlib

import aiohttp
import pytest
from nginxproxy import nginx_proxy, self_signed

from appliance.web.state import WebKeys as W

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SPOOFED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
           "Forwarded": "for=203.0.113.9;proto=https"}


@contextlib.asynccontextmanager
async def chromium():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(ignore_https_errors=True)
            context.set_default_timeout(15_000)
            yield context, await context.new_page()
        finally:
            await browser.close()


async def browser_sign_in(url: str, name: str, user_password) -> tuple[int, dict, dict]:
    """Sign in through the login form: (status of the page it ends on, that page's headers,
    the session cookie as Chromium keeps it or {})."""
    async with chromium() as (context, page):
        await page.goto(url + "/login")
        await page.fill("#name", name)
        await page.fill("#password", user_password(name))
        async with page.expect_navigation() as nav:
            await page.click("#sign-in")
        response = await nav.value
        cookies = {c["name"]: c for c in await context.cookies()}
        return response.status, await response.all_headers(), cookies.get("cv_session", {})


async def test_login_through_a_trusted_tls_proxy_gets_a_secure_cookie_and_hsts(webapp, tmp_path, user_password):
    async with webapp(web_={"trusted_proxies": ("127.0.0.1",)}) as h:
        with nginx_proxy(tmp_path / "nginx", h.config.web.address[1]) as url:
            status, headers, cookie = await browser_sign_in(url, "alice", user_password)
    assert status == 200 and url.startswith("https://")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert headers["strict-transport-security"] == "max-age=31536000"


async def test_login_through_an_untrusted_tls_proxy_is_refused(webapp, tmp_path, user_password):
    """The finding: the browser's Origin is https, the app sees http from nginx."""
    async with webapp() as h:
        with nginx_proxy(tmp_path / "nginx", h.config.web.address[1]) as url:
            status, headers, cookie = await browser_sign_in(url, "alice", user_password)
    assert status == 403 and cookie == {}
    assert "strict-transport-security" not in headers


async def test_login_with_native_tls(webapp, tmp_path, user_password):
    cert, key = self_signed(tmp_path / "tls")
    async with webapp(web_={"tls_cert": cert, "tls_key": key}) as h:
        assert h.url.startswith("https://")
        status, headers, cookie = await browser_sign_in(h.url, "alice", user_password)
    assert status == 200 and cookie["secure"]
    assert headers["strict-transport-security"] == "max-age=31536000"


async def _login_response(h, headers: dict, password: str) -> tuple[aiohttp.ClientResponse, int]:
    """GET /login then POST a failing sign-in with ``headers``: (the GET's response, the POST's status).
    The login cookie is sent back by hand: a client jar keeps a Secure cookie from plain http."""
    async with aiohttp.ClientSession(h.url, headers=headers) as c:
        async with c.get("/login") as page:
            await page.read()
        token = page.cookies["cv_login"].value
        async with c.post("/login", data={"csrf": token, "name": "bob", "password": password},
                          headers={"Cookie": f"cv_login={token}"}, allow_redirects=False) as r:
            await r.read()
            return page, r.status


async def test_forwarding_headers_from_an_untrusted_peer_change_nothing(webapp):
    async with webapp(web_={"trusted_proxies": ("10.0.0.0/8",)}) as h:
        page, status = await _login_response(h, SPOOFED, "wrong-password")
        assert status == 401
        assert "Secure" not in page.headers["Set-Cookie"] and "Strict-Transport-Security" not in page.headers
        throttled = {value for kind, value in h.app[W.throttle]._fails if kind == "addr"}
        assert throttled == {"127.0.0.1"}
        # And an https Origin does not match the http the app was really reached over.
        _, status = await _login_response(h, {**SPOOFED, "Origin": h.url.replace("http:", "https:")}, "x")
        assert status == 403


async def test_a_trusted_proxy_s_forwarded_header_gives_the_client_address_and_scheme(webapp):
    async with webapp(web_={"trusted_proxies": ("127.0.0.1",), "proxy_headers": "forwarded"}) as h:
        # The left entry was written by the client (ignored: only the nearest hop's proxy is trusted);
        # X-Forwarded-For is not the kind this proxy sets, so it is ignored too.
        headers = {"Forwarded": 'for=192.0.2.1;proto=http, for="203.0.113.9:4711";proto=https',
                   "X-Forwarded-For": "198.51.100.7"}
        page, status = await _login_response(h, headers, "wrong-password")
        assert status == 401
        assert "Secure" in page.headers["Set-Cookie"]
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
        throttled = {value for kind, value in h.app[W.throttle]._fails if kind == "addr"}
        assert throttled == {"203.0.113.9"}
