"""Live call state and agent attribution from AMI events (appliance/web/live.py).

The events are the ones Asterisk 22 raises (names and headers as in the lab's
captures); the real-Asterisk path is covered by the browser test.
"""

from __future__ import annotations

import pytest
from waiting import until

from agi.ami import AmiEvent
from appliance.web.live import LiveCalls
from appliance.web.livecall import endpoint_of
from appliance.web.metrics import Metrics
from storage.catalog import Catalog, Recording
from storage.dburl import open_database
from storage.ledger import Ledger
from storage.users import Users


@pytest.fixture
async def live(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'cv.db'}")
    users = Users(db)
    for name, ids in (("alice", ["did:27215550100"]), ("bob", ["PJSIP/2002"]), ("carol", ["PJSIP/1001"])):
        # Cheap hashes are fine here: these users never sign in.
        users.add(name, "agent", f"{name}-password-x", ids)
    catalog = Catalog(db)
    tracker = LiveCalls(users=users, catalog=catalog, ledger=Ledger(db), metrics=Metrics())
    await tracker.refresh_rules()
    yield tracker
    await tracker.stop()
    db.close()


def ev(name: str, **fields) -> AmiEvent:
    return AmiEvent(name, {"Event": name, **fields})


def row(catalog: Catalog, rid: str, linkedid: str) -> None:
    catalog.add(Recording(recording_id=rid, consent_id="c1", uniqueid=linkedid, linkedid=linkedid,
                          channel="PJSIP/trunk-00000001", spool_path=f"/spool/{rid}.wav", caller_hmac="x", did="",
                          agent="", rule="r", jurisdiction="ZA", retention_class="default", consent_state="granted",
                          started_at=1.0))


def test_a_channel_belongs_to_exactly_one_device():
    assert endpoint_of("PJSIP/1001-0000002a") == "PJSIP/1001"
    assert endpoint_of("PJSIP/10010-0000002a") == "PJSIP/10010"
    assert endpoint_of("PJSIP/sales-2-00000007") == "PJSIP/sales-2"  # not PJSIP/sales
    assert endpoint_of("PJSIP/sales-0000000b") == "PJSIP/sales"
    assert endpoint_of("Local/1001@agents-00000012;1") == "Local/1001@agents"
    assert endpoint_of("Local/1001@agents-00000012;2") == "Local/1001@agents"
    assert endpoint_of("DAHDI/1-1") == "DAHDI/1"


async def test_prefix_sharing_devices_are_different_agents(live):
    live.users.add("sales", "agent", "sales-password-x", ["PJSIP/sales"])
    live.users.add("sales-2", "agent", "sales-2-password-x", ["PJSIP/sales-2"])
    await live.refresh_rules()
    live.handle(ev("Newchannel", Uniqueid="7.1", Linkedid="7.1", Channel="PJSIP/sales-2-00000007", Exten="0821234567"))
    assert live.calls["7.1"].agents == ["sales-2"]


async def test_a_queue_call_belongs_to_the_agent_who_answers_not_to_those_it_rang(live):
    trunk, linked = "PJSIP/trunk-00000001", "1700000000.1"
    live.handle(ev("Newchannel", Uniqueid=linked, Linkedid=linked, Channel=trunk, Exten="27215550999",
                   CallerIDNum="+27821234567"))
    row(live.catalog, "rq", linked)
    live.handle(ev("UserEvent", UserEvent="CallvaultConsent", Uniqueid=linked, Linkedid=linked, Channel=trunk,
                   Consent="granted", Record="yes", RecordingId="rq", Rule="za"))
    live.handle(ev("MixMonitorStart", Uniqueid=linked, Linkedid=linked, Channel=trunk))
    # Ring-all: both phones ring; neither is the call's agent yet.
    for uid, ch in (("1700000000.2", "PJSIP/1001-00000002"), ("1700000000.3", "PJSIP/2002-00000003")):
        live.handle(ev("Newchannel", Uniqueid=uid, Linkedid=linked, Channel=ch, Exten="s"))
    call = live.calls[linked]
    assert call.agents == [] and call.caller == "…4567" and call.did == "27215550999"
    # Bob answers: his channel joins the caller's bridge.
    live.handle(ev("BridgeEnter", BridgeUniqueid="b1", Uniqueid=linked, Linkedid=linked, Channel=trunk))
    live.handle(ev("BridgeEnter", BridgeUniqueid="b1", Uniqueid="1700000000.3", Linkedid=linked,
                   Channel="PJSIP/2002-00000003"))
    live.handle(ev("Hangup", Uniqueid="1700000000.2", Linkedid=linked, Channel="PJSIP/1001-00000002"))
    assert call.agents == ["bob"]
    # The agent is written to the catalog by a task LiveCalls spawns.
    await until(lambda: live.catalog.get("rq").agent, what="the agent stored in the catalog")
    assert live.catalog.get("rq").agent == "bob"
    assert (call.consent, call.recording, call.recording_ids) == ("granted", "recording", ["rq"])

    live.handle(ev("MixMonitorMute", Uniqueid=linked, Linkedid=linked, Channel=trunk, Direction="both", State="1"))
    assert call.recording == "paused"
    live.handle(ev("UserEvent", UserEvent="CallvaultConsent", Uniqueid=linked, Linkedid=linked, Channel=trunk,
                   Consent="revoked", Record="no", RecordingId="rq"))
    assert (call.consent, call.recording) == ("revoked", "stopped")
    for uid in (linked, "1700000000.3"):
        live.handle(ev("Hangup", Uniqueid=uid, Linkedid=linked))
    assert call.ended_at is not None
    assert live.metrics.value("callvault_consent_outcomes_total", outcome="granted") == 1
    assert live.metrics.value("callvault_calls_total") == 1


async def test_direct_lines_and_outbound_calls_and_who_is_told(live):
    alice_sub = live.subscribe(live.users.get("alice"), sees_all=False)
    boss = live.subscribe(live.users.get("bob"), sees_all=True)
    # A call to alice's direct line: hers from the first event, consent still pending.
    live.handle(ev("Newchannel", Uniqueid="9.1", Linkedid="9.1", Channel="PJSIP/trunk-9", Exten="27215550100"))
    assert live.calls["9.1"].agents == ["alice"] and live.calls["9.1"].consent == "pending"
    # An outbound call that carol's phone starts is carol's.
    live.handle(ev("Newchannel", Uniqueid="8.1", Linkedid="8.1", Channel="PJSIP/1001-00000008", Exten="0821234567"))
    assert live.calls["8.1"].agents == ["carol"]
    # Declined: nothing is recorded.
    live.handle(ev("UserEvent", UserEvent="CallvaultConsent", Uniqueid="9.1", Linkedid="9.1",
                   Channel="PJSIP/trunk-9", Consent="declined", Record="no", RecordingId=""))
    assert (live.calls["9.1"].consent, live.calls["9.1"].recording) == ("declined", "not-recorded")
    seen = [alice_sub.queue.get_nowait()["call"]["call_id"] for _ in range(alice_sub.queue.qsize())]
    assert set(seen) == {"9.1"}
    boss_seen = {boss.queue.get_nowait()["call"]["call_id"] for _ in range(boss.queue.qsize())}
    assert boss_seen == {"9.1", "8.1"}
    assert [c.call_id for c in live.visible(live.users.get("alice"), False)] == ["9.1"]


async def test_a_blind_transfer_moves_the_call_and_stores_both_agents_spans(live):
    """The events of a blind transfer exactly as Asterisk 22 raised them in the lab
    (tests/appliance/web/test_transfers.py runs the real one)."""
    live.users.add("tina", "agent", "tina-password-x", ["Local/1001@agents"])
    live.users.add("tom", "agent", "tom-password-x", ["Local/2002@agents"])
    await live.refresh_rules()
    now = [100.0]
    live.clock = lambda: now[0]
    tina_page = live.subscribe(live.users.get("tina"), sees_all=False)
    tom_page = live.subscribe(live.users.get("tom"), sees_all=False)
    linked, caller, tina_ch, tom_ch = "lab-1", "Local/2721@agent-line-00000000;2", "Local/1001@agents-00000001;1", \
        "Local/2002@agents-00000002;1"
    live.handle(ev("Newchannel", Uniqueid="lab-2", Linkedid=linked, Channel=caller, Exten="27215550777"))
    row(live.catalog, "rt", linked)
    live.handle(ev("UserEvent", UserEvent="CallvaultConsent", Uniqueid="lab-2", Linkedid=linked, Channel=caller,
                   Consent="implied", Record="yes", RecordingId="rt", Rule="us"))
    for uid, ch in (("9.2", tina_ch), ("9.3", "Local/1001@agents-00000001;2")):
        live.handle(ev("Newchannel", Uniqueid=uid, Linkedid=linked, Channel=ch, Exten="1001"))
    live.handle(ev("BridgeEnter", BridgeUniqueid="b1", Uniqueid="9.2", Linkedid=linked, Channel=tina_ch))
    live.handle(ev("BridgeEnter", BridgeUniqueid="b1", Uniqueid="lab-2", Linkedid=linked, Channel=caller))
    call = live.calls[linked]
    assert call.agents == ["tina"]
    now[0] = 110.0
    live.handle(ev("BlindTransfer", BridgeUniqueid="b1"))
    live.handle(ev("BridgeLeave", BridgeUniqueid="b1", Uniqueid="lab-2", Linkedid=linked, Channel=caller))
    live.handle(ev("BridgeLeave", BridgeUniqueid="b1", Uniqueid="9.2", Linkedid=linked, Channel=tina_ch))
    live.handle(ev("Hangup", Uniqueid="9.2", Linkedid=linked, Channel=tina_ch))
    live.handle(ev("Hangup", Uniqueid="9.3", Linkedid=linked))
    # Tina was the last agent on it: she keeps seeing the call until someone takes it.
    assert call.agents == ["tina"] and call.spans[0].left_at == 110.0
    now[0] = 111.0
    for uid, ch in (("9.4", tom_ch), ("9.5", "Local/2002@agents-00000002;2")):
        live.handle(ev("Newchannel", Uniqueid=uid, Linkedid=linked, Channel=ch, Exten="2002"))
    live.handle(ev("BridgeEnter", BridgeUniqueid="b2", Uniqueid="9.4", Linkedid=linked, Channel=tom_ch))
    live.handle(ev("BridgeEnter", BridgeUniqueid="b2", Uniqueid="lab-2", Linkedid=linked, Channel=caller))
    assert call.agents == ["tom"]
    tina_seen = [tina_page.queue.get_nowait() for _ in range(tina_page.queue.qsize())]
    assert tina_seen[-1] == {"type": "gone", "call_id": linked}
    assert [m["call"]["agents"] for m in (tom_page.queue.get_nowait() for _ in range(tom_page.queue.qsize()))][-1] \
        == ["tom"]
    now[0] = 150.0
    for uid in ("lab-1", "lab-2", "9.4", "9.5"):
        live.handle(ev("BridgeLeave", BridgeUniqueid="b2", Uniqueid=uid, Linkedid=linked))
        live.handle(ev("Hangup", Uniqueid=uid, Linkedid=linked))
    assert call.ended_at == 150.0 and call.agents == ["tom"]  # tom sees the call end
    await until(lambda: [s.left_at for s in live.catalog.agents_of(["rt"])["rt"]] == [110.0, 150.0],
                what="both spans stored and closed")
    assert [(s.agent, s.joined_at) for s in live.catalog.agents_of(["rt"])["rt"]] == [("tina", 100.0), ("tom", 111.0)]
    assert live.catalog.get("rt").agent == "tina"


async def test_a_direct_line_agents_span_lasts_until_the_call_ends(live):
    live.clock = lambda: 5.0
    live.handle(ev("Newchannel", Uniqueid="d.1", Linkedid="d.1", Channel="PJSIP/trunk-1", Exten="27215550100"))
    row(live.catalog, "rd", "d.1")
    live.handle(ev("UserEvent", UserEvent="CallvaultConsent", Uniqueid="d.1", Linkedid="d.1",
                   Channel="PJSIP/trunk-1", Consent="granted", Record="yes", RecordingId="rd", Rule="za"))
    live.clock = lambda: 9.0
    live.handle(ev("Hangup", Uniqueid="d.1", Linkedid="d.1"))
    await until(lambda: live.catalog.agents_of(["rd"])["rd"] and live.catalog.agents_of(["rd"])["rd"][0].left_at,
                what="alice's span closed")
    [span] = live.catalog.agents_of(["rd"])["rd"]
    assert (span.agent, span.joined_at, span.left_at) == ("alice", 5.0, 9.0)
