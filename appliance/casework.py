"""Standing objections and legal-hold cases, as the CLI and the officer's web API use them.

Every change is in the ledger. An objection and its ledger entry commit in one
transaction (``also=``). A case change is written to the ledger first, then done; the
holds go through ``RetentionSweeper.set_legal_hold`` (the S3 object's legal hold, the
catalog flag and a ``legal_hold.set``/``legal_hold.release`` entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.cases import Cases, check_case_name
from storage.errors import NotFound
from storage.hmac_index import subject_hmacs
from storage.objections import Objections

if TYPE_CHECKING:
    from archiver.retention import RetentionSweeper
    from storage.catalog import Catalog
    from storage.ledger import Ledger

SEARCH_LIMIT = 10_000


class ObjectionDesk:
    def __init__(self, objections: Objections, ledger: Ledger, hmac_key: bytes, default_country: str):
        self.objections, self.ledger = objections, ledger
        self.key, self.country = hmac_key, default_country

    def hmacs(self, number: str) -> list[str]:
        found = subject_hmacs(self.key, number, self.country)
        if not found:
            raise ValueError(f"{number[:40]!r} has no digits; give the caller's telephone number")
        return found

    async def add(self, number: str, reason: str, actor: dict[str, Any]) -> str:
        hmacs = self.hmacs(number)
        oid, op = self.objections.add_op(hmacs, reason, str(actor["actor"]))
        await self.ledger.append_async("objection.add", {"objection_id": oid, "caller_hmacs": hmacs,
                                                         "reason": reason, **actor}, also=op)
        return oid

    async def lift(self, number: str, reason: str, actor: dict[str, Any]) -> list[str]:
        found = self.objections.active_for(self.hmacs(number))
        if not found:
            raise NotFound("no objection in force for that number")
        ids = [o.objection_id for o in found]
        await self.ledger.append_async("objection.lift", {"objection_ids": ids, "reason": reason, **actor},
                                       also=self.objections.lift_op(ids, reason, str(actor["actor"])))
        return ids


@dataclass(frozen=True)
class Selection:
    """Which recordings to add to a case: the catalog search's criteria, or one id."""

    subject: str | None = None
    since: float | None = None
    until: float | None = None
    agent: str | None = None
    did: str | None = None
    recording: str | None = None

    def empty(self) -> bool:
        return all(v is None for v in (self.subject, self.since, self.until, self.agent, self.did, self.recording))


class CaseDesk:
    def __init__(self, cases: Cases, catalog: Catalog, ledger: Ledger, sweeper: RetentionSweeper,
                 hmac_key: bytes, default_country: str):
        self.cases, self.catalog, self.ledger, self.sweeper = cases, catalog, ledger, sweeper
        self.key, self.country = hmac_key, default_country

    def create(self, name: str, reason: str, actor: dict[str, Any]) -> None:
        check_case_name(name)
        self.ledger.append("case.create", {"case": name, "reason": reason, **actor})
        self.cases.create(name, reason, str(actor["actor"]))

    def select(self, sel: Selection) -> list[str]:
        if sel.empty():
            raise ValueError("say which recordings: --subject, --since/--until, --agent, --did or --recording")
        if sel.recording is not None:
            self.catalog.get(sel.recording)  # NotFound when there is none
            return [sel.recording]
        hmacs: list[str | None] = [None]
        if sel.subject is not None:
            hmacs = list(subject_hmacs(self.key, sel.subject, self.country))
            if not hmacs:
                raise ValueError(f"subject {sel.subject[:40]!r} has no digits")
        found: dict[str, None] = {}
        for h in hmacs:
            for rec in self.catalog.search(since=sel.since, until=sel.until, caller_hmac=h, agent=sel.agent,
                                           did=sel.did, limit=SEARCH_LIMIT):
                if rec.state != "erased":
                    found[rec.recording_id] = None
        return list(found)

    def add(self, name: str, sel: Selection, actor: dict[str, Any]) -> list[str]:
        """Hold the selected recordings under the case; returns those newly added."""
        case = self.cases.get_open(name)
        added = []
        for rid in self.select(sel):
            rec = self.catalog.get(rid)
            others = self.cases.holders(rid, besides=case.name)
            if rid in self.cases.members(case.name):
                continue
            # On hold with no case holding it (or under a case that found it so): placed by hand; kept at the end.
            by_hand = bool(rec.legal_hold) and (not others or any(self.cases.held_before(o, rid) for o in others))
            self.ledger.append("case.add", {"case": case.name, **actor}, call_id=rec.linkedid or None,
                               recording_id=rid)
            self.cases.add(case.name, rid, str(actor["actor"]), by_hand)
            if not rec.legal_hold:
                self.sweeper.set_legal_hold(rid, True, f"case {case.name}: {actor['actor']}")
            added.append(rid)
        return added

    def _release(self, name: str, rid: str, actor: dict[str, Any]) -> bool:
        if self.cases.holders(rid, besides=name) or self.cases.held_before(name, rid):
            return False
        self.sweeper.set_legal_hold(rid, False, f"case {name}: {actor['actor']}")
        return True

    def remove(self, name: str, rid: str, reason: str, actor: dict[str, Any]) -> bool:
        """Take a recording out of an open case; True if its hold was released."""
        case = self.cases.get_open(name)
        if rid not in self.cases.members(case.name):
            raise NotFound(f"case {name!r} does not hold recording {rid[:100]!r}")
        rec = self.catalog.get(rid)
        self.ledger.append("case.remove", {"case": name, "reason": reason, **actor}, call_id=rec.linkedid or None,
                           recording_id=rid)
        released = self._release(name, rid, actor)
        self.cases.remove(name, rid)
        return released

    def close(self, name: str, reason: str, actor: dict[str, Any]) -> list[str]:
        """Close the case and release every hold no other open case keeps; returns those released."""
        case = self.cases.get_open(name)
        members = self.cases.members(case.name)
        self.ledger.append("case.close", {"case": name, "reason": reason, "recordings": members, **actor})
        released = [rid for rid in members if self._release(name, rid, actor)]
        self.cases.close(name, str(actor["actor"]), reason)
        return released

    def show(self, name: str) -> dict[str, Any]:
        case = self.cases.get(name)
        recs = []
        for rid in self.cases.members(name):
            try:
                rec = self.catalog.get(rid)
            except NotFound:
                recs.append({"recording_id": rid, "state": "unknown", "legal_hold": False})
                continue
            recs.append({"recording_id": rid, "state": rec.state, "legal_hold": bool(rec.legal_hold)})
        return {**case.public(), "recordings": recs}
