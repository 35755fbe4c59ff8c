"""Transfers against the real lab Asterisk: a call answered by one agent and transferred,
blind (AMI ``BlindTransfer``, as a phone's transfer key does) or attended (AMI ``Atxfer``: the
transferor consults the next agent, then hangs up), to another leaves one recording that
covers both, both agents with their spans in the catalog, a supervisor's search by either
agent finds it, and the agents' live views follow the call.

The agents are Local channels of the lab dialplan (``Local/NNNN@callvault-lab-agents``),
answering with a tone; the caller's channel carries MixMonitor throughout.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from callhelpers import IMPLIED
from waiting import until

from appliance.keys import AppKeys as K
from appliance.lab.calls import CallDriver
from appliance.lab.harness import (
    LAB_AGENT_LINE_CONTEXT,
    LAB_AGENTS_CONTEXT,
    LAB_TRANSFER_CONTEXT,
)
from appliance.web.state import WebKeys as W
from archiver.manifest import Manifest

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

AGENTS = {"tina": "1001", "tom": "2002"}
DID = "27215550777"


class LivePage:
    """What an agent's live page holds: the messages of its WebSocket, applied in order."""

    def __init__(self, ws):
        self.ws, self.calls, self.gone = ws, {}, []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            m = json.loads(msg.data)
            if m["type"] == "snapshot":
                self.calls = {c["call_id"]: c for c in m["calls"]}
            elif m["type"] == "call":
                self.calls[m["call"]["call_id"]] = m["call"]
            elif m["type"] == "gone":
                self.calls.pop(m["call_id"], None)
                self.gone.append(m["call_id"])


def agent_enters(ext: str):
    return lambda e: e.name == "BridgeEnter" and e.get("Channel", "").startswith(f"Local/{ext}@{LAB_AGENTS_CONTEXT}")


async def answered_by_tina(h, ami):
    """The agents signed in with their live pages open, and a call that tina answered."""
    users, live = h.app[W.users], h.app[W.live]
    for name, ext in AGENTS.items():
        await asyncio.to_thread(users.add, name, "agent", f"correct-horse-{name}", [f"Local/{ext}@{LAB_AGENTS_CONTEXT}"])
    await live.refresh_rules()
    pages = {}
    for name in AGENTS:
        client = await h.client(name)
        pages[name] = LivePage(await client.ws_connect("/ws"))

    calls = CallDriver(ami, LAB_AGENT_LINE_CONTEXT)
    call = calls.new_call(did=DID)
    async with ami.expect(agent_enters(AGENTS["tina"])) as answered:
        await calls.place(call, hold=120)
        tina_channel = (await asyncio.wait_for(answered, 20)).get("Channel")
    await until(lambda: call.caller_uniqueid in pages["tina"].calls, what="the call on tina's page")
    assert call.caller_uniqueid not in pages["tom"].calls
    await asyncio.sleep(1.5)  # tina talks: audio to record
    return calls, call, tina_channel, pages


async def tom_took_it(calls, call, pages):
    """The call moved to tom's page, left tina's; tom talks, then the caller hangs up."""
    call_id = call.caller_uniqueid
    await until(lambda: call_id in pages["tom"].calls, what="the call on tom's page")
    await until(lambda: call_id in pages["tina"].gone, what="the call gone from tina's page")
    assert call_id not in pages["tina"].calls and pages["tom"].calls[call_id]["agents"] == ["tom"]
    await asyncio.sleep(1.5)  # tom talks
    async with calls.hangup_of(call) as gone:
        await calls.hangup(call)
        await asyncio.wait_for(gone, 10)


async def one_recording_for_both(h, call_id, pages):
    """The call's one recording: both agents' spans (exactly one each), archived, and found
    by a supervisor's search for either agent. Returns the spans and the seconds recorded."""
    catalog = h.app[K.catalog]
    [rec] = catalog.by_linkedid(call_id)
    await until(lambda: [s.left_at is not None for s in catalog.agents_of([rec.recording_id])[rec.recording_id]]
                == [True, True], what="both agents' spans stored and closed")
    tina, tom = catalog.agents_of([rec.recording_id])[rec.recording_id]
    assert (tina.agent, tom.agent) == ("tina", "tom")
    assert rec.started_at <= tina.joined_at < tina.left_at and tom.joined_at < tom.left_at
    assert tina.left_at - tina.joined_at > 1.2 and tom.left_at - tom.joined_at > 1.2
    assert catalog.get(rec.recording_id).agent == "tina"  # the first agent, as before
    await until(lambda: catalog.get(rec.recording_id).state == "archived", timeout=30, what="archived")
    rec = catalog.get(rec.recording_id)
    size = Manifest.from_json(rec.manifest).plaintext_size
    recorded = (size - 44) / 16000  # 8 kHz 16-bit mono

    sam = await h.client("sam")
    for name in AGENTS:
        async with sam.get("/api/recordings", params={"agent": name}) as r:
            found = (await r.json())["recordings"]
        assert [f["recording_id"] for f in found] == [rec.recording_id], name
        assert [a["agent"] for a in found[0]["agents"]] == ["tina", "tom"]
    async with sam.get("/supervisor", params={"agent": "tom"}) as r:
        page = await r.text()
    assert rec.recording_id in page and "tina, tom" in page
    for p in pages.values():
        p.task.cancel()
    return tina, tom, recorded


async def test_blind_transfer_keeps_one_recording_with_both_agents_and_moves_the_live_view(webapp, ami):
    async with webapp(rules=[IMPLIED]) as h:
        calls, call, tina_channel, pages = await answered_by_tina(h, ami)
        async with ami.expect(agent_enters(AGENTS["tom"])) as taken:
            await ami.action("BlindTransfer", Channel=tina_channel, Exten=AGENTS["tom"], Context=LAB_TRANSFER_CONTEXT)
            await asyncio.wait_for(taken, 20)
        await tom_took_it(calls, call, pages)
        tina, tom, recorded = await one_recording_for_both(h, call.caller_uniqueid, pages)
        assert tina.left_at <= tom.joined_at
        # From consent to hang-up: MixMonitor ran on through the transfer.
        assert recorded >= tom.left_at - tina.joined_at - 0.5, (recorded, tina, tom)


async def test_attended_transfer_keeps_one_recording_with_both_agents_and_moves_the_live_view(webapp, ami):
    async with webapp(rules=[IMPLIED]) as h:
        calls, call, tina_channel, pages = await answered_by_tina(h, ami)
        call_id = call.caller_uniqueid
        # Atxfer: the caller waits on hold in its bridge, tina's channel goes to a new bridge
        # and dials tom; tom answers the consultation.
        on_hold = time.time()
        async with ami.expect(agent_enters(AGENTS["tom"])) as consulted:
            await ami.action("Atxfer", Channel=tina_channel, Exten=AGENTS["tom"], Context=LAB_TRANSFER_CONTEXT)
            consultation = (await asyncio.wait_for(consulted, 20)).get("BridgeUniqueid")
        await until(lambda: call_id in pages["tom"].calls, what="the consulted call on tom's page")
        assert pages["tina"].calls[call_id]["agents"] == ["tina", "tom"]  # tina still handles it
        await asyncio.sleep(1.0)  # they talk; the caller waits

        # Tina hangs up: the transfer completes, tom's channel joins the caller's bridge.
        caller_bridge = lambda e: (e.name == "AttendedTransfer" and e.get("Result") == "Success"
                                   and e.get("TransfereeChannel") == call.callee_channel)
        tom_moves = lambda e: agent_enters(AGENTS["tom"])(e) and e.get("BridgeUniqueid") != consultation
        async with ami.expect(caller_bridge) as done, ami.expect(tom_moves) as joined:
            await ami.action("Hangup", Channel=tina_channel)
            transfer = await asyncio.wait_for(done, 20)
            assert (await asyncio.wait_for(joined, 20)).get("BridgeUniqueid") == transfer.get("DestBridgeUniqueid")
        off_hold = time.time()
        await tom_took_it(calls, call, pages)
        tina, tom, recorded = await one_recording_for_both(h, call_id, pages)
        assert tina.joined_at < tom.joined_at < tina.left_at  # the consultation
        # One file with both conversations: MixMonitor ran on through the transfer. While the
        # caller waits on hold (the lab has no music on hold) no audio reaches the caller's
        # channel, and MixMonitor writes none.
        assert recorded >= (on_hold - tina.joined_at) + (tom.left_at - off_hold) - 0.5, (recorded, tina, tom)
        assert recorded < tom.left_at - tina.joined_at - (off_hold - on_hold) + 1.5
