"""The archive pipeline on the local store: happy path, crashes, retries, erasure."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import threading
import time

import pytest

from archiver.manifest import Manifest
from archiver.pipeline import Backoff
from storage.age import Decryptor
from storage.blobstore import BlobStore
from storage.errors import IntegrityError, PermanentError, RetryableError

MiB = 1 << 20


class FaultyStore:
    """A store that fails chosen calls: ``faults[(method, key_prefix)] = [exc, ...]``."""

    def __init__(self, inner: BlobStore):
        self.inner = inner
        self.faults: dict[tuple[str, str], list[BaseException]] = {}
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in ("put", "head", "delete", "set_retention", "set_legal_hold", "get", "open_stream"):
            return attr

        def call(key, *args, **kw):
            self.calls.append((name, key))
            for (method, prefix), queue in self.faults.items():
                if method == name and key.startswith(prefix) and queue:
                    raise queue.pop(0)
            return attr(key, *args, **kw)

        return call


def assert_archived_once(env, rid, *, header_versions=1):
    rec = env.catalog.get(rid)
    assert rec.state == "archived", rec.last_error
    assert env.versions(env.payload, env.payload_key(rid)) == 1
    assert env.versions(env.headers, env.header_key(rid)) == header_versions
    assert env.kinds(rid).count("archive") == 1
    assert env.versions(env.payload, f"manifests/{rid}.json") == 1  # the manifest object, written once
    assert not [n for n in env.spool_files() if n.startswith(rid)]
    assert not [n for n in env.work_files() if n.startswith(rid)]
    header = env.headers.get(rec.header_key)
    payload = env.payload.get(rec.object_key, rec.version_id)
    assert Decryptor(header, [env.identity]).decrypt(payload) == env.wavs[rid]
    return rec


def test_happy_path_archives_verifies_and_cleans_up(archive_env):
    env = archive_env
    rid = env.recording(200_000)
    outcome = env.process(rid)
    assert outcome.kind == "archived"
    rec = assert_archived_once(env, rid)
    m = Manifest.from_json(rec.manifest)
    assert m.plaintext_size == len(env.wavs[rid])
    assert rec.object_key == f"rec/{rid}.age.payload" and rec.header_key == f"hdr/{rid}.age.header"
    assert rec.archived_at and rec.attempts == 0 and rec.last_error == ""
    info = env.payload.head(rec.object_key, rec.version_id)
    assert info.retention.mode == "COMPLIANCE"
    expected = datetime.datetime.fromtimestamp(rec.ended_at, datetime.UTC) + datetime.timedelta(days=90)
    assert abs((info.retention.until - expected).total_seconds()) <= 1
    assert rec.retain_until == info.retention.until.timestamp()
    assert info.tags == {"retention": "default", "consent": "granted", "jurisdiction": "ZA"}
    assert env.headers.head(rec.header_key).retention is None  # the header stays deletable
    [entry] = env.ledger.find(recording_id=rid, kind="archive")
    assert entry.data["payload_sha256"] == m.payload_sha256 and entry.data["version_id"] == rec.version_id
    assert "27215550" not in json.dumps(info.tags)  # no personal data in tags


def test_legal_class_gets_five_years(archive_env):
    env = archive_env
    rid = env.recording(retention_class="legal")
    env.process(rid)
    rec = env.catalog.get(rid)
    until = env.payload.head(rec.object_key).retention.until
    start = datetime.datetime.fromtimestamp(rec.ended_at, datetime.UTC)
    assert until.year == start.year + 5


@pytest.mark.parametrize("point", ["encrypting", "uploading", "uploaded", "manifest", "verified"])
def test_crash_at_each_step_resumes_without_duplicates(archive_env, point):
    env = archive_env
    crashed = []

    def hook(p, rec):
        if p == point and not crashed:
            crashed.append(p)
            raise env.Crash(p)

    env.pipeline = env.make_pipeline(hook=hook)
    rid = env.recording(300_000)
    with pytest.raises(env.Crash):
        env.process(rid)
    assert crashed == [point]
    state = env.catalog.get(rid).state
    # A one-part payload's encryption commits nothing: a crash in it leaves 'pending'.
    assert state == {"encrypting": "pending", "uploading": "uploading", "uploaded": "uploading",
                     "manifest": "uploading", "verified": "archived"}[point]
    if point == "verified":  # the spool clean-up is the scan's job after such a crash
        assert f"{rid}.wav" in env.spool_files()
        return
    env.drive(rid)
    assert_archived_once(env, rid)


def test_crash_during_header_upload_then_resume(archive_env):
    env = archive_env
    faulty = FaultyStore(env.headers)
    faulty.faults[("put", "hdr/")] = [env.Crash("header put")]
    env.pipeline = env.make_pipeline(archive=env.archive(headers=faulty))
    rid = env.recording()
    with pytest.raises(env.Crash):
        env.process(rid)
    env.drive(rid)
    assert_archived_once(env, rid)


def test_lost_work_files_before_payload_upload_reencrypt_once(archive_env):
    env = archive_env
    env.pipeline = env.make_pipeline(hook=lambda p, rec: (_ for _ in ()).throw(env.Crash()) if p == "uploading" else None)
    rid = env.recording(300_000)
    with pytest.raises(env.Crash):
        env.process(rid)
    first = env.catalog.get(rid).manifest
    for name in env.work_files():
        (env.spool / ".callvault-work" / name).unlink()
    env.pipeline = env.make_pipeline()
    env.drive(rid)
    # Encrypted again under a new file key: the new header is the newest version, the
    # stale one (a key to no stored payload) stays below it, as the pbx role cannot delete.
    rec = assert_archived_once(env, rid, header_versions=2)
    assert rec.manifest != first
    assert rec.attempts == 1  # the redo counts as an attempt


def test_lost_work_files_after_payload_upload_need_nothing_again(archive_env):
    env = archive_env
    env.pipeline = env.make_pipeline(hook=lambda p, rec: (_ for _ in ()).throw(env.Crash()) if p == "uploaded" else None)
    rid = env.recording()
    with pytest.raises(env.Crash):
        env.process(rid)
    manifest = env.catalog.get(rid).manifest
    for name in env.work_files():
        (env.spool / ".callvault-work" / name).unlink()
    env.pipeline = env.make_pipeline()
    env.drive(rid)
    rec = assert_archived_once(env, rid)
    assert rec.manifest == manifest and rec.attempts == 0


def test_a_manifest_object_naming_another_payload_version_stops_the_job_for_review(archive_env):
    env = archive_env
    env.pipeline = env.make_pipeline(hook=lambda p, rec: (_ for _ in ()).throw(env.Crash()) if p == "manifest" else None)
    rid = env.recording()
    with pytest.raises(env.Crash):
        env.process(rid)
    key = f"manifests/{rid}.json"
    body = json.loads(env.payload.get(key))
    body["version_id"] = "0" * 32  # a later version that describes something else
    data = (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()
    env.payload.put(key, data, sha256=hashlib.sha256(data).hexdigest())
    env.pipeline = env.make_pipeline()
    assert env.process(rid).kind == "failed"
    rec = env.catalog.get(rid)
    assert rec.state == "failed" and key in rec.last_error and "manual review" in rec.last_error
    assert "archive" not in env.kinds(rid)


def test_retryable_errors_back_off_then_succeed(archive_env):
    env = archive_env
    faulty = FaultyStore(env.payload)
    faulty.faults[("put", "rec/")] = [RetryableError("503 SlowDown"), RetryableError("connection reset")]
    env.pipeline = env.make_pipeline(archive=env.archive(payload=faulty), rng=lambda: 1.0, backoff=Backoff(base=2.0, cap=300.0))
    rid = env.recording()
    first = env.process(rid)
    rec = env.catalog.get(rid)
    assert first.kind == "retry" and rec.state == "uploading" and rec.attempts == 1
    assert rec.last_error == "503 SlowDown" and rec.lease_until == 0
    t1 = rec.next_try_at
    second = env.process(rid)
    rec = env.catalog.get(rid)
    assert second.kind == "retry" and rec.attempts == 2
    assert rec.next_try_at - t1 > 1.5  # 2 s then 4 s (rng=1: the full delay)
    assert env.process(rid).kind == "archived"
    rec = assert_archived_once(env, rid)
    assert rec.attempts == 2 and rec.last_error == ""


def test_backoff_is_exponential_with_jitter():
    b = Backoff(base=2.0, cap=60.0)
    assert [b.delay(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert [b.delay(n, lambda: 0.0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert b.delay(10, lambda: 1.0) == 60.0


def test_an_outage_never_makes_a_dead_letter(archive_env):
    env = archive_env
    faulty = FaultyStore(env.payload)
    faulty.faults[("put", "rec/")] = [RetryableError(f"outage {i}") for i in range(6)]
    env.pipeline = env.make_pipeline(archive=env.archive(payload=faulty), max_attempts=3)
    rid = env.recording()
    outcomes = [o.kind for o in env.drive(rid)]
    assert outcomes == ["retry"] * 6 + ["archived"]
    assert assert_archived_once(env, rid).attempts == 6


def test_repeated_integrity_errors_make_a_dead_letter(archive_env):
    env = archive_env
    faulty = FaultyStore(env.payload)
    faulty.faults[("put", "rec/")] = [IntegrityError(f"checksum mismatch {i}") for i in range(10)]
    env.pipeline = env.make_pipeline(archive=env.archive(payload=faulty), max_attempts=3)
    rid = env.recording()
    outcomes = [o.kind for o in env.drive(rid)]
    rec = env.catalog.get(rid)
    assert outcomes == ["retry", "retry", "failed"]
    assert rec.state == "failed" and rec.attempts == 3
    assert rec.last_error.startswith("gave up after 3 attempts") and "checksum mismatch 2" in rec.last_error
    assert_quarantined(env, rid)  # nothing is deleted that is not archived
    assert env.kinds(rid)[-1] == "archive.failed"


def assert_quarantined(env, rid):
    """The plaintext left the spool (Asterisk's group may read it) for a 0700 directory."""
    quarantine = env.spool / ".callvault-quarantine"
    assert env.spool_files() == []
    assert sorted(os.listdir(quarantine)) == [f"{rid}.wav", f"{rid}.wav.done"]
    assert (quarantine / f"{rid}.wav").read_bytes() == env.wavs[rid]
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o700
    assert env.catalog.get(rid).quarantined_at is not None and env.catalog.quarantined_count() == 1


def test_permanent_error_fails_at_once(archive_env):
    env = archive_env
    faulty = FaultyStore(env.payload)
    faulty.faults[("put", "rec/")] = [PermanentError("AccessDenied: check the bucket policy")]
    env.pipeline = env.make_pipeline(archive=env.archive(payload=faulty))
    rid = env.recording()
    assert env.process(rid).kind == "failed"
    rec = env.catalog.get(rid)
    assert rec.state == "failed" and rec.attempts == 0 and "AccessDenied" in rec.last_error
    assert_quarantined(env, rid)


def test_unknown_retention_class_is_a_dead_letter_naming_it(archive_env):
    env = archive_env
    rid = env.recording(retention_class="sales")
    assert env.process(rid).kind == "failed"
    assert "retention class 'sales' is not configured" in env.catalog.get(rid).last_error


def test_erase_requested_shreds_and_stores_nothing(archive_env):
    env = archive_env
    rid = env.recording(erase=True)
    assert env.process(rid).kind == "erased"
    rec = env.catalog.get(rid)
    assert rec.state == "erased" and rec.object_key == "" and rec.header_key == ""
    assert env.spool_files() == [] and env.work_files() == []
    assert list(env.payload.list()) == [] and list(env.headers.list()) == []
    [entry] = env.ledger.find(recording_id=rid, kind="erase")
    assert entry.data["payload"] == "none" and entry.data["reason"] == "consent revoked"


def test_erase_after_upload_crypto_shreds_the_locked_payload(archive_env):
    env = archive_env
    env.pipeline = env.make_pipeline(hook=lambda p, rec: (_ for _ in ()).throw(env.Crash()) if p == "uploaded" else None)
    rid = env.recording()
    with pytest.raises(env.Crash):
        env.process(rid)
    env.catalog.update(rid, erase_requested=1, consent_state="revoked")  # revoked meanwhile
    env.pipeline = env.make_pipeline()
    assert env.process(rid).kind == "erased"
    rec = env.catalog.get(rid)
    assert list(env.headers.list()) == []  # header gone: the payload is unreadable
    assert list(env.payload.list()) == [env.payload_key(rid)]  # locked, kept for the sweeper
    assert rec.state == "erased" and rec.object_key == env.payload_key(rid) and rec.retain_until
    assert env.ledger.find(recording_id=rid, kind="erase")[0].data["payload"] == "locked"
    assert env.spool_files() == []


def test_waits_while_the_file_is_open_then_archives(archive_env):
    env = archive_env
    rid = env.recording(marker=False)
    path = env.spool / f"{rid}.wav"
    with open(path, "ab"):  # MixMonitor still writing
        out = env.process(rid)
        assert out.kind == "waiting"
        rec = env.catalog.get(rid)
        assert rec.state == "pending" and rec.next_try_at > rec.ended_at and rec.lease_until == 0
    os.utime(path, (time.time() - 1, time.time() - 1))  # quiet for longer than settle (0.2 s)
    assert env.process(rid).kind == "archived"
    assert_archived_once(env, rid)


def test_missing_spool_file_is_a_dead_letter(archive_env):
    env = archive_env
    rid = env.recording(file=False, marker=True)
    assert env.process(rid).kind == "failed"
    assert "does not exist: nothing was recorded" in env.catalog.get(rid).last_error
    assert env.catalog.get(rid).quarantined_at is None  # nothing to keep away from anyone


def test_stop_request_abandons_and_releases_the_lease(archive_env):
    env = archive_env
    stop = threading.Event()
    env.pipeline = env.make_pipeline(hook=lambda p, rec: stop.set() if p == "encrypting" else None)
    rid = env.recording(300_000)
    env.catalog.update(rid, lease_until=9e9)
    assert env.process(rid, stop=stop).kind == "abandoned"
    rec = env.catalog.get(rid)
    assert rec.state == "pending" and rec.lease_until == 0 and rec.attempts == 0  # one part: nothing committed
    assert env.work_files() == []  # the half-written payload went away
    env.pipeline = env.make_pipeline()
    env.drive(rid)
    assert_archived_once(env, rid)


# --- large payloads: encrypted straight into the upload -------------------------------------

def test_streamed_payload_leaves_no_work_file_and_stores_the_header_once_parts_are_in(archive_env):
    env = archive_env
    seen = {}

    def hook(p, rec):
        if p == "encrypting":  # half the payload handed to the store
            seen["work"] = env.work_files()
            seen["headers"] = list(env.headers.list())

    env.pipeline = env.make_pipeline(hook=hook)
    rid = env.recording(20 * MiB)  # a payload of three 8 MiB parts
    assert env.process(rid).kind == "archived"
    assert seen == {"work": [], "headers": []}  # no payload work file; no header before the parts
    assert_archived_once(env, rid)


@pytest.mark.parametrize("point, header_versions", [("encrypting", 1), ("uploading", 2), ("uploaded", 1)])
def test_streamed_crash_at_each_step_resumes_exactly(archive_env, point, header_versions):
    env = archive_env
    crashed = []

    def hook(p, rec):
        if p == point and not crashed:
            crashed.append(p)
            raise env.Crash(p)

    env.pipeline = env.make_pipeline(hook=hook)
    rid = env.recording(20 * MiB)
    with pytest.raises(env.Crash):
        env.process(rid)
    assert env.catalog.get(rid).state == {"encrypting": "encrypting"}.get(point, "uploading")
    assert env.versions(env.payload, env.payload_key(rid)) == (point == "uploaded")
    env.pipeline = env.make_pipeline()
    env.drive(rid)
    # After the move to uploading the local store cannot finish the first upload (it
    # keeps nothing across processes): encrypted again, the first header stays below.
    assert_archived_once(env, rid, header_versions=header_versions)
    assert list(os.listdir(env.payload.root / "tmp")) == []  # the staging file went too


def test_stop_request_mid_stream_abandons_and_stores_nothing(archive_env):
    env = archive_env
    stop = threading.Event()
    env.pipeline = env.make_pipeline(hook=lambda p, rec: stop.set() if p == "encrypting" else None)
    rid = env.recording(20 * MiB)
    assert env.process(rid, stop=stop).kind == "abandoned"
    assert env.catalog.get(rid).state == "encrypting"
    assert env.work_files() == [] and list(env.headers.list()) == []
    assert list(os.listdir(env.payload.root / "tmp")) == []


def _flip_work_file(env, rid):
    part = env.spool / ".callvault-work" / f"{rid}.payload.part"
    with open(part, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0x01]))


def test_fresh_job_sends_the_payload_it_hashed_not_the_work_file(archive_env):
    """A fresh job uploads the payload it holds in memory, the bytes its digest was
    taken from: a work file changed on disk meanwhile is not what gets stored."""
    env = archive_env
    env.pipeline = env.make_pipeline(hook=lambda p, rec: _flip_work_file(env, rec.recording_id)
                                     if p == "encrypting" else None)
    rid = env.recording(300_000)
    assert env.process(rid).kind == "archived"
    rec = assert_archived_once(env, rid)
    assert rec.attempts == 0


def test_payload_changed_on_disk_after_encryption_is_encrypted_again(archive_env):
    """A job resumed from its work files finds one changed on disk and encrypts again."""
    env = archive_env
    seen = []
    stop = threading.Event()

    def hook(p, rec):
        if p == "encrypting" and not seen:  # half the payload is in the work file
            _flip_work_file(env, rec.recording_id)
            seen.append(p)
        elif p == "uploading" and seen == ["encrypting"]:  # stop before the payload PUT
            stop.set()
            seen.append(p)

    env.pipeline = env.make_pipeline(hook=hook)
    rid = env.recording(300_000)
    assert env.process(rid, stop=stop).kind == "abandoned"
    assert env.catalog.get(rid).state == "uploading"
    outcome = env.process(rid)  # resumed: from the work files
    rec = env.catalog.get(rid)
    assert outcome.kind == "retry", outcome
    assert rec.state == "encrypting" and "does not match" in rec.last_error
    assert f"{rid}.wav" in env.spool_files()  # never deleted for a bad work file
    assert env.versions(env.payload, env.payload_key(rid)) == 0
    env.drive(rid)
    rec = assert_archived_once(env, rid, header_versions=2)  # the first encryption's header stays below
    assert rec.attempts == 1


def test_a_fresh_one_part_job_commits_twice_a_streamed_one_three_times(archive_env, monkeypatch):
    """A one-part payload goes from 'pending' to 'uploading' (with its manifest) in one
    commit, then to 'archived' with its ledger entry: its encryption takes milliseconds
    and a crash in it leaves 'pending'. A streamed one commits 'encrypting' first, so
    its seconds of work show in the queue figures."""
    env = archive_env
    env.drive(env.recording(300_000))  # the process's first job may read its PUTs back
    small, big = env.recording(300_000), env.recording(20 * MiB)
    commits = []
    write = env.db.write

    def counted():
        commits.append(True)
        return write()

    monkeypatch.setattr(env.db, "write", counted)
    assert env.process(small).kind == "archived"
    one_part = len(commits)
    commits.clear()
    assert env.process(big).kind == "archived"
    assert (one_part, len(commits)) == (2, 3)
    assert_archived_once(env, small)
    assert_archived_once(env, big)
