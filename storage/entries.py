"""The bodies of ledger entries that one package writes and another reads.

The agi package writes ``consent``, ``revoke``, ``pause`` and ``resume`` entries; the
archiver (adopting a spool file whose catalog row was lost), the live view and the
status route read them back. These frozen dataclasses are that contract: writers
append ``x.to_body()``, readers take ``Cls.from_body(entry.data)``.

``to_body`` gives exactly the dict the handlers have always written (the same keys
and values), so new entries hash as before. ``from_body`` is lenient, as the readers
always were: a key missing from an entry (hand-written, or from a test) reads as an
empty value, never as an error, and keys it does not know are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .body_fields import _float, _str
from .record import Default, Record

if TYPE_CHECKING:
    from .control_entries import PauseBody, RevokeBody

__all__ = ["ConsentBody", "PauseBody", "RevokeBody"]


_OPTIONAL = ("party", "allow_key", "refuse_key", "dialled")  # in the body only when set


class ConsentBody(Record):
    """A ``consent`` entry: the notice played and what the caller's answer decided.

    An ``abandoned`` consent (hang-up during the notice) was never answered: its body
    has no ``digits``, ``attempts`` nor ``recording_id`` (they read back as ``""``, 0
    and None). Every other outcome's body has all three, ``recording_id`` being null
    unless ``record``.

    What the caller heard: ``notice`` is the sound name played; ``notice_id`` the
    prompt, ``notice_language`` the language found along the fallback chain,
    ``notice_version`` what the audio was made from (``text-sha256:...``,
    ``source-sha256:...`` or ``master-sha256:...``) and ``notice_sha256`` each
    installed format's SHA-256 (Asterisk picks the format when it plays and does not
    say which). Entries written before these fields existed have none of them; they
    read back empty and their bodies (and hashes) are unchanged.

    Who answered: ``party`` is ``caller`` (the channel that ran the consent route) or
    ``callee`` (the called channel, in the pre-bridge subroutine of an all-party
    rule); an entry without it is a caller's. ``allow_key`` / ``refuse_key`` are the
    keys the notice offered; ``dialled`` is the number an outbound caller dialled.
    One call's entries share ``linkedid``.
    """

    KIND: ClassVar[str] = "consent"
    ABANDONED: ClassVar[str] = "abandoned"
    OBJECTED: ClassVar[str] = "objected"  # a standing objection: no notice played, not recorded
    CALLER: ClassVar[str] = "caller"
    CALLEE: ClassVar[str] = "callee"

    consent_id: str
    uniqueid: str
    linkedid: str
    channel: str
    caller_hmac: str
    did: str
    rule: str
    jurisdiction: str
    mode: str
    language: str
    notice: str
    started_at: float
    outcome: str  # granted | declined | implied | abandoned
    reason: str
    record: bool
    ended_at: float
    digits: str = ""
    attempts: int = 0
    recording_id: str | None = None
    notice_id: str = ""
    notice_language: str = ""
    notice_version: str = ""
    notice_sha256: Mapping[str, str] = Default(dict)
    party: str = ""
    allow_key: str = ""
    refuse_key: str = ""
    dialled: str = ""

    @property
    def answered(self) -> bool:
        return self.outcome not in (self.ABANDONED, self.OBJECTED)

    @property
    def by_callee(self) -> bool:
        return self.party == self.CALLEE

    def to_body(self) -> dict[str, Any]:
        d = self.__dict__
        body: dict[str, Any] = {
            "consent_id": d["consent_id"], "uniqueid": d["uniqueid"], "linkedid": d["linkedid"],
            "channel": d["channel"], "caller_hmac": d["caller_hmac"], "did": d["did"],
            "rule": d["rule"], "jurisdiction": d["jurisdiction"], "mode": d["mode"],
            "language": d["language"], "notice": d["notice"], "started_at": d["started_at"],
            "outcome": d["outcome"], "reason": d["reason"],
        }
        if self.answered:
            body["digits"], body["attempts"], body["record"] = d["digits"], d["attempts"], d["record"]
            body["recording_id"] = d["recording_id"]
        else:
            body["record"] = d["record"]
        body["ended_at"] = d["ended_at"]
        if d["notice_id"]:
            body["notice_id"], body["notice_language"] = d["notice_id"], d["notice_language"]
            body["notice_version"] = d["notice_version"]
            body["notice_sha256"] = dict(sorted(d["notice_sha256"].items()))
        for key in _OPTIONAL:
            if d[key]:
                body[key] = d[key]
        return body

    @classmethod
    def from_body(cls, d: Mapping[str, Any]) -> ConsentBody:
        rid = d.get("recording_id")
        return cls(
            consent_id=_str(d, "consent_id"), uniqueid=_str(d, "uniqueid"), linkedid=_str(d, "linkedid"),
            channel=_str(d, "channel"), caller_hmac=_str(d, "caller_hmac"), did=_str(d, "did"),
            rule=_str(d, "rule"), jurisdiction=_str(d, "jurisdiction"), mode=_str(d, "mode"),
            language=_str(d, "language"), notice=_str(d, "notice"), started_at=_float(d, "started_at"),
            outcome=_str(d, "outcome"), reason=_str(d, "reason"), record=bool(d.get("record")),
            ended_at=_float(d, "ended_at"), digits=_str(d, "digits"), attempts=int(d.get("attempts") or 0),
            recording_id=str(rid) if rid else None, notice_id=_str(d, "notice_id"),
            notice_language=_str(d, "notice_language"), notice_version=_str(d, "notice_version"),
            notice_sha256={str(k): str(v) for k, v in dict(d.get("notice_sha256") or {}).items()},
            party=_str(d, "party"), allow_key=_str(d, "allow_key"), refuse_key=_str(d, "refuse_key"),
            dialled=_str(d, "dialled"))


def __getattr__(name: str) -> type:
    # The revoke, pause and resume bodies are defined in storage.control_entries and
    # imported from here, when first asked for: the consent path (a classic AGI
    # process per call) does not create their classes.
    if name in ("RevokeBody", "PauseBody"):
        from . import control_entries

        return getattr(control_entries, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
