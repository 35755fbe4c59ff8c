"""Real calls through the lab Asterisk 22, archived by the appliance's archiver.

The ``appliance`` fixture gives each test its own spool directory, so the archiver
never sees other tests' recordings. Nothing here tells the archiver a call ended: the
appliance's AMI intake (``Hangup`` / ``MixMonitorStop``) does, as in production.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from callhelpers import OPT_IN, finish, mixmonitor_stopped, run_call, wait_state

from appliance.keys import AppKeys as K
from archiver.manifest import Manifest
from storage.age import Decryptor

pytestmark = pytest.mark.asterisk


async def test_consented_call_is_archived_and_the_spool_emptied(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, event, started = await run_call(app, ami, calls, ["1"])
        assert started and event.get("Record") == "yes"
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        await asyncio.sleep(1.0)  # a second of conversation to record
        await finish(app, ami, calls, call)
        await wait_state(app, rec.recording_id, "archived")

        rec = app[K.catalog].get(rec.recording_id)
        assert list(appliance.spool.iterdir()) == [Path(appliance.spool / ".callvault-work")]
        assert not list((appliance.spool / ".callvault-work").iterdir())
        payload = appliance.payload()
        assert list(payload.list()) == [f"manifests/{rec.recording_id}.json", rec.object_key]
        header = appliance.keys().get(rec.header_key)
        wav = Decryptor(header, appliance.identity()).decrypt(payload.get(rec.object_key))
        m = Manifest.from_json(rec.manifest)
        assert wav[:4] == b"RIFF" and len(wav) > 8000 and hashlib.sha256(wav).hexdigest() == m.plaintext_sha256
        assert [e.kind for e in app[K.ledger].find(recording_id=rec.recording_id)] == ["consent", "archive"]
        assert app[K.archiver].stats.as_dict()["archived"] == 1


async def test_declined_and_abandoned_calls_store_nothing(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        declined, event, started = await run_call(app, ami, calls, ["2"])
        assert event.get("Record") == "no" and not started
        await finish(app, ami, calls, declined)
        _abandoned, _, started = await run_call(app, ami, calls, hangup_at_notice=True)
        assert not started
        await app[K.archiver].scan()
        assert app[K.catalog].search() == []
        assert list(appliance.payload().list()) == []
        # The archiver made its (empty) work dir at start; nothing else is left in the spool.
        assert [p.name for p in appliance.spool.iterdir()] == [".callvault-work"]
        assert list((appliance.spool / ".callvault-work").iterdir()) == []


async def test_revoked_call_is_shredded_not_archived(appliance, ami, calls):
    async with appliance(rules=[OPT_IN]) as app:
        call, _, started = await run_call(app, ami, calls, ["1"])
        assert started
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        async with mixmonitor_stopped(ami, call) as stopped:
            await calls.send_dtmf(call, "0")  # the lab's stand-in for the revoke feature code
            await asyncio.wait_for(stopped, 15)
        await wait_state(app, rec.recording_id, "erased")
        assert not (appliance.spool / f"{rec.recording_id}.wav").exists()
        assert list(appliance.payload().list()) == []
        [erase] = app[K.ledger].find(recording_id=rec.recording_id, kind="erase")
        assert erase.data["payload"] == "none" and erase.data["reason"] == "consent revoked"
        await finish(app, ami, calls, call)
