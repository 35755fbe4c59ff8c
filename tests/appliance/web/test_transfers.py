"""Transfers against the real lab Asterisk: a call answered by one agent and blind-transferred
(AMI ``BlindTransfer``, as a phone's transfer key does) to another leaves one recording that
covers both, both agents with their spans in the catalog, a supervisor's search by either
agent finds it, and the agents' live views follow the call.

The agents are Local channels of the lab dialplan (``Local/NNNN@callvault-lab-agents``),
answering with a tone; the caller's channel carries MixMonitor throughout.
"""

from __future__ import annotations

import asyncio
import json

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


async def test_blind_transfer_keeps_one_recording_with_both_agents_and_moves_the_live_view(webapp, ami):
    async with webapp(rules=[IMPLIED]) as h:
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
        agent_one = lambda e: (e.name == "BridgeEnter"
                               and e.get("Channel", "").startswith(f"Local/1001@{LAB_AGENTS_CONTEXT}"))
        async with ami.expect(agent_one) as answered:
            await calls.place(call, hold=120)
            tina_channel = (await asyncio.wait_for(answered, 20)).get("Channel")
        call_id = call.caller_uniqueid
        await until(lambda: call_id in pages["tina"].calls, what="the call on tina's page")
        assert call_id not in pages["tom"].calls
        await asyncio.sleep(1.5)  # tina talks: audio to record

        agent_two = lambda e: (e.name == "BridgeEnter"
                               and e.get("Channel", "").startswith(f"Local/2002@{LAB_AGENTS_CONTEXT}"))
        async with ami.expect(agent_two) as taken:
            await ami.action("BlindTransfer", Channel=tina_channel, Exten=AGENTS["tom"], Context=LAB_TRANSFER_CONTEXT)
            await asyncio.wait_for(taken, 20)
        await until(lambda: call_id in pages["tom"].calls, what="the call on tom's page")
        await until(lambda: call_id in pages["tina"].gone, what="the call gone from tina's page")
        assert call_id not in pages["tina"].calls and pages["tom"].calls[call_id]["agents"] == ["tom"]
        await asyncio.sleep(1.5)  # tom talks

        async with calls.hangup_of(call) as gone:
            await calls.hangup(call)
            await asyncio.wait_for(gone, 10)

        catalog = h.app[K.catalog]
        [rec] = catalog.by_linkedid(call_id)
        await until(lambda: [s.left_at is not None for s in catalog.agents_of([rec.recording_id])[rec.recording_id]]
                    == [True, True], what="both agents' spans stored and closed")
        tina, tom = catalog.agents_of([rec.recording_id])[rec.recording_id]
        assert (tina.agent, tom.agent) == ("tina", "tom")
        assert rec.started_at <= tina.joined_at < tina.left_at <= tom.joined_at < tom.left_at
        assert tina.left_at - tina.joined_at > 1.2 and tom.left_at - tom.joined_at > 1.2
        assert catalog.get(rec.recording_id).agent == "tina"  # the first agent, as before

        # One recording, from consent to hang-up: MixMonitor ran on through the transfer.
        await until(lambda: catalog.get(rec.recording_id).state == "archived", timeout=30, what="archived")
        rec = catalog.get(rec.recording_id)
        size = Manifest.from_json(rec.manifest).plaintext_size
        recorded = (size - 44) / 16000  # 8 kHz 16-bit mono
        assert recorded >= tom.left_at - tina.joined_at - 0.5, (recorded, tina, tom)

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
