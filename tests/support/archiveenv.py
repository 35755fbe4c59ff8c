"""The archiver's world for tests: a catalog, a ledger, two stores and a spool to archive from.

``archive_env`` is one archiver's world on local stores; ``make_env(payload, headers)``
builds the same around other stores (the real RGW). ``Env.recording()`` plays the
consent handler and MixMonitor: a ledger consent entry, a catalog row and a WAV file
(with its ``.done`` marker) in the spool.
"""

from __future__ import annotations

import os
import secrets
import time
import wave
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.pipeline import Backoff, Pipeline
from archiver.retention import RetentionPolicy, RetentionRule
from archiver.spool import SpoolRules
from storage.age import Identity
from storage.catalog import Catalog, Recording
from storage.dburl import open_database
from storage.ledger import Ledger
from storage.localstore import LocalStore


class SimulatedCrash(BaseException):
    """Stands in for kill -9 inside a step: nothing in the pipeline may catch it."""


def write_wav(path: Path, audio_bytes: int) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(os.urandom(audio_bytes - audio_bytes % 2))
    return path.read_bytes()


TEST_RETENTION = RetentionPolicy({
    "default": RetentionRule("COMPLIANCE", 90, "d"),
    "legal": RetentionRule("COMPLIANCE", 5, "y"),
    "short": RetentionRule("COMPLIANCE", 3, "s"),
})


class Env:
    def __init__(self, root: Path, identity: Identity, payload, headers, **pipeline_kw):
        self.root = root
        self.identity = identity
        self.spool = root / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.db = open_database(f"sqlite:///{root / 'callvault.db'}")
        self.catalog = Catalog(self.db)
        self.ledger = Ledger(self.db)
        self.payload, self.headers = payload, headers
        self.wavs: dict[str, bytes] = {}
        self.pipeline = self.make_pipeline(**pipeline_kw)

    def make_pipeline(self, **kw) -> Pipeline:
        kw.setdefault("retention", TEST_RETENTION)
        kw.setdefault("spool_rules", SpoolRules(settle=0.2, quiet=1.0, missing_grace=0.5))
        kw.setdefault("backoff", Backoff(base=0.01, cap=0.05))
        kw.setdefault("max_attempts", 5)
        kw.setdefault("archive", self.archive())
        return Pipeline(catalog=self.catalog, ledger=self.ledger, recipients=[self.identity.recipient],
                        work_dir=self.spool / ".callvault-work", **kw)

    def recording(self, audio_bytes: int = 64_000, *, state: str = "pending", marker: bool = True,
                  file: bool = True, retention_class: str = "default", erase: bool = False,
                  uniqueid: str | None = None, consent: bool = True, row: bool = True) -> str:
        rid = "r" + secrets.token_hex(12)
        path = self.spool / f"{rid}.wav"
        if file:
            self.wavs[rid] = write_wav(path, audio_bytes)
        if marker:
            Path(str(path) + ".done").touch()
        now = time.time()
        uniqueid = uniqueid or f"lab-{secrets.token_hex(4)}-2"
        if consent:
            self.ledger.append("consent", {
                "consent_id": "c" + rid[1:], "uniqueid": uniqueid, "linkedid": uniqueid[:-1] + "1",
                "channel": "Local/100@lab-0001;2", "caller_hmac": "ab" * 32, "did": "27215550100",
                "rule": "za-opt-in", "jurisdiction": "ZA", "outcome": "granted", "record": True,
                "recording_id": rid, "started_at": now - 60}, call_id=uniqueid[:-1] + "1", recording_id=rid)
        if row:
            self.catalog.add(Recording(
                recording_id=rid, consent_id="c" + rid[1:], uniqueid=uniqueid, linkedid=uniqueid[:-1] + "1",
                channel="Local/100@lab-0001;2", spool_path=str(path), caller_hmac="ab" * 32,
                did="27215550100", agent="", rule="za-opt-in", jurisdiction="ZA",
                retention_class=retention_class, consent_state="granted", started_at=now - 60))
            if erase:
                self.catalog.update(rid, erase_requested=1, consent_state="revoked")
            if state != "recording":
                self.catalog.mark_ended(rid, now)
                if state != "pending":
                    self.catalog.update(rid, state=state)
        return rid

    def process(self, rid: str, **kw):
        return self.pipeline.process(self.catalog.get(rid), **kw)

    def drive(self, rid: str, limit: int = 20):
        """Process until the job leaves the active states; returns the outcomes."""
        outcomes = []
        for _ in range(limit):
            outcomes.append(self.process(rid))
            if self.catalog.get(rid).state not in ("pending", "encrypting", "uploading", "verifying"):
                return outcomes
        raise AssertionError(f"{rid} still active after {limit} rounds: {outcomes}")

    def spool_files(self) -> list[str]:
        return sorted(p.name for p in self.spool.iterdir() if p.is_file())

    def work_files(self) -> list[str]:
        work = self.spool / ".callvault-work"
        return sorted(os.listdir(work)) if work.exists() else []

    def kinds(self, rid: str) -> list[str]:
        return [e.kind for e in self.ledger.find(recording_id=rid)]

    @staticmethod
    def versions(store: LocalStore, key: str) -> int:
        """Versions of ``key`` in a LocalStore (its documented on-disk layout)."""
        vdir = store.root / "objects" / key / "@v"
        return len(os.listdir(vdir)) if vdir.exists() else 0

    write_wav = staticmethod(write_wav)
    Crash = SimulatedCrash
    payload_key = staticmethod(Archive.payload_key)
    header_key = staticmethod(Archive.header_key)

    def archive(self, payload=None, headers=None) -> Archive:
        """An Archive on this Env's stores, or on others put in their place."""
        return Archive(payload or self.payload, headers or self.headers)

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def identity() -> Identity:
    return Identity.generate()


@pytest.fixture
def archive_env(tmp_path, identity):
    payload = LocalStore.create(tmp_path / "archive" / "payload")
    headers = LocalStore.create(tmp_path / "archive" / "keys")
    env = Env(tmp_path, identity, payload, headers)
    yield env
    env.close()



@pytest.fixture
def make_env(tmp_path, identity):
    """``make_env(payload_store, header_store, **pipeline_kw)``: an Env around other stores."""
    envs = []

    def make(payload, headers, **kw) -> Env:
        env = Env(tmp_path / f"env{len(envs)}", identity, payload, headers, **kw)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture(scope="session")
def rgw_settings(lab_state):
    from storage.s3store import S3Settings

    e = lab_state.s3_endpoint
    return S3Settings(endpoint_url=e.endpoint_url, region=e.region, access_key_id=e.access_key_id,
                      secret_access_key=e.secret_access_key, addressing_style="path")


@pytest.fixture
def rgw_buckets(rgw_settings):
    """``rgw_buckets(settings=None, lock=True) -> (payload_store, header_store)`` on two new
    buckets. Locked objects stay behind: the lab's memstore dies with the lab."""
    from storage.s3store import S3Store

    made = []

    def make(settings=None, *, lock: bool = True):
        name = f"cva-{secrets.token_hex(6)}"
        payload = S3Store(settings or rgw_settings, name, object_lock=lock)
        headers = S3Store(settings or rgw_settings, name + "-keys", object_lock=False)
        made.extend([payload, headers])
        payload.create_bucket(lock=lock)
        headers.create_bucket(lock=False)
        payload.object_lock = True  # what the archiver demands of a payload bucket
        return payload, headers

    yield make
    for store in made:
        store.close()
