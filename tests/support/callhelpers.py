"""Helpers for tests that place calls through the lab Asterisk."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from appliance.keys import AppKeys as K

OPT_IN = {"name": "za-opt-in", "mode": "opt-in", "timeout": 1.5, "repeats": 1}
OPT_OUT = {"name": "za-opt-out", "mode": "opt-out", "timeout": 1.0}
IMPLIED = {"name": "us-implied", "mode": "implied", "jurisdiction": "US-NY"}


async def wait_path(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.05)


def after_agi(ami, call):
    return ami.expect(lambda e: e.name == "UserEvent" and call.is_callee(e)
                      and e.get("UserEvent") == "CallvaultLabAfterAgi")


def after_revoke(ami, call):
    return ami.expect(lambda e: e.name == "UserEvent" and call.is_callee(e)
                      and e.get("UserEvent") == "CallvaultLabAfterRevoke")


def mixmonitor_started(ami, call):
    return ami.expect(lambda e: e.name == "MixMonitorStart" and call.is_callee(e))


def mixmonitor_stopped(ami, call):
    return ami.expect(lambda e: e.name == "MixMonitorStop" and call.is_callee(e))


async def run_call(app, ami, calls, digits_per_prompt: list[str] | None = None, *,
                   hangup_at_notice: bool = False, caller_plays: str = "", call=None):
    """Place a call (``call``, or a new one); press ``digits_per_prompt[i]`` at the i-th
    GET DATA; return outcome. ``caller_plays``: a sound the caller plays (CallDriver.place)."""
    call = call or calls.new_call()
    agi = app[K.agi]
    async with after_agi(ami, call) as done, mixmonitor_started(ami, call) as mixmon:
        if hangup_at_notice or digits_per_prompt:
            async with calls.agi_command(call, "GET DATA") as asked:
                await calls.place(call, caller_plays=caller_plays)
                await asyncio.wait_for(asked, 15)
                if hangup_at_notice:
                    await calls.hangup(call)
                    await agi.wait_idle(15)
                    return call, None, mixmon.done()
                await calls.send_dtmf(call, digits_per_prompt[0])
            for digits in digits_per_prompt[1:]:
                async with calls.agi_command(call, "GET DATA") as asked:
                    await asyncio.wait_for(asked, 15)
                    await calls.send_dtmf(call, digits)
        else:
            await calls.place(call, caller_plays=caller_plays)
        event = await asyncio.wait_for(done, 20)
        await asyncio.sleep(0)  # let a MixMonitorStart raised just before arrive
        started = mixmon.done()
    return call, event, started


def consent_entries(app, call):
    ledger = app[K.ledger]
    return [e for e in ledger.find(kind="consent") if e.data["uniqueid"] == call.callee_uniqueid]


async def finish(app, ami, calls, call):
    async with calls.hangup_of(call) as gone:
        await calls.hangup(call)
        await asyncio.wait_for(gone, 10)
    await app[K.agi].wait_idle(15)




async def wait_state(app, rid: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (rec := app[K.catalog].get(rid)).state != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"{rid} is {rec.state} ({rec.last_error}), not {state}")
        await asyncio.sleep(0.05)


async def archived_wav(app, appliance, rid: str) -> bytes:
    """Wait until the archiver has stored ``rid``; return the decrypted WAV, checked
    against the manifest's plaintext digest."""
    from archiver.manifest import Manifest
    from storage.age import Decryptor

    await wait_state(app, rid, "archived")
    rec = app[K.catalog].get(rid)
    header = appliance.keys().get(rec.header_key)
    wav = Decryptor(header, appliance.identity()).decrypt(appliance.payload().get(rec.object_key))
    assert hashlib.sha256(wav).hexdigest() == Manifest.from_json(rec.manifest).plaintext_sha256
    return wav
