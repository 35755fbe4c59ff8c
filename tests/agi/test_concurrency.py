"""50 simultaneous calls through the real Asterisk: one correct ledger entry each."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from appliance.keys import AppKeys as K
from callhelpers import OPT_IN

pytestmark = pytest.mark.asterisk

CALLS = 50


async def one_call(ami, calls, i: int):
    digit = "1" if i % 2 == 0 else "2"
    call = calls.new_call(caller_id=f"2782555{i:04d}")
    async with calls.agi_command(call, "GET DATA") as asked, \
            ami.expect(lambda e: e.name == "UserEvent" and call.is_callee(e)
                       and e.get("UserEvent") == "CallvaultLabAfterAgi") as done:
        await calls.place(call, hold=120, timeout=30)
        await asyncio.wait_for(asked, 60)
        await calls.send_dtmf(call, digit)
        event = await asyncio.wait_for(done, 60)
    return call, digit, event


async def test_fifty_simultaneous_calls(appliance, ami, calls):
    rule = {**OPT_IN, "timeout": 10.0}
    async with appliance(rules=[rule]) as app:
        results = await asyncio.gather(*(one_call(ami, calls, i) for i in range(CALLS)))
        for call, digit, event in results:
            expected = ("granted", "yes") if digit == "1" else ("declined", "no")
            assert (event.get("Consent"), event.get("Record")) == expected, call

        entries = app[K.ledger].find(kind="consent")
        by_channel = Counter(e.data["uniqueid"] for e in entries)
        for call, digit, _ in results:
            assert by_channel[call.callee_uniqueid] == 1
            [entry] = [e for e in entries if e.data["uniqueid"] == call.callee_uniqueid]
            assert entry.data["digits"] == digit
            assert entry.data["outcome"] == ("granted" if digit == "1" else "declined")
        assert app[K.ledger].verify().ok
        granted = [c for c, d, _ in results if d == "1"]
        assert len({r.recording_id for c in granted for r in app[K.catalog].by_linkedid(c.caller_uniqueid)}) == len(granted)

        await asyncio.gather(*(calls.hangup(c) for c, _, _ in results))
        await app[K.agi].wait_idle(30)
