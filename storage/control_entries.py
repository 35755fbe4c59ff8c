"""The ``revoke``, ``pause`` and ``resume`` entry bodies (see :mod:`storage.entries`,
which is where they are imported from)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .entries import _float, _str, _strs


@dataclass(frozen=True)
class RevokeBody:
    """A ``revoke`` entry: consent withdrawn mid-call, the call's live recordings
    flagged for erasure, and which of them MixMonitor could be stopped on."""

    KIND: ClassVar[str] = "revoke"
    STOP_AND_ERASE: ClassVar[str] = "stop-and-erase"

    linkedid: str
    by_channel: str
    at: float
    recording_ids: tuple[str, ...]
    stopped: tuple[str, ...]
    not_stopped: tuple[str, ...]  # go on being written until their channel hangs up
    action: str = STOP_AND_ERASE

    def to_body(self) -> dict[str, Any]:
        return {
            "linkedid": self.linkedid, "by_channel": self.by_channel, "at": self.at,
            "recording_ids": list(self.recording_ids), "action": self.action,
            "stopped": list(self.stopped), "not_stopped": list(self.not_stopped),
        }

    @classmethod
    def from_body(cls, d: Mapping[str, Any]) -> RevokeBody:
        return cls(linkedid=_str(d, "linkedid"), by_channel=_str(d, "by_channel"), at=_float(d, "at"),
                   recording_ids=_strs(d, "recording_ids"), stopped=_strs(d, "stopped"),
                   not_stopped=_strs(d, "not_stopped"), action=_str(d, "action"))


@dataclass(frozen=True)
class PauseBody:
    """A ``pause`` or ``resume`` entry (PCI: MixMonitor muted or unmuted).

    ``trigger`` is what asked for it (one of ``TRIGGERS``), ``actor`` who: the web
    user, the OS account behind the CLI, or the channel that dialled the feature code
    or ran the IVR's Gosub.
    """

    PAUSE: ClassVar[str] = "pause"
    RESUME: ClassVar[str] = "resume"
    # dtmf: an agent's feature code; ivr: the dialplan's Gosub; agi: another AGI call.
    TRIGGERS: ClassVar[tuple[str, ...]] = ("dtmf", "ivr", "agi", "web", "cli")

    recording_id: str
    channel: str
    at: float
    actor: str
    trigger: str

    @classmethod
    def kind(cls, paused: bool) -> str:
        return cls.PAUSE if paused else cls.RESUME

    def to_body(self) -> dict[str, Any]:
        body = {"recording_id": self.recording_id, "channel": self.channel, "at": self.at, "actor": self.actor}
        if self.trigger:  # entries written before triggers were recorded have none
            body["trigger"] = self.trigger
        return body

    @classmethod
    def from_body(cls, d: Mapping[str, Any]) -> PauseBody:
        return cls(recording_id=_str(d, "recording_id"), channel=_str(d, "channel"), at=_float(d, "at"),
                   actor=_str(d, "actor"), trigger=_str(d, "trigger"))
