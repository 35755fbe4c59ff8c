"""The information officer's pages and the reports API on the real appliance: the
officer lands on /officer, opens a report in Chromium and downloads it as CSV and
JSON; supervisors and agents get 403 on all of it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from browser import chromium

from appliance.keys import AppKeys as K

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
PAGES = ("/officer", "/officer/reports", "/officer/reports?name=access", "/api/reports/access",
         "/api/reports/consent?format=csv")


async def test_officer_sees_reports_others_get_403(webapp):
    async with webapp() as h:
        rid, _ = h.recording(3)
        olga = await h.client("olga")
        async with olga.post(f"/api/recordings/{rid}/access", json={"purpose": "play", "reason": "complaint #9"},
                             headers={"X-CSRF-Token": olga.csrf}) as r:
            assert r.status == 201, await r.text()
        h.app[K.ledger].append("objection.received", {"actor": "olga", "reason": "caller objects"},
                               recording_id=rid)

        async with olga.get("/api/reports/access?format=csv") as r:
            assert r.status == 200 and r.content_type == "text/csv"
            [row] = list(csv.DictReader(io.StringIO(await r.text())))
        assert (row["kind"], row["recording_id"], row["actor"], row["reason"]) == \
            ("audit.play", rid, "olga", "complaint #9")
        assert "role=officer" in row["detail"] and "via=web" in row["detail"]
        async with olga.get("/api/reports/retention") as r:
            body = await r.json()
        assert [(x["recording_id"], x["retention_class"], x["state"]) for x in body["rows"]] == \
            [(rid, "default", "archived")]
        for url, status in (("/api/reports/nope", 404), ("/api/reports/access?format=xml", 400),
                            ("/api/reports/access?since=yesterday", 400), ("/officer/reports?until=x", 400)):
            async with olga.get(url) as r:
                assert r.status == status, url
        for name in ("sam", "alice"):
            other = await h.client(name)
            for url in PAGES:
                async with other.get(url, allow_redirects=False) as r:
                    assert r.status == 403, (name, url)
        anonymous = await h.client()
        async with anonymous.get("/api/reports/access") as r:
            assert r.status == 401

        async with chromium() as page:
            await page.goto(h.url + "/login")
            await page.fill("#name", "olga")
            await page.fill("#password", "correct-horse-olga")
            await page.click("#sign-in")
            await page.wait_for_selector("#who")
            assert page.url.endswith("/officer")
            hrefs = await page.eval_on_selector_all("#officer-links a", "els => els.map(e => e.getAttribute('href'))")
            assert hrefs == ["/officer/subject", "/officer/erasure", "/officer/objections", "/officer/cases",
                             "/officer/reports"]
            assert await page.locator("nav a[href='/officer']").count() == 1
            await page.click("#officer-links a[href='/officer/reports']")
            await page.select_option("#report-name", "access")
            await page.click("#report-button")
            await page.wait_for_selector("#report[data-report=access]")
            assert "complaint #9" in await page.inner_text("#report")
            await page.select_option("#report-name", "objections")
            await page.click("#report-button")
            await page.wait_for_selector("#report[data-report=objections]")
            assert "caller objects" in await page.inner_text("#report")
            await page.select_option("#report-name", "access")
            await page.click("#report-button")
            await page.wait_for_selector("#report[data-report=access]")
            await page.screenshot(path=str(SHOTS / "officer.png"), full_page=True)
            href = await page.get_attribute("#download-csv", "href")
            assert href == "/api/reports/access?format=csv"
