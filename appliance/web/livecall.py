"""A live call as the agent page shows it, the agent spans it carries, and a page's
subscription: the data :mod:`appliance.web.live` keeps up to date from AMI events."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from storage.catalog import AgentSpan
from storage.users import User

_CHANNEL_SUFFIX = re.compile(r"-[0-9a-f]+(?:;[12])?\Z")


def endpoint_of(channel: str) -> str:
    """The device a channel belongs to: Asterisk names each channel ``<device>-<hex>``
    (``PJSIP/sales-2-00000007``), and each half of a Local channel also ``;1``/``;2``
    (``Local/1001@agents-00000012;1``). Identifiers are compared with this exactly, so
    ``PJSIP/sales`` is not ``PJSIP/sales-2``."""
    return _CHANNEL_SUFFIX.sub("", channel, count=1)


def mask_number(number: str) -> str:
    digits = "".join(c for c in number if c.isdigit())
    return f"…{digits[-4:]}" if len(digits) > 4 else digits


@dataclass
class Span:
    agent: str
    joined_at: float
    left_at: float | None = None
    uids: set[str] = field(default_factory=set)  # the agent's channels on the call; none: a direct line

    def stored(self) -> AgentSpan:
        return AgentSpan(self.agent, self.joined_at, self.left_at)


@dataclass
class LiveCall:
    call_id: str  # linkedid
    started_at: float
    did: str = ""
    caller: str = ""  # masked: the agent is on the call, the page need not show the number
    channels: dict[str, str] = field(default_factory=dict)  # uniqueid -> channel
    consent: str = "pending"
    recording: str = "not-recorded"
    recording_ids: list[str] = field(default_factory=list)
    recorded_channel: str = ""
    rule: str = ""
    agents: list[str] = field(default_factory=list)  # who sees the call as theirs now
    spans: list[Span] = field(default_factory=list)  # every agent who handled it, in order
    # PCI pauses: {"from", "until" (None while paused), "by": dtmf, ivr, agi or web}
    pauses: list[dict[str, Any]] = field(default_factory=list)
    ended_at: float | None = None
    updated_at: float = 0.0
    node: str = ""  # the node whose AMI reports the call ("": this one)

    def note_pause(self, paused: bool, by: str, at: float) -> None:
        open_ = bool(self.pauses) and self.pauses[-1]["until"] is None
        if paused and not open_:
            self.pauses.append({"from": at, "until": None, "by": by})
        elif not paused and open_:
            self.pauses[-1]["until"] = at

    def public(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "did": self.did, "caller": self.caller, "consent": self.consent,
                "recording": self.recording, "recording_id": self.recording_ids[-1] if self.recording_ids else "",
                "rule": self.rule, "agents": list(self.agents), "started_at": self.started_at,
                "ended": self.ended_at is not None, "updated_at": self.updated_at, "node": self.node,
                "pauses": [dict(p) for p in self.pauses]}

    @classmethod
    def remote(cls, node: str, d: dict[str, Any]) -> LiveCall:
        """Another node's call, from the ``public()`` dict it published."""
        rid = str(d.get("recording_id") or "")
        return cls(call_id=str(d["call_id"]), started_at=float(d.get("started_at") or 0), did=str(d.get("did", "")),
                   caller=str(d.get("caller", "")), consent=str(d.get("consent", "pending")),
                   recording=str(d.get("recording", "not-recorded")), recording_ids=[rid] if rid else [],
                   rule=str(d.get("rule", "")), agents=[str(a) for a in d.get("agents") or []],
                   ended_at=float(d.get("updated_at") or 0) if d.get("ended") else None,
                   updated_at=float(d.get("updated_at") or 0), node=node,
                   pauses=[dict(p) for p in d.get("pauses") or [] if isinstance(p, dict)])


class Subscriber:
    def __init__(self, user: User, sees_all: bool, session_id: str = ""):
        self.user, self.sees_all, self.session_id = user, sees_all, session_id
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=256)
        self.ws: Any = None  # the WebSocket it feeds, closed at shutdown
        self.ended = asyncio.Event()  # its session was signed out: close now
        self.closing = False

    def may_see(self, call: LiveCall) -> bool:
        return self.sees_all or self.user.name in call.agents
