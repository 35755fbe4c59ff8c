"""Access control over HTTP against the running appliance: sessions, roles, CSRF, throttling.

A denied request is a bare 403; not signed in is 401 (API) or a redirect (pages);
agents see only their own calls and no recordings; a state-changing request without
the session's CSRF token, or from another origin, is refused.
"""

from __future__ import annotations

import asyncio

import pytest

from agi.ami import AmiEvent
from appliance.keys import AppKeys as K
from appliance.web.state import WebKeys as W

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]


def fake_call(app, linkedid: str, did: str, *, consent: str = "granted", record: bool = True) -> str:
    """Feed the live tracker the AMI events of a call (the real-Asterisk path is in the browser test)."""
    live = app[W.live]
    rid = "r" + linkedid.replace("-", "")[-24:]
    channel = f"Local/{did}@callvault-lab-0000beef;2"
    live.handle(AmiEvent("Newchannel", {"Uniqueid": linkedid, "Linkedid": linkedid, "Channel": channel,
                                        "Exten": did, "CallerIDNum": "27215550123"}))
    live.handle(AmiEvent("UserEvent", {"UserEvent": "CallvaultConsent", "Uniqueid": linkedid, "Linkedid": linkedid,
                                       "Channel": channel, "Consent": consent, "Record": "yes" if record else "no",
                                       "RecordingId": rid if record else "", "Rule": "za-opt-in"}))
    return rid


async def test_unauthenticated_api_is_401_and_pages_redirect_to_login(webapp):
    async with webapp() as h:
        anon = await h.client()
        for path in ("/api/calls", "/api/recordings", "/api/me", "/api/admin/health", "/api/recordings/r1/audio"):
            async with anon.get(path) as r:
                assert r.status == 401, path
                assert await r.json() == {"error": "authentication required"}
        async with anon.post("/api/calls/x/pause", json={"paused": True}) as r:
            assert r.status == 401
        for path in ("/agent", "/supervisor", "/admin"):
            async with anon.get(path, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].startswith("/login?next=")
        async with anon.get("/ws") as r:
            assert r.status == 401
        # Public: status page, health, metrics, the OpenAPI document.
        async with anon.get("/") as r:
            text = await r.text()
            assert r.status == 200 and "callvault is" in text and "<title>callvault</title>" in text
        async with anon.get("/healthz") as r:
            assert await r.json() == {"status": "up"}
        async with anon.get("/api/openapi.json") as r:
            assert (await r.json())["openapi"].startswith("3.")
        async with anon.get("/metrics") as r:
            assert "callvault_archive_queue_depth" in await r.text()


async def test_session_cookie_is_httponly_samesite_and_login_needs_its_token(webapp):
    async with webapp() as h:
        c = await h.client()
        async with c.get("/login") as r:
            assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
            assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
        token = next(k.value for k in c.cookie_jar if k.key == "cv_login")
        # Without the double-submit token: refused before the password is even looked at.
        async with c.post("/login", data={"name": "alice", "password": "correct-horse-alice"},
                          allow_redirects=False) as r:
            assert r.status == 403
        async with c.post("/login", data={"csrf": token, "name": "alice", "password": "correct-horse-alice"},
                          allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/agent"
            cookie = r.headers["Set-Cookie"]
            assert "cv_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        async with c.get("/agent") as r:
            assert r.status == 200 and 'name="csrf-token"' in await r.text()


async def test_agent_sees_only_own_calls_and_no_recordings(webapp):
    async with webapp() as h:
        app = h.app
        mine = "lab-auth-mine-1"
        other = "lab-auth-other-1"
        fake_call(app, mine, "27215550100")  # alice's DID
        fake_call(app, other, "27215550199")  # bob's DID
        rid, _ = await asyncio.to_thread(h.recording, 5, agent="bob")
        alice = await h.client("alice")
        async with alice.get("/api/calls") as r:
            calls = (await r.json())["calls"]
            assert [c["call_id"] for c in calls] == [mine]
            assert calls[0]["agents"] == ["alice"] and calls[0]["consent"] == "granted"
        async with alice.get(f"/api/calls/{mine}") as r:
            assert r.status == 200
        # Another agent's call and a call that does not exist: the same bare 403.
        for call_id in (other, "no-such-call"):
            async with alice.get(f"/api/calls/{call_id}") as r:
                assert r.status == 403 and await r.json() == {"error": "forbidden"}
            async with alice.post(f"/api/calls/{call_id}/pause", json={"paused": True},
                                  headers={"X-CSRF-Token": alice.csrf}) as r:
                assert r.status == 403 and await r.json() == {"error": "forbidden"}
        for method, path in (("GET", "/api/recordings"), ("GET", f"/api/recordings/{rid}"),
                             ("GET", f"/api/recordings/{rid}/audio"), ("GET", f"/api/recordings/{rid}/download"),
                             ("GET", "/api/recordings/r0000/audio"), ("POST", f"/api/recordings/{rid}/access"),
                             ("GET", "/supervisor"), ("GET", "/admin"), ("GET", "/api/admin/health")):
            async with alice.request(method, path, json={"purpose": "play", "reason": "curious"},
                                     headers={"X-CSRF-Token": alice.csrf}) as r:
                assert r.status == 403, (method, path)
                assert "bob" not in await r.text() and rid not in await r.text()
        # The supervisor sees both calls; the admin sees no calls and no recordings.
        sam = await h.client("sam")
        async with sam.get("/api/calls") as r:
            assert {c["call_id"] for c in (await r.json())["calls"]} == {mine, other}
        async with sam.get("/api/calls/no-such-call") as r:
            assert r.status == 404
        ada = await h.client("ada")
        for path in ("/api/calls", "/api/recordings", f"/api/recordings/{rid}/audio", "/agent"):
            async with ada.get(path) as r:
                assert r.status == 403, path


async def test_state_changing_requests_need_the_csrf_token_and_same_origin(webapp):
    async with webapp() as h:
        fake_call(h.app, "lab-csrf-1", "27215550100")
        alice = await h.client("alice")
        path = "/api/calls/lab-csrf-1/pause"
        async with alice.post(path, json={"paused": True}) as r:
            assert r.status == 403  # no token
        async with alice.post(path, json={"paused": True}, headers={"X-CSRF-Token": "x" * 43}) as r:
            assert r.status == 403  # wrong token
        async with alice.post(path, json={"paused": True},
                              headers={"X-CSRF-Token": alice.csrf, "Origin": "http://evil.example"}) as r:
            assert r.status == 403  # right token, another site
        async with alice.post(path, json={"paused": True}, headers={"X-CSRF-Token": alice.csrf}) as r:
            # Accepted by the access checks; the call is not a real channel, so Asterisk says no.
            assert r.status == 409, await r.text()
        async with alice.post("/logout", allow_redirects=False) as r:
            assert r.status == 403  # logging out is state-changing too
        async with alice.post("/logout", data={"csrf": alice.csrf}, allow_redirects=False) as r:
            assert r.status == 303
        async with alice.get("/api/me") as r:
            assert r.status == 401


async def test_failed_logins_are_throttled_and_disabled_users_lose_their_sessions(webapp):
    async with webapp() as h:
        c = await h.client()
        statuses = [await h.login(c, "bob", "wrong-password-x") for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        # Throttled: even the right password waits, and no scrypt is spent on it.
        assert await h.login(c, "bob") == 429
        # Another user from the same address is not locked out yet.
        assert await h.login(c, "sam") == 303

        alice = await h.client("alice")
        async with alice.get("/api/me") as r:
            assert r.status == 200
        await asyncio.to_thread(h.app[W.users].disable, "alice")
        async with alice.get("/api/me") as r:
            assert r.status == 401
        assert await h.login(await h.client(), "alice") == 401


async def test_a_node_without_the_identity_refuses_playback_with_a_clear_message(webapp):
    async with webapp(identity=False) as h:
        rid, _ = await asyncio.to_thread(h.recording, 3)
        sam = await h.client("sam")
        async with sam.post(f"/api/recordings/{rid}/access", json={"purpose": "play", "reason": "quality check"},
                            headers={"X-CSRF-Token": sam.csrf}) as r:
            assert r.status == 409
            message = (await r.json())["error"]
            assert "no private key" in message and "identity_file" in message and "retrieval node" in message
        async with sam.get("/supervisor") as r:
            assert "no private key" in await r.text()
        # No audit entry: nothing was accessed.
        assert not h.app[K.ledger].find(recording_id=rid, kind="audit.play")
        # The original age file needs no key and can still be exported (audited).
        async with sam.post(f"/api/recordings/{rid}/access",
                            json={"purpose": "download", "format": "age", "reason": "DSAR export"},
                            headers={"X-CSRF-Token": sam.csrf}) as r:
            assert r.status == 201
            url = (await r.json())["url"]
        async with sam.get(url) as r:
            body = await r.read()
            assert r.status == 200 and body.startswith(b"age-encryption.org/v1\n")
        ada = await h.client("ada")
        async with ada.get("/api/admin/health") as r:
            assert (await r.json())["keys"]["playback"] is False
