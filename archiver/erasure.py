"""Erasure of a data subject's recordings, with a certificate anyone can check.

An officer selects recordings (by the caller HMACs of a number, or by id) under a
reference (the request's case number). ``plan`` says what would happen; ``request``
writes ``erasure.request`` to the ledger and, under ``[privacy] erasure_approval =
"single"``, executes at once; under ``"two-person"`` a different officer must
``approve`` (``erasure.approve``) before anything is destroyed.

Executing crypto-shreds each archived recording: every version of its header object
is deleted (a retrieval/all node's keys may; pbx keys may not), local copies go
(spool leftovers and their markers, quarantined copies, the archiver's work files),
the catalog row becomes ``erased`` and one ``erase`` entry per recording is written.
The locked payload stays until its retain-until: ciphertext nobody can open, deleted
later by the retention sweeper. A legal hold (catalog or stored version) blocks a
recording: it is listed as held and left untouched. Recordings not archived yet are
flagged ``erase_requested``; the archiver destroys them when it handles them.

The certificate (JSON) lists the request, officers, recordings, header versions
deleted, payload retain-until dates and ledger seqs; its SHA-256 is written to the
ledger (``erasure.certificate``), so ``verify_certificate`` can check it against the
ledger and the buckets.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.catalog import Catalog, Recording
from storage.erasures import ErasureRequest, ErasureRequests
from storage.errors import NotFound
from storage.ledger import Ledger

from . import quarantine, spool
from .archive import Archive
from .errors import ArchiverError

APPROVALS = ("single", "two-person")
FORMAT = "callvault-erasure-certificate/1"


class ErasureRefused(ArchiverError):
    """The request cannot go ahead as asked (wrong officer, wrong state, unknown recording)."""


@dataclass
class Plan:
    erase: list[Recording] = field(default_factory=list)  # archived: shredded now
    held: list[tuple[Recording, str]] = field(default_factory=list)
    flagged: list[Recording] = field(default_factory=list)  # not archived yet: the archiver erases them
    erased: list[Recording] = field(default_factory=list)  # erased before

    def report(self) -> dict[str, Any]:
        return {"erase": [_planned(r) for r in self.erase],
                "held": [{"recording_id": r.recording_id, "why": why} for r, why in self.held],
                "flagged": [{"recording_id": r.recording_id, "state": r.state} for r in self.flagged],
                "already_erased": [r.recording_id for r in self.erased]}


def _planned(rec: Recording) -> dict[str, Any]:
    return {"recording_id": rec.recording_id, "started_at": iso(rec.started_at), "header_key": rec.header_key,
            "object_key": rec.object_key, "retain_until": iso(rec.retain_until)}


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _digest(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Eraser:
    def __init__(self, catalog: Catalog, ledger: Ledger, archive: Archive, requests: ErasureRequests, *,
                 approval: str = "single", work_dir: Path | None = None):
        if approval not in APPROVALS:
            raise ValueError(f"erasure approval {approval!r}: expected one of {', '.join(APPROVALS)}")
        self.catalog, self.ledger, self.archive, self.requests = catalog, ledger, archive, requests
        self.approval, self.work_dir = approval, work_dir

    # -- choosing ---------------------------------------------------------------------------

    def select(self, selection: dict[str, Any]) -> list[Recording]:
        found: dict[str, Recording] = {}
        for h in selection.get("caller_hmacs", []):
            for rec in self.catalog.search(caller_hmac=h, limit=100_000):
                found[rec.recording_id] = rec
        for rid in selection.get("recording_ids", []):
            try:
                found[rid] = self.catalog.get(rid)
            except NotFound:
                raise ErasureRefused(f"no recording {rid}") from None
        return sorted(found.values(), key=lambda r: (r.started_at, r.recording_id))

    def plan(self, selection: dict[str, Any]) -> Plan:
        plan = Plan()
        for rec in self.select(selection):
            if rec.state == "erased":
                plan.erased.append(rec)
            elif rec.legal_hold:
                plan.held.append((rec, "legal hold in the catalog"))
            elif rec.state == "archived" and self.archive.held(rec):
                plan.held.append((rec, f"legal hold on the stored payload version {rec.object_key}"))
            elif rec.state == "archived":
                plan.erase.append(rec)
            else:
                plan.flagged.append(rec)
        return plan

    # -- deciding ---------------------------------------------------------------------------

    def request(self, reference: str, selection: dict[str, Any], officer: str,
                via: dict[str, Any]) -> tuple[ErasureRequest, dict[str, Any] | None]:
        """Record the request; under single approval also execute it (the certificate)."""
        if not reference.strip():
            raise ErasureRefused("an erasure needs a reference (the data-subject request it answers)")
        plan = self.plan(selection)
        if not (plan.erase or plan.held or plan.flagged or plan.erased):
            raise ErasureRefused("the selection matches no recording")
        req = self.requests.add(reference, selection, officer)
        # The selection and the plan can name thousands of recordings: the entry holds
        # their digests and counts (a ledger body is at most 64 KiB); each recording gets
        # its own `erase` entry, and the certificate lists them all.
        report = plan.report()
        self.ledger.append("erasure.request", {"request_id": req.request_id, "reference": reference,
                                               "officer": officer, **via, "approval": self.approval,
                                               "selection_sha256": _digest(selection),
                                               "plan_sha256": _digest(report),
                                               "counts": {k: len(v) for k, v in report.items()
                                                          if isinstance(v, list)}})
        if self.approval == "two-person":
            return req, None
        return req, self.execute(req, [officer])

    def approve(self, request_id: str, officer: str, via: dict[str, Any]) -> dict[str, Any]:
        try:
            req = self.requests.get(request_id)
        except NotFound:
            raise ErasureRefused(f"no erasure request {request_id}") from None
        if req.state != "pending":
            raise ErasureRefused(f"erasure request {request_id} is {req.state}, not pending approval")
        if officer == req.requested_by:
            raise ErasureRefused(f"erasure request {request_id} was made by {officer}; a different officer "
                                 "must approve it (two-person rule)")
        if not self.requests.approve(request_id, officer):
            raise ErasureRefused(f"erasure request {request_id} was approved by someone else meanwhile")
        self.ledger.append("erasure.approve", {"request_id": request_id, "reference": req.reference,
                                               "officer": officer, **via, "requested_by": req.requested_by})
        return self.execute(req, [req.requested_by, officer])

    # -- destroying -------------------------------------------------------------------------

    def execute(self, req: ErasureRequest, officers: list[str]) -> dict[str, Any]:
        plan = self.plan(req.selection)  # again: a hold placed since the request still counts
        done = [self._erase(rec, req, officers) for rec in plan.erase]
        for rec in plan.flagged:
            self.catalog.update(rec.recording_id, erase_requested=1)
        cert = {"format": FORMAT, "request_id": req.request_id, "reference": req.reference,
                "requested_by": req.requested_by, "officers": officers, "approval": self.approval,
                "issued_at": iso(datetime.datetime.now(datetime.UTC).timestamp()),
                "payload_store": repr(self.archive.payload), "header_store": repr(self.archive.headers),
                "recordings": done, "held": plan.report()["held"], "flagged": plan.report()["flagged"],
                "already_erased": [r.recording_id for r in plan.erased]}
        entry = self.ledger.append("erasure.certificate", {"request_id": req.request_id, "reference": req.reference,
                                                           "sha256": hashlib.sha256(canonical(cert)).hexdigest(),
                                                           "recordings": len(done)})
        cert = {**cert, "certificate_seq": entry.seq}
        self.requests.complete(req.request_id, cert)
        return cert

    def _erase(self, rec: Recording, req: ErasureRequest, officers: list[str]) -> dict[str, Any]:
        rid = rec.recording_id
        header_key = rec.header_key or self.archive.header_key(rid)
        versions = self.archive.headers.versions(header_key)
        self.archive.shred(rid, header_key)
        local = self._delete_local(rec)
        self.catalog.update(rid, state="erased", erase_requested=1)
        item = {"recording_id": rid, "header_key": header_key, "header_versions_deleted": versions,
                "object_key": rec.object_key, "version_id": rec.version_id,
                "payload": "locked until retain-until", "retain_until": iso(rec.retain_until)}
        entry = self.ledger.append("erase", {**item, "request_id": req.request_id, "reference": req.reference,
                                             "officers": officers, "local_files_deleted": local,
                                             "reason": "erasure requested"},
                                   call_id=rec.linkedid or None, recording_id=rid)
        return {**item, "ledger_seq": entry.seq, "ledger_hash": entry.hash}

    def _delete_local(self, rec: Recording) -> list[str]:
        paths: list[Path] = []
        if rec.spool_path:
            src = Path(rec.spool_path)
            q = quarantine.location(src)
            paths += [src, spool.marker_for(src), q, q.parent / spool.marker_for(src).name]
        if self.work_dir is not None and self.work_dir.is_dir():
            paths += [p for p in self.work_dir.iterdir() if p.name.split(".", 1)[0] == rec.recording_id]
        gone = []
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
                gone.append(p.name)
        return gone


def verify_certificate(cert: dict[str, Any], ledger: Ledger, archive: Archive) -> list[str]:
    """Problems found checking ``cert`` against the ledger and the stores; [] if it holds."""
    problems: list[str] = []
    body = {k: v for k, v in cert.items() if k != "certificate_seq"}
    try:
        entry = ledger.get(int(cert["certificate_seq"]))
    except (KeyError, ValueError, TypeError, NotFound):
        return [f"ledger: no erasure.certificate entry at seq {cert.get('certificate_seq')!r}"]
    if entry.kind != "erasure.certificate" or entry.data.get("request_id") != cert.get("request_id"):
        problems.append(f"ledger seq {entry.seq} is {entry.kind}, not this request's certificate")
    elif entry.data.get("sha256") != hashlib.sha256(canonical(body)).hexdigest():
        problems.append(f"ledger seq {entry.seq}: the certificate's SHA-256 differs (it was altered)")
    chain = ledger.verify()
    if not chain.ok:
        problems.append(f"ledger chain broken at seq {chain.bad_seq}: {chain.reason}")
    for item in cert.get("recordings", []):
        problems += _check_item(item, ledger, archive)
    return problems


def _check_item(item: dict[str, Any], ledger: Ledger, archive: Archive) -> Iterable[str]:
    rid = item["recording_id"]
    try:
        e = ledger.get(int(item["ledger_seq"]))
    except (KeyError, ValueError, TypeError, NotFound):
        yield f"{rid}: no ledger entry at seq {item.get('ledger_seq')!r}"
        return
    if e.kind != "erase" or e.recording_id != rid or e.hash != item.get("ledger_hash"):
        yield f"{rid}: ledger seq {e.seq} is not its erase entry"
    left = archive.headers.versions(item["header_key"])
    if left:
        yield f"{rid}: header {item['header_key']} still has {len(left)} version(s) in the bucket"
    if item.get("object_key"):
        info = archive.head(archive.payload, item["object_key"], item.get("version_id") or None)
        if info is not None and info.retention is not None and item.get("retain_until"):
            until = datetime.datetime.fromisoformat(item["retain_until"])
            if info.retention.until < until - datetime.timedelta(seconds=1):
                yield f"{rid}: payload lock ends {info.retention.until.isoformat()}, before {item['retain_until']}"


def render_html(cert: dict[str, Any]) -> str:
    """The certificate as a page a person can read and print."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r['recording_id'])}</td><td>{e(r['header_key'])}</td>"
        f"<td>{e(', '.join(r['header_versions_deleted']) or '(unversioned)')}</td>"
        f"<td>{e(r['retain_until'] or '')}</td><td>{r['ledger_seq']}</td></tr>" for r in cert["recordings"])
    held = "".join(f"<li>{e(r['recording_id'])}: {e(r['why'])}</li>" for r in cert["held"])
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Erasure certificate {e(cert['request_id'])}"
            f"</title></head><body><h1>Erasure certificate</h1><dl><dt>Request</dt><dd>{e(cert['request_id'])}</dd>"
            f"<dt>Reference</dt><dd>{e(cert['reference'])}</dd><dt>Officers</dt><dd>{e(', '.join(cert['officers']))}"
            f"</dd><dt>Issued</dt><dd>{e(cert['issued_at'])}</dd><dt>Ledger seq</dt>"
            f"<dd>{cert['certificate_seq']}</dd></dl><table><tr><th>Recording</th><th>Header object</th>"
            f"<th>Versions deleted</th><th>Payload locked until</th><th>Ledger seq</th></tr>{rows}</table>"
            f"<h2>Held (untouched)</h2><ul>{held or '<li>none</li>'}</ul></body></html>\n")
