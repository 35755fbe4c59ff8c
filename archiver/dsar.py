"""A data subject's calls: find them, and build the subject access bundle.

``find_subject`` takes the caller HMACs a number may have been catalogued under
(``storage.hmac_index.subject_hmacs``) and gathers: every recording in the catalog,
every consent entry in the ledger (calls that were never recorded too), every access
to those recordings (the ``audit.*`` ledger entries: who, when, why) and each
recording's retention and legal-hold state.

``write_bundle`` streams one zip: ``recordings/<id>.wav`` (decrypted, byte for byte
what MixMonitor wrote, checked against the archive manifest), ``consents.json``,
``access.json``, ``recordings.json``, ``summary.html``, ``README.txt`` and last
``MANIFEST.json`` (the SHA-256 and size of every other file). The zip is written in
streaming mode (data descriptors) straight into an age passphrase writer, so neither
the bundle nor a recording is ever held whole in memory. Before a recording's key is
used, an ``audit.export`` entry naming the request's reference is appended to the
ledger.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import json
import secrets
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.age import Identity, PassphraseWriter
from storage.catalog import Catalog, Recording
from storage.entries import ConsentBody
from storage.ledger import Ledger

from .archive import Archive

EXPORT_KIND = "audit.export"
SEARCH_LIMIT = 100_000


def _iso(ts: float | None) -> str | None:
    return None if not ts else datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


@dataclass
class Subject:
    """What the appliance holds about one caller number."""

    recordings: list[Recording] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)
    accesses: list[dict[str, Any]] = field(default_factory=list)

    def recording_rows(self) -> list[dict[str, Any]]:
        return [{"recording_id": r.recording_id, "started_at": _iso(r.started_at), "ended_at": _iso(r.ended_at),
                 "state": r.state, "consent_state": r.consent_state, "rule": r.rule,
                 "jurisdiction": r.jurisdiction, "did": r.did, "agent": r.agent,
                 "retention_class": r.retention_class, "retain_until": _iso(r.retain_until),
                 "legal_hold": bool(r.legal_hold), "erase_requested": bool(r.erase_requested)}
                for r in self.recordings]

    def as_dict(self) -> dict[str, Any]:
        return {"recordings": self.recording_rows(), "consents": self.consents, "accesses": self.accesses}


def find_subject(catalog: Catalog, ledger: Ledger, hmacs: Sequence[str]) -> Subject:
    wanted = set(hmacs)
    recs: dict[str, Recording] = {}
    for h in hmacs:
        for rec in catalog.search(caller_hmac=h, limit=SEARCH_LIMIT):
            recs[rec.recording_id] = rec
    subject = Subject(recordings=sorted(recs.values(), key=lambda r: r.started_at or 0))
    for e in ledger.consents_of(hmacs):
        c = ConsentBody.from_body(e.data)
        if c.caller_hmac in wanted:  # the index holds the body's own caller_hmac; checked all the same
            subject.consents.append({"seq": e.seq, "at": e.ts, "call_id": e.call_id, "consent_id": c.consent_id,
                                     "started_at": _iso(c.started_at), "outcome": c.outcome, "reason": c.reason,
                                     "record": c.record, "recording_id": c.recording_id, "did": c.did,
                                     "rule": c.rule, "jurisdiction": c.jurisdiction, "mode": c.mode,
                                     "party": c.party or ConsentBody.CALLER, "digits": c.digits,
                                     "notice_id": c.notice_id, "notice_language": c.notice_language,
                                     "notice_version": c.notice_version})
    for rec in subject.recordings:
        for e in ledger.find(recording_id=rec.recording_id):
            if e.kind.startswith("audit."):
                d = e.data
                subject.accesses.append({"seq": e.seq, "at": e.ts, "kind": e.kind, "recording_id": rec.recording_id,
                                         "actor": d.get("actor", ""), "role": d.get("role", ""),
                                         "via": d.get("via", ""), "purpose": d.get("purpose", ""),
                                         "reason": d.get("reason", ""), "reference": d.get("reference", "")})
    subject.accesses.sort(key=lambda a: a["seq"])
    return subject


def new_passphrase() -> str:
    """128 random bits, as eight groups of four hex digits."""
    raw = secrets.token_hex(16)
    return "-".join(raw[i:i + 4] for i in range(0, 32, 4))


class _Hashing:
    """Counts and hashes what goes into one zip member."""

    def __init__(self, target) -> None:
        self.target, self.sha256, self.size = target, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.target.write(data)


class _Sink:
    """The raw output, not seekable, so that zipfile streams (data descriptors)."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def write(self, data) -> int:
        self._write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


README = """Subject access request {reference}

This archive holds what the call recording system keeps about calls from your
telephone number, as of {made} (UTC).

  summary.html      a readable summary: your calls, what you answered when asked
                    whether the call could be recorded, and who listened to or
                    downloaded each recording, when and why
  recordings/       the recordings themselves (WAV audio, exactly as recorded)
  consents.json     every answer you gave to the recording notice, including calls
                    that were not recorded
  access.json       every access to your recordings
  recordings.json   each recording's retention period and legal-hold state
  MANIFEST.json     the SHA-256 checksum of every file above, so you can check that
                    nothing was changed

Recordings: {recordings}. Consent records: {consents}. Accesses: {accesses}.
"""


def _summary_html(subject: Subject, reference: str, made: str) -> str:
    e = html.escape

    def table(rows: Iterable[dict[str, Any]], cols: Sequence[str]) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(str(r.get(c) if r.get(c) is not None else ''))}</td>"
                                         for c in cols) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    return (f"<!doctype html><html><head><meta charset=utf-8><title>Subject access request {e(reference)}</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}</style></head><body>"
            f"<h1>Subject access request {e(reference)}</h1><p>Made {e(made)} (UTC).</p>"
            "<h2>Recordings</h2>" + table(subject.recording_rows(), ("recording_id", "started_at", "state",
                                                                     "consent_state", "retain_until", "legal_hold"))
            + "<h2>Answers to the recording notice</h2>"
            + table(subject.consents, ("started_at", "outcome", "record", "recording_id", "rule", "notice_id"))
            + "<h2>Who accessed the recordings</h2>"
            + table(subject.accesses, ("at", "kind", "recording_id", "actor", "purpose", "reason", "reference"))
            + "</body></html>")


def write_bundle(subject: Subject, *, archive: Archive, identities: Sequence[Identity], ledger: Ledger,
                 reference: str, actor: dict[str, Any], write: Callable[[bytes], object], passphrase: str,
                 progress: Callable[[int, int, str, int], None] | None = None) -> dict[str, Any]:
    """Stream the bundle, age-encrypted to ``passphrase``, into ``write``; return its
    manifest. ``actor`` (who asked, how) goes into each ``audit.export`` entry;
    ``progress(i, n, recording_id, bytes)`` is called after each recording."""
    made = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    encrypted = PassphraseWriter(_Sink(write), passphrase)
    files: dict[str, dict[str, Any]] = {}
    exportable = [r for r in subject.recordings if r.state == "archived" and r.manifest]
    fingerprints = [i.fingerprint for i in identities]
    with zipfile.ZipFile(encrypted, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        def member(name: str, fill: Callable[[Any], Any], compress: int = zipfile.ZIP_DEFLATED) -> None:
            info = zipfile.ZipInfo(name, date_time=datetime.datetime.now(datetime.UTC).timetuple()[:6])
            info.compress_type = compress
            with zf.open(info, "w", force_zip64=True) as f:
                h = _Hashing(f)
                fill(h)
            files[name] = {"sha256": h.sha256.hexdigest(), "size": h.size}

        for i, rec in enumerate(exportable, 1):
            # The audit entry first, then the key is used.
            ledger.append(EXPORT_KIND, {"recording_id": rec.recording_id, "reference": reference, **actor,
                                        "purpose": "subject access export",
                                        "reason": f"subject access request {reference}",
                                        "identities": fingerprints},
                          call_id=rec.linkedid or None, recording_id=rec.recording_id)
            name = f"recordings/{rec.recording_id}.wav"
            member(name, lambda h, rec=rec: archive.decrypt_to(rec, identities, h), zipfile.ZIP_STORED)
            if progress:
                progress(i, len(exportable), rec.recording_id, files[name]["size"])
        for name, data in (("consents.json", subject.consents), ("access.json", subject.accesses),
                           ("recordings.json", subject.recording_rows())):
            member(name, lambda h, data=data: h.write(json.dumps(data, indent=2).encode()))
        member("summary.html", lambda h: h.write(_summary_html(subject, reference, made).encode()))
        member("README.txt", lambda h: h.write(README.format(
            reference=reference, made=made, recordings=len(exportable), consents=len(subject.consents),
            accesses=len(subject.accesses)).encode()))
        manifest = {"reference": reference, "made_at": made, "files": files}
        with zf.open("MANIFEST.json", "w") as f:
            f.write(json.dumps(manifest, indent=2).encode())
    encrypted.close()
    return manifest
