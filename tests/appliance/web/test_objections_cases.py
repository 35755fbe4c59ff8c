"""Standing objections (real calls through the lab Asterisk) and legal-hold cases (holds on
the payload objects in the lab's RGW), through the CLI, the officer's API and the officer's pages
in Chromium."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from browser import chromium
from callhelpers import OPT_IN, finish, run_call

from appliance.keys import AppKeys as K

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

SUBJECT = "+27215550177"


def callvault(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args, "-c", str(config)], capture_output=True,
                          text=True, timeout=60, env={**os.environ}, check=False)


async def test_objected_caller_hears_no_notice_and_is_not_recorded_until_lifted(appliance, ami, calls, tmp_path):
    toml = tmp_path / "callvault.toml"
    async with appliance(rules=[OPT_IN]) as app:
        number = calls.new_call().caller_id  # what the lab trunk presents
        added = await asyncio.to_thread(callvault, toml, "objection", "add", f"+{number}",
                                        "--reason", "caller asked by letter, ref 2026-4")
        assert added.returncode == 0, added.stderr
        notices = ami.expect(lambda e: e.name == "AGIExecStart" and e.get("Command", "").upper().startswith(
            ("GET DATA", "STREAM FILE")))
        async with notices as played:
            call, event, started = await run_call(app, ami, calls)
            assert event.get("Record") == "no" and event.get("Consent") == "objected" and not started
            assert not played.done()  # no prompt at all
        await finish(app, ami, calls, call)
        [entry] = [e for e in app[K.ledger].find(kind="consent") if e.data["uniqueid"] == call.callee_uniqueid]
        assert (entry.data["outcome"], entry.data["reason"], entry.data["record"]) == (
            "objected", "standing-objection", False)
        assert app[K.catalog].by_linkedid(call.caller_uniqueid) == []

        listed = await asyncio.to_thread(callvault, toml, "objection", "list")
        assert "in force" in listed.stdout and number not in listed.stdout
        lifted = await asyncio.to_thread(callvault, toml, "objection", "lift", number,
                                         "--reason", "consent given again in writing")
        assert lifted.returncode == 0, lifted.stderr
        again = await asyncio.to_thread(callvault, toml, "objection", "lift", number, "--reason", "twice")
        assert again.returncode == 1 and "no objection in force" in again.stderr

        call, event, started = await run_call(app, ami, calls, ["1"])  # the notice asks again; granted
        assert event.get("Record") == "yes" and started
        await finish(app, ami, calls, call)
        entries = [e for kind in ("objection.add", "objection.lift") for e in app[K.ledger].find(kind=kind)]
        assert [e.kind for e in entries] == ["objection.add", "objection.lift"]
        assert all(number not in e.body for e in entries)  # HMACs only


def _held(s3_client, bucket: str, rec) -> str:
    got = s3_client.get_object_legal_hold(Bucket=bucket, Key=rec.object_key, VersionId=rec.version_id)
    return got["LegalHold"]["Status"]


async def test_case_holds_a_subjects_recordings_in_rgw_until_removed_or_closed(webapp, s3_client):
    async with webapp() as h:
        mine = [(await asyncio.to_thread(h.recording, 2, caller=SUBJECT))[0] for _ in range(2)]
        other, _ = await asyncio.to_thread(h.recording, 2, caller="+27215550999")
        sam, olga = await h.client("sam"), await h.client("olga")
        bucket = h.config.storage.bucket

        async def post(who, path, body):
            async with who.post(path, json=body, headers={"X-CSRF-Token": who.csrf}) as r:
                return r.status, await r.json()

        for path, body in (("/api/cases", {"name": "m-117", "reason": "matter 117"}),
                           ("/api/objections", {"number": SUBJECT, "reason": "asked"}),
                           ("/api/cases/m-117/close", {"reason": "done"})):
            assert (await post(sam, path, body))[0] == 403
        for path in ("/api/cases", "/api/objections", "/officer/cases", "/officer/objections"):
            async with sam.get(path) as r:
                assert r.status == 403

        assert (await post(olga, "/api/cases", {"name": "m-117", "reason": "matter 117, litigation"}))[0] == 201
        status, shown = await post(olga, "/api/cases/m-117/recordings", {"subject": SUBJECT})
        assert status == 200 and sorted(shown["added"]) == sorted(mine)
        recs = {rid: h.app[K.catalog].get(rid) for rid in [*mine, other]}
        assert [_held(s3_client, bucket, recs[r]) for r in mine] == ["ON", "ON"]
        # RGW has no legal-hold status for an object never held: ask the product's store instead.
        payload = h.app[K.archive].payload
        assert not payload.head(recs[other].object_key, recs[other].version_id).legal_hold
        assert not recs[other].legal_hold

        status, shown = await post(olga, "/api/cases/m-117/remove", {"recording_id": mine[0], "reason": "not in scope"})
        assert status == 200 and shown["released"] is True
        assert [_held(s3_client, bucket, recs[r]) for r in mine] == ["OFF", "ON"]
        status, shown = await post(olga, "/api/cases/m-117/close", {"reason": "matter settled"})
        assert status == 200 and shown["released"] == [mine[1]] and shown["open"] is False
        assert [_held(s3_client, bucket, recs[r]) for r in mine] == ["OFF", "OFF"]
        assert [h.app[K.catalog].get(r).legal_hold for r in mine] == [0, 0]
        assert (await post(olga, "/api/cases/m-117/close", {"reason": "again"}))[0] == 409

        ledger = h.app[K.ledger]
        assert [e.kind for e in ledger.find(recording_id=mine[0])] == ["case.add", "legal_hold.set", "case.remove",
                                                                       "legal_hold.release"]
        assert [e.kind for e in ledger.find(recording_id=mine[1])] == ["case.add", "legal_hold.set",
                                                                       "legal_hold.release"]
        assert [len(ledger.find(kind=k)) for k in ("case.create", "case.close")] == [1, 1]
        async with olga.get("/officer/cases") as r:
            assert r.status == 200 and "m-117" in await r.text()


async def _act(page, form: str, fields: dict[str, str], expect: str = "#done", button: str = "") -> str:
    for selector, value in fields.items():
        await page.fill(f"#{form} {selector}", value)
    await page.click(button or f"#{form} button[type=submit]")
    await page.wait_for_selector(expect)
    return await page.inner_text(expect)


async def test_officer_runs_a_case_and_an_objection_from_the_pages(webapp, s3_client, user_password):
    async with webapp() as h:
        mine = [(await asyncio.to_thread(h.recording, 2, caller=SUBJECT))[0] for _ in range(2)]
        other, _ = await asyncio.to_thread(h.recording, 2, caller="+27215550999")
        bucket, catalog = h.config.storage.bucket, h.app[K.catalog]
        async with chromium() as page:
            await page.goto(h.url + "/login")
            await page.fill("#name", "olga")
            await page.fill("#password", user_password("olga"))
            await page.click("#sign-in")
            await page.wait_for_selector("#who")
            await page.goto(h.url + "/officer/cases")
            said = await _act(page, "create", {"#case-name": "m-9", "#case-reason": "matter 9"})
            assert "m-9 opened" in said
            said = await _act(page, "create", {"#case-name": "m-9", "#case-reason": "again"}, "#problem")
            assert "m-9" in said  # the API's refusal is shown
            said = await _act(page, "add", {"#subject": SUBJECT}, "#done")
            assert "2 recording(s) added to m-9" in said
            listed = await page.inner_text("#cases-table tr[data-case=m-9]")
            assert all(r in listed for r in mine) and other not in listed and "open" in listed
            recs = {r: catalog.get(r) for r in mine}
            assert [_held(s3_client, bucket, recs[r]) for r in mine] == ["ON", "ON"]
            assert not h.app[K.archive].payload.head(catalog.get(other).object_key,
                                                     catalog.get(other).version_id).legal_hold

            said = await _act(page, "remove", {"#remove-id": mine[0], "#remove-reason": "not in scope"})
            assert "hold is released" in said
            assert await page.locator(f"#cases-table tr[data-case=m-9] li[data-id={mine[0]}]").count() == 0
            assert [_held(s3_client, bucket, recs[r]) for r in mine] == ["OFF", "ON"]
            said = await _act(page, "close", {"#close-reason": "matter settled"})
            assert "m-9 closed; 1 hold(s) released" in said
            assert "closed" in await page.inner_text("#cases-table tr[data-case=m-9]")
            assert [_held(s3_client, bucket, recs[r]) for r in mine] == ["OFF", "OFF"]
            assert [catalog.get(r).legal_hold for r in mine] == [0, 0]

            await page.goto(h.url + "/officer/objections")
            said = await _act(page, "objection", {"#number": SUBJECT, "#objection-reason": "asked by letter"})
            assert "recorded" in said and "in force" in await page.inner_text("table")
            said = await _act(page, "objection", {"#number": SUBJECT, "#objection-reason": "consent given again"}, button="#lift")
            assert said == "Objection lifted." and "lifted by olga" in await page.inner_text("table")
            said = await _act(page, "objection", {"#number": SUBJECT, "#objection-reason": "twice"}, "#problem", button="#lift")
            assert "no objection in force" in said
        assert [len(h.app[K.ledger].find(kind=k)) for k in ("objection.add", "objection.lift")] == [1, 1]
