"""An erasure of a subject with thousands of recordings: every ledger entry stays within
the ledger's 64 KiB body limit (found by `python -m bench subjects`: the request entry held
the whole plan and a 1,000-recording erasure failed)."""

from __future__ import annotations

import time

from archiver.archive import Archive
from archiver.erasure import Eraser
from storage.catalog import Catalog, Recording
from storage.chain import MAX_BODY_BYTES
from storage.dburl import open_database
from storage.erasures import ErasureRequests
from storage.ledger import Ledger
from storage.localstore import LocalStore

SUBJECT = "ab" * 32


def test_a_request_for_thousands_of_recordings_fits_the_ledger(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'callvault.db'}")
    try:
        catalog, ledger = Catalog(db, node="n1"), Ledger(db)
        now = time.time()
        for i in range(3000):  # not yet archived: the plan flags them for the archiver
            catalog.add(Recording(recording_id=f"r{i:025d}", consent_id=f"c{i}", uniqueid=f"u{i}", linkedid=f"l{i}",
                                  channel="", spool_path=str(tmp_path / f"r{i}.wav"), caller_hmac=SUBJECT, did="",
                                  agent="", rule="", jurisdiction="ZA", retention_class="default",
                                  consent_state="granted", started_at=now - i))
        archive = Archive(LocalStore(tmp_path / "payload"), LocalStore(tmp_path / "headers"))
        eraser = Eraser(catalog, ledger, archive, ErasureRequests(db))
        req, cert = eraser.request("DSR-9", {"caller_hmacs": [SUBJECT]}, "olga", {"via": "test"})
        [entry] = ledger.find(kind="erasure.request")
        assert entry.data["counts"]["flagged"] == 3000 and len(entry.data["plan_sha256"]) == 64
        assert max(len(e.body.encode()) for e in ledger.iter_entries()) < MAX_BODY_BYTES
        assert len(cert["flagged"]) == 3000 and all(catalog.get(f"r{i:025d}").erase_requested for i in (0, 2999))
    finally:
        db.close()
