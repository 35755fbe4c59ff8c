"""Attacks on the web app, against the running appliance: parallel password guessing,
agents whose device names share a prefix, sockets outliving their session, and what
the public pages tell a stranger."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time

import aiohttp
import pytest
from waiting import until

from agi.ami import AmiEvent
from appliance.keys import AppKeys as K
from appliance.web.state import WebKeys as W
from storage.catalog import Recording

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]


def ev(name: str, **fields: str) -> AmiEvent:
    return AmiEvent(name, {"Event": name, **fields})


async def test_forty_parallel_guesses_hash_at_most_two_and_others_still_sign_in(webapp):
    async with webapp() as h:
        attacker = await h.client()
        async with attacker.get("/login") as r:
            assert r.status == 200
        token = next(c.value for c in attacker.cookie_jar if c.key == "cv_login")

        async def guess(i: int) -> tuple[int, str | None]:
            async with attacker.post("/login", data={"csrf": token, "name": "bob", "password": f"wrong-{i}"},
                                     allow_redirects=False) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        # Someone else, from another address, signs in while the flood is on.
        other = aiohttp.ClientSession(h.url, connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)),
                                      cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Origin": h.url})
        h.clients.append(other)
        results, sam = await asyncio.gather(asyncio.gather(*(guess(i) for i in range(40))), h.login(other, "sam"))
        statuses = [s for s, _ in results]
        assert statuses.count(401) <= 2 and statuses.count(401) + statuses.count(429) == 40, statuses
        assert all(retry and int(retry) >= 1 for s, retry in results if s == 429)
        assert sam == 303
        # Every reservation was given back: the guesses counted are only those hashed.
        throttle = h.app[W.throttle]
        assert throttle._busy_total == 0 and not throttle._busy


async def test_agent_sales_neither_sees_nor_pauses_nor_is_stored_for_a_call_on_sales_2(webapp):
    async with webapp() as h:
        users, live, catalog = h.app[W.users], h.app[W.live], h.app[K.catalog]
        for name in ("sales", "sales-2"):
            await asyncio.to_thread(users.add, name, "agent", f"correct-horse-{name}", [f"PJSIP/{name}"])
        await live.refresh_rules()
        linked, trunk, phone = "1800000000.1", "PJSIP/trunk-0000000a", "PJSIP/sales-2-00000007"
        rid = "r" + secrets.token_hex(12)
        catalog.add(Recording(recording_id=rid, consent_id="c" + rid[1:], uniqueid=linked, linkedid=linked,
                              channel=trunk, spool_path=f"/nonexistent/{rid}.wav", caller_hmac="x", did="",
                              agent="", rule="r", jurisdiction="ZA", retention_class="default",
                              consent_state="granted", started_at=time.time()))
        # The lab Asterisk has no PJSIP phones: the events are those Asterisk sends for a queue call
        # answered by the phone PJSIP/sales-2.
        for event in (
                ev("Newchannel", Uniqueid=linked, Linkedid=linked, Channel=trunk, Exten="s", CallerIDNum="0821234567"),
                ev("UserEvent", UserEvent="CallvaultConsent", Uniqueid=linked, Linkedid=linked, Channel=trunk,
                   Consent="granted", Record="yes", RecordingId=rid, Rule="za"),
                ev("MixMonitorStart", Uniqueid=linked, Linkedid=linked, Channel=trunk),
                ev("Newchannel", Uniqueid="1800000000.2", Linkedid=linked, Channel=phone, Exten="s"),
                ev("BridgeEnter", BridgeUniqueid="b1", Uniqueid=linked, Linkedid=linked, Channel=trunk),
                ev("BridgeEnter", BridgeUniqueid="b1", Uniqueid="1800000000.2", Linkedid=linked, Channel=phone)):
            live.handle(event)
        assert live.calls[linked].agents == ["sales-2"]
        await until(lambda: catalog.get(rid).agent, what="the agent stored in the catalog")
        assert catalog.get(rid).agent == "sales-2"

        sales = await h.client("sales")
        async with sales.get("/api/calls") as r:
            assert (await r.json())["calls"] == []
        async with sales.get(f"/api/calls/{linked}") as r:
            assert r.status == 403
        async with sales.post(f"/api/calls/{linked}/pause", json={"paused": True},
                              headers={"X-CSRF-Token": sales.csrf}) as r:
            assert r.status == 403
        sales2 = await h.client("sales-2")
        async with sales2.get("/api/calls") as r:
            assert [c["call_id"] for c in (await r.json())["calls"]] == [linked]


async def _closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> float:
    """Read messages until the server closes the socket; how long that took after now."""
    start = time.monotonic()
    while True:
        msg = await asyncio.wait_for(ws.receive(), seconds - (time.monotonic() - start))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return time.monotonic() - start


async def test_live_socket_with_traffic_closes_after_logout_and_after_disable(webapp):
    async with webapp() as h:
        live = h.app[W.live]
        linked, channel = "lab-ws-1", "Local/27215550100@callvault-lab-0000beef;2"
        live.handle(ev("Newchannel", Uniqueid=linked, Linkedid=linked, Channel=channel, Exten="27215550100"))
        live.handle(ev("UserEvent", UserEvent="CallvaultConsent", Uniqueid=linked, Linkedid=linked, Channel=channel,
                       Consent="granted", Record="yes", RecordingId="rws", Rule="za"))

        async def traffic() -> None:  # a change every 0.3 s: the socket is never idle
            paused = False
            while True:
                paused = not paused
                live.handle(ev("MixMonitorMute", Uniqueid=linked, Linkedid=linked, Channel=channel,
                               State="1" if paused else "0"))
                await asyncio.sleep(0.3)

        pump = asyncio.create_task(traffic())
        try:
            for user, end in (("sam", "logout"), ("olga", "disable")):
                client = await h.client(user)
                ws = await client.ws_connect("/ws")
                assert (await ws.receive_json())["type"] == "snapshot"
                assert (await ws.receive_json(timeout=5))["type"] == "call"  # traffic flows
                if end == "logout":
                    async with client.post("/logout", data={"csrf": client.csrf}, allow_redirects=False) as r:
                        assert r.status == 303
                else:
                    done = await asyncio.to_thread(
                        subprocess.run, [sys.executable, "-m", "appliance", "users", "disable", user,
                                         "-c", str(h.tmp / "callvault.toml")], capture_output=True, text=True)
                    assert done.returncode == 0, done.stderr
                took = await _closed_within(ws, 6.5)
                assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION, (end, ws.close_code)
                print(f"socket closed {took:.2f} s after {end}")
                await ws.close()
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)


async def _get(client: aiohttp.ClientSession, path: str) -> tuple[int, str]:
    async with client.get(path) as r:
        return r.status, await r.text()


async def test_public_pages_say_up_or_down_only_and_storage_outage_makes_healthz_503(webapp, lab, web_buckets):
    async with webapp() as h:
        anon = await h.client()
        ami = h.app[K.ami].status.as_dict()
        secrets_ = [ami["asterisk_version"], "agi://", str(h.config.agi.address[1]), web_buckets[0],
                    h.config.storage.endpoint_url, "FastAGI", "spool"]
        status, page = await _get(anon, "/")
        assert status == 200 and 'id="overall">callvault is <span class="ok">up' in page
        status, body = await _get(anon, "/healthz")
        assert status == 200 and body == '{"status": "up"}'
        assert not [s for s in secrets_ if s in page or s in body]
        ada = await h.client("ada")
        async with ada.get("/api/admin/health") as r:
            detail = await r.json()
            assert detail["status"] == "up" and detail["ami"]["asterisk_version"] == ami["asterisk_version"]

        await asyncio.to_thread(lab.rgw.stop_rgw)
        try:
            async def healthz_status() -> int:
                return (await _get(anon, "/healthz"))[0]

            t0 = time.monotonic()
            while await healthz_status() != 503:
                assert time.monotonic() - t0 < 30, "/healthz never said down"
                await asyncio.sleep(0.5)
            print(f"/healthz 503 {time.monotonic() - t0:.1f} s after RGW stopped")
            status, body = await _get(anon, "/healthz")
            assert status == 503 and body == '{"status": "down", "down": ["storage"]}'
            status, page = await _get(anon, "/")
            assert status == 503 and "<td id='storage-state'><span class=\"bad\">down" in page
            assert not [s for s in secrets_ if s in page]
            async with ada.get("/api/admin/health") as r:  # the admin sees why
                storage = (await r.json())["storage"]
                assert storage["reachable"] is False and storage["detail"]
        finally:
            await asyncio.to_thread(lab.rgw.start_rgw)
        t1 = time.monotonic()
        while await healthz_status() != 200:
            assert time.monotonic() - t1 < 30, "/healthz never came back up"
            await asyncio.sleep(0.5)
        print(f"/healthz 200 {time.monotonic() - t1:.1f} s after RGW answered again")
