"""The pipeline against the real Ceph RGW: Object Lock, tags, age interop, outage."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import subprocess
import time

import pytest

from archiver.errors import SetupError
from archiver.pipeline import Backoff
from archiver.service import Archiver
from storage import keys
from storage.errors import RetentionError

pytestmark = pytest.mark.s3

MiB = 1 << 20
ACTIVE = {"pending", "encrypting", "uploading", "verifying"}
OUTAGE_SECONDS = 20  # the brief's "2 minutes" shortened: long enough for several backoffs


async def until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def versions(s3_client, bucket: str, key: str) -> list[str]:
    page = s3_client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]


def test_archive_to_rgw_locked_tagged_and_readable_by_age(make_env, rgw_buckets, s3_client, tmp_path):
    payload, key_store = rgw_buckets()
    env = make_env(payload, key_store)
    rid = env.recording(20 * MiB)  # multipart: three 8 MiB parts
    assert env.process(rid).kind == "archived"
    rec = env.catalog.get(rid)

    info = payload.head(rec.object_key, rec.version_id)
    assert info.retention.mode == "COMPLIANCE"
    expected = datetime.datetime.fromtimestamp(rec.ended_at, datetime.UTC) + datetime.timedelta(days=90)
    assert abs((info.retention.until - expected).total_seconds()) <= 1
    assert info.tags == {"retention": "default", "consent": "granted", "jurisdiction": "ZA"}
    with pytest.raises(RetentionError):
        payload.delete(rec.object_key, rec.version_id)
    with pytest.raises(RetentionError):
        payload.delete(rec.object_key)
    assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]
    assert key_store.head(rec.header_key).retention is None

    identity_file = tmp_path / "identity.txt"
    keys.write_identity(identity_file, env.identity)
    age_file = tmp_path / "recording.age"
    with open(age_file, "wb") as f:
        f.write(key_store.get(rec.header_key))
        with payload.open_stream(rec.object_key, rec.version_id) as stream:
            for chunk in stream:
                f.write(chunk)
    out = subprocess.run(["/usr/bin/age", "-d", "-i", str(identity_file), str(age_file)],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == env.wavs[rid]


def test_rerun_after_upload_does_not_make_a_second_version(make_env, rgw_buckets, s3_client):
    payload, key_store = rgw_buckets()
    crashed = []

    def hook(point, rec):
        if point == "uploaded" and not crashed:
            crashed.append(1)
            raise KeyboardInterrupt  # a BaseException: nothing in the pipeline catches it

    env = make_env(payload, key_store, hook=hook)
    rid = env.recording(9 * MiB)
    with pytest.raises(KeyboardInterrupt):
        env.process(rid)
    env.pipeline = env.make_pipeline()
    env.drive(rid)
    rec = env.catalog.get(rid)
    assert rec.state == "archived"
    assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]


async def test_payload_bucket_without_object_lock_is_refused_at_start(make_env, rgw_buckets):
    payload, key_store = rgw_buckets(lock=False)
    env = make_env(payload, key_store)
    archiver = Archiver(env.spool, catalog=env.catalog, ledger=env.ledger, pipeline=env.pipeline)
    with pytest.raises(SetupError, match="does not have Object Lock enabled"):
        await archiver.start()


async def test_rgw_outage_backs_off_then_the_backlog_drains(lab, make_env, rgw_buckets, rgw_settings, s3_client):
    """RGW stops for OUTAGE_SECONDS while recordings end: they wait with backoff (visible
    in stats), then all are archived once RGW is back. Nothing lost, nothing twice."""
    fast_fail = dataclasses.replace(rgw_settings, max_attempts=2, connect_timeout=2.0, read_timeout=10.0)
    payload, key_store = rgw_buckets(fast_fail)
    env = make_env(payload, key_store, backoff=Backoff(base=0.5, cap=4.0), max_attempts=100)
    archiver = Archiver(env.spool, catalog=env.catalog, ledger=env.ledger, pipeline=env.pipeline,
                        workers=2, scan_interval=3600)
    await archiver.start()
    rids: list[str] = []
    try:
        stopped = time.monotonic()
        await asyncio.to_thread(lab.rgw.stop_rgw)
        try:
            rids = [env.recording(300_000, state="recording", uniqueid=f"lab-out{i}-2") for i in range(6)]
            for i in range(6):
                await archiver.recording_ended(uniqueid=f"lab-out{i}-2")
            await until(lambda: all(env.catalog.get(r).attempts >= 2 for r in rids), OUTAGE_SECONDS,
                        "every job to fail at least twice")
            await archiver.scan()
            stats = archiver.stats.as_dict()
            assert stats["backlog"] == 6 and stats["retrying"] == 6 and stats["dead_letters"] == 0
            assert sum(stats["queue"].get(s, 0) for s in ACTIVE) == 6
            recs = [env.catalog.get(r) for r in rids]
            assert all(r.state in ACTIVE and r.next_try_at > 0 for r in recs)
            assert all(rgw_settings.endpoint_url in r.last_error for r in recs)
            assert len([n for n in env.spool_files() if n.endswith(".wav")]) == 6
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))  # the outage
        finally:
            await asyncio.to_thread(lab.rgw.start_rgw)
        archiver.wake()
        await until(lambda: all(env.catalog.get(r).state == "archived" for r in rids), 60, "the backlog to drain")
    finally:
        await archiver.stop(10)
    for rid in rids:
        rec = env.catalog.get(rid)
        assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]
        assert len(env.ledger.find(recording_id=rid, kind="archive")) == 1
    assert env.spool_files() == []
