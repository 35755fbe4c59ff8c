"""Live calls for the agent page, fed by AMI events, and who each call belongs to.

Attribution (which agent a call is): a user's *agent identifiers*
(``storage/users.py``) are matched against the call as it happens:

- ``did:NUMBER`` matches a call whose DID (the dialled number of its first channel,
  or the DID in its consent ledger entry) is NUMBER: a direct line;
- ``TECH/resource`` (``PJSIP/1001``, ``Local/1001@agents``) matches a call bridged
  with a channel of exactly that device (``BridgeEnter``: the agent answered, from a
  queue, a ring group or a plain Dial), or a call that the phone itself started
  (outbound). ``endpoint_of`` gives a channel's device: ``PJSIP/1001-0000002a`` is
  ``PJSIP/1001``, ``PJSIP/1001-2-0000002b`` is ``PJSIP/1001-2``, not ``PJSIP/1001``.

Ringing alone attributes nothing (a ring-all queue rings many phones). The first agent
matched is written to the catalog's ``agent`` column of each of the call's recordings.
A call is keyed by its ``linkedid``, which Asterisk keeps for every channel of the call.

Transfers: every agent who handles the call gets a span (``AgentSpan``) in the catalog's
``recording_agents``, from the agent's channel entering the call's bridge to that channel
leaving it (``BridgeLeave`` or ``Hangup``); a direct-line (``did:``) agent's span lasts until
the call ends; a channel that enters another bridge within ``MOVE_GRACE`` keeps its span
(Asterisk moves channels so in attended transfers and Local channel optimisation). Blind
transfer: the caller leaves the agent's bridge and dials the next agent. Attended (AMI
``Atxfer``, a phone's transfer key): the caller waits on hold in its bridge while the
transferor consults the target, whose span starts on answering; when the transferor hangs
up, the target joins the caller's bridge. The caller's channel, which carries MixMonitor,
stays in its bridge and is never replaced: the recording goes on. The live view follows: an
agent whose span ended while another agent is on the call no longer sees it (``gone``); the
last agent to leave keeps seeing it until someone else takes the call, or it ends.

Live state is memory only: after a restart, calls already in progress show up again
from their next event. Ended calls stay visible for ``KEEP_ENDED`` seconds.

Several nodes (``appliance/cluster.py``): each change a subscriber is told of is also
handed to ``publish`` (a pbx node's PostgreSQL NOTIFY); a web node ``merge``s the calls
other nodes publish, marked with their ``node``, so an agent sees their calls
whichever node they signed in to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agi import variables as v
from agi.ami import AmiClient, AmiEvent
from storage.catalog import AgentSpan, Catalog
from storage.entries import ConsentBody
from storage.errors import NotFound
from storage.ledger import Ledger
from storage.users import User, Users

from .livecall import LiveCall, Span, Subscriber, endpoint_of, mask_number
from .metrics import Metrics

log = logging.getLogger(__name__)

KEEP_ENDED = 30.0
MOVE_GRACE = 1.0  # a bridge change (BridgeLeave, then BridgeEnter) is one move, not a departure
RULES_REFRESH = 5.0
RECORDING_STATES = ("not-recorded", "recording", "paused", "stopped")


class LiveCalls:
    def __init__(self, *, users: Users, catalog: Catalog, ledger: Ledger, metrics: Metrics,
                 clock: Callable[[], float] = time.time):
        self.users, self.catalog, self.ledger, self.metrics = users, catalog, ledger, metrics
        self.clock = clock
        self.calls: dict[str, LiveCall] = {}
        self._by_uid: dict[str, str] = {}  # uniqueid -> linkedid
        self._bridges: dict[str, dict[str, str]] = {}  # bridge id -> uniqueid -> channel
        self._agent_uids: dict[str, set[str]] = {}  # an agent's channel -> the calls it holds spans of
        self._leaving: dict[str, float] = {}  # an agent's channel that left a bridge -> when
        self._rules: list[tuple[str, str]] = []  # (identifier, user name)
        self._subscribers: set[Subscriber] = set()
        self._tasks: set[asyncio.Task] = set()
        self._refresher: asyncio.Task | None = None
        self._ami: AmiClient | None = None
        self.publish: Callable[[dict[str, Any]], None] | None = None  # to the other nodes
        self._by_name = self._handlers()  # event name -> its handler, made once

    # -- lifecycle --------------------------------------------------------------------------
    def _handlers(self) -> dict[str, Callable[[AmiEvent], None]]:
        return {"Newchannel": self._newchannel, "Hangup": self._hangup, "UserEvent": self._userevent,
                "MixMonitorStart": self._mixmonitor, "MixMonitorStop": self._mixmonitor,
                "MixMonitorMute": self._mixmonitor, "BridgeEnter": self._bridge_enter,
                "BridgeLeave": self._bridge_leave, "NewCallerid": self._callerid}

    async def start(self, ami: AmiClient | None) -> None:
        """Follow ``ami``'s events (None on a node without Asterisk: calls come from ``merge``)."""
        await self.refresh_rules()
        self._ami = ami
        self._registered = self.handle  # one bound-method object: remove_handler compares identity
        for name in self._by_name if ami is not None else ():
            ami.on_event(name, self._registered)
        self._refresher = asyncio.create_task(self._refresh_loop(), name="live-rules")

    def handle(self, event: AmiEvent) -> None:
        """Take in one AMI event (those of other names are ignored)."""
        handler = self._by_name.get(event.name)
        if handler is not None:
            handler(event)

    async def stop(self) -> None:
        if self._ami is not None:
            self._ami.remove_handler(self._registered)
        tasks = [*self._tasks, *([self._refresher] if self._refresher else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh_rules(self) -> None:
        # Every RULES_REFRESH seconds, calls or not. On SQLite the read (a few users) runs
        # here: a worker thread's hand-off and wake-ups cost serve more CPU than the read.
        if self.users.db.dialect == "sqlite":
            users = self.users.list()
        else:
            users = await asyncio.to_thread(self.users.list)
        self._rules = [(ident, u.name) for u in users if not u.disabled and u.role == "agent"
                       for ident in u.agent_ids]

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(RULES_REFRESH)
            try:
                await self.refresh_rules()
            except Exception:  # a task boundary: keep the last rules
                log.exception("agent identifiers could not be reloaded")

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- subscribers ------------------------------------------------------------------------
    def subscribe(self, user: User, sees_all: bool, session_id: str = "") -> Subscriber:
        sub = Subscriber(user, sees_all, session_id)
        self._subscribers.add(sub)
        return sub

    def end_session(self, session_id: str) -> None:
        """Close the sockets of a session that was signed out."""
        for sub in list(self._subscribers):
            if sub.session_id == session_id:
                sub.ended.set()

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers)

    def visible(self, user: User, sees_all: bool) -> list[LiveCall]:
        return sorted((c for c in self.calls.values() if (sees_all and self.shown(c)) or user.name in c.agents),
                      key=lambda c: c.started_at, reverse=True)

    @staticmethod
    def shown(call: LiveCall) -> bool:
        # Supervisors see calls callvault is involved in, not every channel on the PBX.
        return bool(call.agents) or call.consent != "pending"

    def _changed(self, call: LiveCall) -> None:
        call.updated_at = self.clock()
        if not self.shown(call) or (self.publish is None and not self._subscribers):
            return  # nobody to tell: no page open, no other node
        public = call.public()
        if self.publish is not None:
            self.publish(public)
        self._tell(call, public)

    def merge(self, node: str, d: dict[str, Any]) -> None:
        """Take in a change another node published (its ``LiveCall.public()``)."""
        try:
            incoming = LiveCall.remote(node, d)
        except (KeyError, TypeError, ValueError):
            log.warning("a live call from node %s could not be read", node)
            return
        known = self.calls.get(incoming.call_id)
        if known is not None and known.node != node:
            return  # the same linkedid on two PBXes: keep the first
        self.calls[incoming.call_id] = incoming
        if incoming.ended_at is not None and (known is None or known.ended_at is None):
            asyncio.get_running_loop().call_later(KEEP_ENDED, self._forget, incoming.call_id, incoming.ended_at)
        self._tell(incoming, incoming.public())

    def _tell(self, call: LiveCall, public: dict[str, Any]) -> None:
        message = {"type": "call", "call": public}
        for sub in list(self._subscribers):
            if sub.may_see(call):
                try:
                    sub.queue.put_nowait(message)
                except asyncio.QueueFull:  # a stalled page: it reloads its snapshot on reconnect
                    self.unsubscribe(sub)

    def _gone(self, call: LiveCall, user: str) -> None:
        """``user`` no longer handles ``call``: their pages drop it (supervisors keep it)."""
        if user not in call.agents:
            return
        call.agents.remove(user)
        message = {"type": "gone", "call_id": call.call_id}
        for sub in list(self._subscribers):
            if sub.user.name == user and not sub.sees_all:
                try:
                    sub.queue.put_nowait(message)
                except asyncio.QueueFull:
                    self.unsubscribe(sub)

    # -- attribution ------------------------------------------------------------------------
    def _attribute(self, call: LiveCall, user: str, uid: str = "") -> None:
        span = next((s for s in call.spans if s.agent == user and s.left_at is None), None)
        if span is None:
            span = Span(user, self.clock())
            call.spans.append(span)
            if len(call.spans) == 1 and call.recording_ids:
                self._spawn(self._store_agent(list(call.recording_ids), user))
            self._store_span(call, span)
            for earlier in [s.agent for s in call.spans if s.left_at is not None and s.agent != user]:
                if not any(s.agent == earlier and s.left_at is None for s in call.spans):
                    self._gone(call, earlier)  # the call went on to this agent
            if user not in call.agents:
                call.agents.append(user)
            self._changed(call)
        if uid:
            span.uids.add(uid)
            self._agent_uids.setdefault(uid, set()).add(call.call_id)

    def _leave(self, uid: str) -> None:
        """An agent's channel left a bridge: it has left the call unless it enters another
        bridge (``_bridge_enter``) or hangs up (``_hangup``) within ``MOVE_GRACE``."""
        if uid not in self._agent_uids:
            return
        at = self._leaving[uid] = self.clock()
        asyncio.get_running_loop().call_later(MOVE_GRACE, self._settle, uid, at)

    def _settle(self, uid: str, at: float) -> None:
        if self._leaving.get(uid) == at:
            self._left(uid)

    def _left(self, uid: str) -> None:
        """An agent's channel left the call (its bridge, or hung up): the agent's span ends
        once they have no channel left on the call."""
        at = self._leaving.pop(uid, None)
        for call_id in self._agent_uids.pop(uid, ()):
            call = self.calls.get(call_id)
            if call is None:
                continue
            for span in call.spans:
                if uid in span.uids and span.left_at is None:
                    span.uids.discard(uid)
                    if not span.uids:
                        self._close(call, span, at)

    def _close(self, call: LiveCall, span: Span, at: float | None = None) -> None:
        span.left_at = self.clock() if at is None else at
        self._store_span(call, span)
        if call.ended_at is None and any(s.left_at is None for s in call.spans):
            self._gone(call, span.agent)
            self._changed(call)

    def _store_span(self, call: LiveCall, span: Span) -> None:
        if call.recording_ids:
            self._spawn(self._write_spans(list(call.recording_ids), [span.stored()]))

    def _match_did(self, call: LiveCall) -> None:
        if call.did:
            for ident, user in self._rules:
                if ident == f"did:{call.did}" or ident == f"did:+{call.did}":
                    self._attribute(call, user)

    def _match_channel(self, call: LiveCall, channel: str, uid: str) -> None:
        device = endpoint_of(channel)
        for ident, user in self._rules:
            if ident == device:
                self._attribute(call, user, uid)

    async def _store_agent(self, recording_ids: list[str], user: str) -> None:
        for rid in recording_ids:
            try:
                await asyncio.to_thread(self.catalog.update, rid, agent=user)
            except NotFound:
                log.warning("recording %s: no catalog row to attribute to %s", rid, user)

    async def _write_spans(self, recording_ids: list[str], spans: list[AgentSpan]) -> None:
        for span in spans:  # idempotent upserts: the order the tasks run in does not matter
            await asyncio.to_thread(self.catalog.note_agent, recording_ids, span)

    # -- events -----------------------------------------------------------------------------
    def _call_for(self, event: AmiEvent) -> LiveCall | None:
        uid = event.get("Uniqueid")
        linkedid = self._by_uid.get(uid) or event.get("Linkedid") or uid
        if not linkedid:
            return None
        call = self.calls.get(linkedid)
        if call is None:
            call = self.calls[linkedid] = LiveCall(linkedid, self.clock())
        if uid and uid not in call.channels and call.ended_at is None:
            call.channels[uid] = event.get("Channel")
            self._by_uid[uid] = linkedid
        return call

    def _newchannel(self, event: AmiEvent) -> None:
        call = self._call_for(event)
        if call is None:
            return
        uid, channel = event.get("Uniqueid"), event.get("Channel")
        exten = str(event.get("Exten", ""))
        if not call.did and exten.lstrip("+").isdigit():
            call.did = exten.lstrip("+")
            self._match_did(call)
        if uid == call.call_id:
            self._match_channel(call, channel, uid)  # a call the agent's phone started
        self._callerid(event)
        self._changed(call)

    def _callerid(self, event: AmiEvent) -> None:
        # The first channel's number is the caller's; another channel's only if that had none.
        call = self.calls.get(self._by_uid.get(event.get("Uniqueid"), ""))
        number = str(event.get("CallerIDNum", ""))
        if call is None or not any(c.isdigit() for c in number):
            return
        if event.get("Uniqueid") == call.call_id or not call.caller:
            masked = mask_number(number)
            if masked != call.caller:
                call.caller = masked
                self._changed(call)

    def _userevent(self, event: AmiEvent) -> None:
        if event.get("UserEvent") == v.PCI_EVENT:
            self._pci(event)
            return
        if event.get("UserEvent") != v.USER_EVENT:
            return
        call = self._call_for(event)
        if call is None:
            return
        consent, record = event.get(v.EVENT_CONSENT), event.get(v.EVENT_RECORD)
        rids = [r for r in str(event.get(v.EVENT_RECORDING_ID, "")).split(",") if r]
        if consent == v.REVOKED:
            if call.recording in ("recording", "paused"):
                call.recording = "stopped"
        else:
            self.metrics.calls.inc()
            self.metrics.consent.labels(consent or "unknown").inc()
            call.rule = event.get(v.EVENT_RULE) or call.rule
            if record == v.YES and rids:
                call.recorded_channel = event.get("Channel")
                if call.recording != "paused":
                    call.recording = "recording"
            elif call.recording != "stopped":
                call.recording = "not-recorded"
        call.consent = consent or call.consent
        new = [r for r in rids if r not in call.recording_ids]
        call.recording_ids.extend(new)
        if new and call.spans:
            self._spawn(self._store_agent(new, call.spans[0].agent))
            self._spawn(self._write_spans(new, [s.stored() for s in call.spans]))
        if not call.did:
            self._spawn(self._did_from_ledger(call))
        self._changed(call)

    async def _did_from_ledger(self, call: LiveCall) -> None:
        entries = await asyncio.to_thread(self.ledger.find, call_id=call.call_id, kind=ConsentBody.KIND)
        if entries and not call.did:
            call.did = ConsentBody.from_body(entries[-1].data).did
            self._match_did(call)
            self._changed(call)

    def _mixmonitor(self, event: AmiEvent) -> None:
        call = self._call_for(event)
        if call is None:
            return
        if event.name == "MixMonitorStart":
            call.recording = "recording"
            call.recorded_channel = event.get("Channel")
        elif event.name == "MixMonitorStop":
            call.recording = "stopped"
        elif event.name == "MixMonitorMute" and call.recording in ("recording", "paused"):
            call.recording = "paused" if str(event.get("State")) in ("1", "on", "true") else "recording"
        self._changed(call)

    def _pci(self, event: AmiEvent) -> None:
        """The feature codes or the IVR's Gosub paused or resumed the call's recording."""
        state = event.get(v.EVENT_PCI_STATE)
        call = self._call_for(event)
        if call is None or state not in (v.PCI_PAUSED, v.PCI_RECORDING):
            return
        self.set_recording(call.call_id, state, by=str(event.get(v.EVENT_PCI_TRIGGER) or "agi"))

    def set_recording(self, call_id: str, state: str, *, by: str) -> None:
        """A pause or resume by ``by`` (web, dtmf, ivr, agi): shown with its interval."""
        call = self.calls.get(call_id)
        if call is None:
            return
        call.note_pause(state == "paused", by, self.clock())
        if call.recording in ("recording", "paused"):
            call.recording = state
        self._changed(call)

    def _bridge_enter(self, event: AmiEvent) -> None:
        call = self._call_for(event)
        if call is None:
            return
        members = self._bridges.setdefault(event.get("BridgeUniqueid"), {})
        uid, channel = event.get("Uniqueid"), event.get("Channel")
        self._leaving.pop(uid, None)  # moved from another bridge: still on the call
        for other_uid, other_channel in members.items():
            other = self.calls.get(self._by_uid.get(other_uid, ""))
            self._match_channel(call, other_channel, other_uid)  # the agent was there first
            if other is not None:
                self._match_channel(other, channel, uid)  # the agent joins the caller
        members[uid] = channel

    def _bridge_leave(self, event: AmiEvent) -> None:
        members = self._bridges.get(event.get("BridgeUniqueid"))
        if members is not None:
            members.pop(event.get("Uniqueid"), None)
            if not members:
                del self._bridges[event.get("BridgeUniqueid")]
        self._leave(event.get("Uniqueid"))

    def _hangup(self, event: AmiEvent) -> None:
        uid = event.get("Uniqueid")
        self._left(uid)
        linkedid = self._by_uid.pop(uid, None)
        call = self.calls.get(linkedid or "")
        if call is None:
            return
        call.channels.pop(uid, None)
        if not call.channels and call.ended_at is None:
            call.ended_at = self.clock()
            if call.recording in ("recording", "paused"):
                call.recording = "stopped"
            for span in call.spans:
                if span.left_at is None:  # a direct line's agent, or channels seen only in part
                    self._close(call, span)
            self._changed(call)
            asyncio.get_running_loop().call_later(KEEP_ENDED, self._forget, call.call_id, call.ended_at)

    def _forget(self, call_id: str, ended_at: float) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.ended_at == ended_at:
            del self.calls[call_id]
