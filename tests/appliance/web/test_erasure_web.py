"""Erasure in the officer's web app against RGW: plan and erase in Chromium (the header
object is gone, playback is then refused with the reason), supervisors get 403, and
the two-person rule (the requesting officer cannot approve; a second officer can).
Saves the officer screenshots (subject, erasure, cases) for the README."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from browser import chromium

from appliance.keys import AppKeys as K
from storage.users import Users

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
SUBJECT = "+27215550188"


def password(name: str) -> str:
    return f"correct-horse-{name}"


async def sign_in(page, h, name: str) -> None:
    await page.goto(h.url + "/login")
    await page.fill("#name", name)
    await page.fill("#password", password(name))
    await page.click("#sign-in")
    await page.wait_for_selector("#who")


async def post(client, path: str, body: dict | None = None) -> tuple[int, dict]:
    async with client.post(path, json=body or {}, headers={"X-CSRF-Token": client.csrf}) as r:
        return r.status, await r.json()


async def test_officer_plans_and_erases_in_the_browser_supervisor_gets_403(webapp):
    async with webapp() as h:
        gone, kept = [(await asyncio.to_thread(h.recording, 2, caller=SUBJECT))[0] for _ in range(2)]
        archive, catalog = h.app[K.archive], h.app[K.catalog]
        header = catalog.get(gone).header_key
        assert archive.headers.versions(header)
        sam, olga = await h.client("sam"), await h.client("olga")
        for path in ("/api/erasures/plan", "/api/erasures", f"/api/erasures/{gone}/approve"):
            assert (await post(sam, path, {"recording_ids": [gone], "reference": "DSR-1"}))[0] == 403
        for path in ("/officer/erasure", "/api/erasures", "/api/erasures/er1/certificate"):
            async with sam.get(path, allow_redirects=False) as r:
                assert r.status == 403, path
        assert (await post(olga, "/api/erasures/plan", {"subject": SUBJECT, "recording_ids": [gone],
                                                        "reference": "DSR-1"}))[0] == 400
        assert (await post(olga, "/api/cases", {"name": "m-1", "reason": "matter 1"}))[0] == 201
        status, _ = await post(olga, "/api/cases/m-1/recordings", {"recording_id": kept})
        assert status == 200

        async with chromium() as page:
            await sign_in(page, h, "olga")
            await page.goto(h.url + "/officer/erasure")
            await page.fill("#subject", SUBJECT)
            await page.fill("#reference", "DSR-1")
            await page.click("#plan-button")
            await page.wait_for_selector("#plan-held")
            assert gone in await page.inner_text("#plan-erase") and kept in await page.inner_text("#plan-held")
            assert "legal hold" in await page.inner_text("#plan-held")
            assert archive.headers.versions(header)  # a dry run changes nothing
            await page.fill("#subject", "")
            await page.fill("#recording-ids", gone)
            await page.click("#plan-button")
            await page.wait_for_selector(f"#plan-erase li[data-id={gone}]")
            assert await page.locator("#plan-held li").count() == 0
            await page.click("#erase-button")
            await page.wait_for_selector("#done")
            assert "1 erased" in await page.inner_text("#done")
            await page.wait_for_selector("#requests-table a.cert")
            await page.screenshot(path=str(SHOTS / "officer-erasure.png"), full_page=True)
            await page.click("#done a.cert")
            await page.wait_for_selector("h1")
            assert gone in await page.inner_text("body") and "olga" in await page.inner_text("body")

            await page.goto(h.url + "/officer/subject")
            await page.fill("#number", SUBJECT)
            await page.click("#find button[type=submit]")
            await page.wait_for_selector("#recordings")
            assert "erased" in await page.inner_text("#recordings")
            await page.screenshot(path=str(SHOTS / "officer-subject.png"), full_page=True)
            await page.goto(h.url + "/officer/cases")
            assert kept in await page.inner_text("table")
            await page.screenshot(path=str(SHOTS / "officer-cases.png"), full_page=True)

        assert archive.headers.versions(header) == []
        assert catalog.get(gone).state == "erased" and catalog.get(kept).state == "archived"
        status, body = await post(olga, f"/api/recordings/{gone}/access", {"purpose": "play", "reason": "check"})
        assert (status, body["error"]) == (409, "recording was erased")
        [req] = (await (await olga.get("/api/erasures")).json())["requests"]
        async with olga.get(f"/api/erasures/{req['request_id']}/certificate") as r:
            cert = await r.json()
        assert [x["recording_id"] for x in cert["recordings"]] == [gone] and cert["officers"] == ["olga"]
        [entry] = h.app[K.ledger].find(kind="erasure.request")
        assert (entry.data["officer"], entry.data["via"]) == ("olga", "web")


async def test_two_person_rule_on_the_web(webapp):
    async with webapp(privacy_={"erasure_approval": "two-person"}) as h:
        rid, _ = await asyncio.to_thread(h.recording, 2, caller=SUBJECT)
        await asyncio.to_thread(Users(h.app[K.db]).add, "oscar", "officer", password("oscar"))
        archive, header = h.app[K.archive], h.app[K.catalog].get(rid).header_key
        olga = await h.client("olga")
        status, body = await post(olga, "/api/erasures", {"subject": SUBJECT, "reference": "DSR-2"})
        assert status == 201 and body["certificate"] is None and body["request"]["state"] == "pending"
        request_id = body["request"]["request_id"]
        status, body = await post(olga, f"/api/erasures/{request_id}/approve")
        assert status == 409 and "different officer" in body["error"]
        async with olga.get(f"/api/erasures/{request_id}/certificate") as r:
            assert r.status == 409
        assert archive.headers.versions(header)

        async with chromium() as page:
            await sign_in(page, h, "olga")
            await page.goto(h.url + "/officer/erasure")
            await page.wait_for_selector(f"#requests-table tr[data-id={request_id}]")
            assert await page.locator("#requests-table button.approve").count() == 0  # not for the requester
            await page.click("#logout")
            await page.wait_for_selector("#name")
            await sign_in(page, h, "oscar")
            await page.goto(h.url + "/officer/erasure")
            await page.click(f"#requests-table button.approve[data-id={request_id}]")
            await page.wait_for_selector("#done")
            assert "1 erased" in await page.inner_text("#done")
        assert archive.headers.versions(header) == []
        async with olga.get(f"/api/erasures/{request_id}/certificate") as r:
            assert (await r.json())["officers"] == ["olga", "oscar"]
