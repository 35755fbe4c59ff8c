"""The officer's data-subject page and API: find a caller's recordings in Chromium, export
the bundle over HTTP (streamed, age-encrypted); supervisors and agents get 403."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import pytest
from browser import chromium

from appliance.keys import AppKeys as K
from storage.age import decrypt_with_passphrase

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]


async def sign_in(page, h, name: str) -> None:
    await page.goto(h.url + "/login")
    await page.fill("#name", name)
    await page.fill("#password", f"correct-horse-{name}")
    await page.click("#sign-in")
    await page.wait_for_selector("#who")


async def test_officer_finds_and_exports_a_subject_others_get_403(webapp):
    async with webapp() as h:
        rids = [h.recording(3)[0] for _ in range(2)]
        other, _ = h.recording(2, caller="27215550999")
        for name in ("sam", "alice"):
            c = await h.client(name)
            async with c.get("/api/subjects", params={"number": "+27215550123"}) as r:
                assert r.status == 403
            async with c.post("/api/subjects/export", json={"number": "+27215550123", "reference": "DSAR-9"},
                              headers={"X-CSRF-Token": c.csrf}) as r:
                assert r.status == 403
            async with c.get("/officer/subject", allow_redirects=False) as r:
                assert r.status == 403
        olga = await h.client("olga")
        async with olga.get("/api/subjects", params={"number": "+27215550123"}) as r:
            found = await r.json()
        assert sorted(x["recording_id"] for x in found["recordings"]) == sorted(rids)
        async with olga.post("/api/subjects/export", json={"number": "+27 21 555 0123", "reference": "DSAR-7"},
                             headers={"X-CSRF-Token": olga.csrf}) as r:
            assert r.status == 200 and "Content-Length" not in r.headers  # streamed
            passphrase = r.headers["X-Bundle-Passphrase"]
            bundle = await r.read()
        with zipfile.ZipFile(io.BytesIO(decrypt_with_passphrase(bundle, passphrase))) as z:
            names = set(json.loads(z.read("MANIFEST.json"))["files"])
        assert {f"recordings/{rid}.wav" for rid in rids} <= names and f"recordings/{other}.wav" not in names
        web_exports = h.app[K.ledger].find(kind="audit.export")
        assert sorted(e.recording_id for e in web_exports) == sorted(rids)
        assert all(e.data["actor"] == "olga" and e.data["via"] == "web" and e.data["reference"] == "DSAR-7"
                   for e in web_exports)

        async with chromium() as page:
            await sign_in(page, h, "olga")
            await page.goto(h.url + "/officer/subject")
            await page.fill("#number", "+27 21 555 0123")
            await page.click("#find button[type=submit]")
            await page.wait_for_selector("#recordings")
            shown = await page.inner_text("#recordings")
            assert all(rid in shown for rid in rids) and other not in shown
            await page.fill("#reference", "DSAR-8")
            async with page.expect_download() as download:
                await page.click("#export button[type=submit]")
            path = await (await download.value).path()
            phrase = await page.inner_text("#bundle-passphrase")
            data = await asyncio.to_thread(Path(path).read_bytes)
        with zipfile.ZipFile(io.BytesIO(decrypt_with_passphrase(data, phrase))) as z:
            assert {f"recordings/{rid}.wav" for rid in rids} <= set(json.loads(z.read("MANIFEST.json"))["files"])
