"""Real calls through the lab Asterisk 22, archived by the appliance's archiver.

Each test gets its own spool directory (a subdirectory of the lab's, which MixMonitor
writes into), so the archiver never sees other tests' recordings. The AMI intake
(``Hangup`` / ``MixMonitorStop`` -> ``archiver.recording_ended``) is called by the test
here, exactly as appliance/wiring.py is to do it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from pathlib import Path

import pytest

from appliance.keys import AppKeys as K
from callhelpers import OPT_IN, finish, run_call
from storage import keys
from storage.crypto import Decryptor, Manifest
from storage.localstore import LocalStore

pytestmark = pytest.mark.asterisk


@pytest.fixture
def archiving_appliance(appliance, lab_state, monkeypatch, tmp_path):
    """The appliance fixture with the real archiver and a private spool directory."""
    import appliance.service as service
    from appliance.archivecli import build_archiver

    wired = service.build_archiver

    def build(app):  # a no-op once appliance/wiring.py builds it this way itself
        archiver = wired(app)
        if getattr(archiver, "configured", False):
            return archiver
        return build_archiver(app[K.config], app[K.catalog], app[K.ledger])

    monkeypatch.setattr(service, "build_archiver", build)
    sub = f"t-{secrets.token_hex(4)}"
    host = Path(lab_state.spool_host) / sub
    host.mkdir(mode=0o777)
    overrides = {"spool.dir": str(host), "spool.asterisk_dir": f"{lab_state.spool_inside}/{sub}",
                 "spool.scan_interval": 3600.0}

    def start(**kw):
        return appliance(**overrides, **kw)

    start.spool = host
    start.payload = lambda: LocalStore(tmp_path / "archive" / "payload")
    start.identity = lambda: keys.load_identities(tmp_path / "identity.txt")
    return start


async def wait_state(app, rid: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (rec := app[K.catalog].get(rid)).state != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"{rid} is {rec.state} ({rec.last_error}), not {state}")
        await asyncio.sleep(0.05)


async def hang_up(app, calls, call):
    async with calls.hangup_of(call) as gone:
        await calls.hangup(call)
        event = await asyncio.wait_for(gone, 10)
    await app[K.archiver].recording_ended(uniqueid=event.get("Uniqueid"))  # the AMI intake
    await app[K.agi].wait_idle(15)


async def test_consented_call_is_archived_and_the_spool_emptied(archiving_appliance, ami, calls):
    async with archiving_appliance(rules=[OPT_IN]) as app:
        assert app[K.archiver].configured
        call, event, started = await run_call(app, ami, calls, ["1"])
        assert started and event.get("Record") == "yes"
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        await asyncio.sleep(1.0)  # a second of conversation to record
        await hang_up(app, calls, call)
        await wait_state(app, rec.recording_id, "archived")

        rec = app[K.catalog].get(rec.recording_id)
        assert list(archiving_appliance.spool.iterdir()) == [Path(archiving_appliance.spool / ".callvault-work")]
        assert not list((archiving_appliance.spool / ".callvault-work").iterdir())
        payload = archiving_appliance.payload()
        assert list(payload.list()) == [rec.object_key]
        header = LocalStore(payload.root.parent / "keys").get(rec.header_key)
        wav = Decryptor(header, archiving_appliance.identity()).decrypt(payload.get(rec.object_key))
        m = Manifest.from_json(rec.manifest)
        assert wav[:4] == b"RIFF" and len(wav) > 8000 and hashlib.sha256(wav).hexdigest() == m.plaintext_sha256
        assert [e.kind for e in app[K.ledger].find(recording_id=rec.recording_id)] == ["consent", "archive"]
        assert app[K.archiver].stats.as_dict()["archived"] == 1


async def test_declined_and_abandoned_calls_store_nothing(archiving_appliance, ami, calls):
    async with archiving_appliance(rules=[OPT_IN]) as app:
        declined, event, started = await run_call(app, ami, calls, ["2"])
        assert event.get("Record") == "no" and not started
        await finish(app, ami, calls, declined)
        abandoned, _, started = await run_call(app, ami, calls, hangup_at_notice=True)
        assert not started
        await app[K.archiver].scan()
        assert app[K.catalog].search() == []
        assert list(archiving_appliance.payload().list()) == []
        assert [p.name for p in archiving_appliance.spool.iterdir()] in ([], [".callvault-work"])


async def test_revoked_call_is_shredded_not_archived(archiving_appliance, ami, calls):
    async with archiving_appliance(rules=[OPT_IN]) as app:
        call, _, started = await run_call(app, ami, calls, ["1"])
        assert started
        [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
        async with ami.expect(lambda e: e.name == "MixMonitorStop" and call.is_callee(e)) as stopped:
            await calls.send_dtmf(call, "0")  # the lab's stand-in for the revoke feature code
            event = await asyncio.wait_for(stopped, 15)
        await app[K.archiver].recording_ended(uniqueid=event.get("Uniqueid"))  # the AMI intake
        await wait_state(app, rec.recording_id, "erased")
        assert not (archiving_appliance.spool / f"{rec.recording_id}.wav").exists()
        assert list(archiving_appliance.payload().list()) == []
        [erase] = app[K.ledger].find(recording_id=rec.recording_id, kind="erase")
        assert erase.data["payload"] == "none" and erase.data["reason"] == "consent revoked"
        await finish(app, ami, calls, call)
