"""Real calls through the lab Asterisk 22, archived by the appliance into the lab's Ceph RGW.

What MixMonitor wrote is kept through a hard link made while the call runs: the
archiver unlinks the spool name once the recording is verified in RGW, and the link
still holds MixMonitor's final bytes to compare with what ``age -d`` gives back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from appliance.keys import AppKeys as K
from archivehelpers import assert_locked_default_za, versions
from callhelpers import OPT_IN, finish, run_call, wait_path, wait_state

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

OUTAGE_SECONDS = 120  # "RGW is stopped for two minutes while calls end"
ACTIVE = {"pending", "encrypting", "uploading", "verifying"}


@pytest.fixture
def on_rgw(rgw_buckets, lab_state):
    """Config overrides that put the appliance's archive on two new RGW buckets."""
    payload, header_store = rgw_buckets()
    e = lab_state.s3_endpoint
    overrides = {"storage.backend": "s3", "storage.endpoint_url": e.endpoint_url, "storage.region": e.region,
                 "storage.bucket": payload.bucket, "storage.header_bucket": header_store.bucket,
                 "storage.access_key_id": e.access_key_id, "storage.secret_access_key": e.secret_access_key}
    return overrides, payload, header_store


async def consented_call(app, ami, calls, spool: Path, keep: Path):
    """A call that consents, talks for a second and hangs up; MixMonitor's file is hard
    linked to ``keep`` while it is being written."""
    call, event, started = await run_call(app, ami, calls, ["1"])
    assert started and event.get("Record") == "yes"
    [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
    wav = spool / f"{rec.recording_id}.wav"
    await wait_path(wav)
    os.link(wav, keep)
    await asyncio.sleep(1.0)  # a second of conversation to record
    await finish(app, ami, calls, call)
    return rec.recording_id


def age_decrypt(s3_client, rec, payload_bucket: str, header_bucket: str, identity: Path, tmp_path: Path) -> bytes:
    """``header || payload`` fetched with plain boto3 and opened by Debian's age."""
    age_file = tmp_path / f"{rec.recording_id}.age"
    header = s3_client.get_object(Bucket=header_bucket, Key=rec.header_key)["Body"].read()
    body = s3_client.get_object(Bucket=payload_bucket, Key=rec.object_key, VersionId=rec.version_id)["Body"].read()
    age_file.write_bytes(header + body)
    out = subprocess.run(["/usr/bin/age", "-d", "-i", str(identity), str(age_file)], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_consented_call_lands_in_rgw_locked_tagged_and_age_gives_back_mixmonitors_bytes(
        appliance, on_rgw, ami, calls, s3_client, tmp_path):
    overrides, payload, header_store = on_rgw
    async with appliance(rules=[OPT_IN], **overrides) as app:
        kept = tmp_path / "mixmonitor.wav"
        rid = await consented_call(app, ami, calls, appliance.spool, kept)
        await wait_state(app, rid, "archived")
        rec = app[K.catalog].get(rid)

    wav = age_decrypt(s3_client, rec, payload.bucket, header_store.bucket, tmp_path / "identity.txt", tmp_path)
    original = kept.read_bytes()
    assert wav == original and original[:4] == b"RIFF" and len(original) > 8000
    assert not (appliance.spool / f"{rid}.wav").exists() and not (appliance.spool / f"{rid}.wav.done").exists()
    assert_locked_default_za(payload, rec, s3_client)


async def test_rgw_down_for_two_minutes_while_calls_end_then_the_backlog_drains(
        appliance, on_rgw, lab, ami, calls, s3_client, tmp_path):
    overrides, payload, header_store = on_rgw
    async with appliance(rules=[OPT_IN], **overrides) as app:
        archiver = app[K.archiver]
        archiver.probe_interval = 2.0
        stopped = time.monotonic()
        await asyncio.to_thread(lab.rgw.stop_rgw)
        try:
            rids, kept = [], []
            for i in range(3):
                kept.append(tmp_path / f"mixmonitor-{i}.wav")
                rids.append(await consented_call(app, ami, calls, appliance.spool, kept[-1]))
            deadline = time.monotonic() + OUTAGE_SECONDS - 10
            while not (archiver.stats.storage_down_since and archiver.stats.retrying == 3):
                assert time.monotonic() < deadline, archiver.stats.as_dict()
                await asyncio.sleep(0.5)
            # The outage as the appliance reports it (what `callvault status` prints).
            stats = archiver.stats.as_dict()
            assert stats["backlog"] == 3 and stats["dead_letters"] == 0
            recs = [app[K.catalog].get(r) for r in rids]
            assert all(r.state in ACTIVE and overrides["storage.endpoint_url"] in r.last_error for r in recs)
            assert all((appliance.spool / f"{r}.wav").exists() for r in rids)
            # The rest of the outage: its length is what is tested, not a wait for an event.
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            during = archiver.stats.as_dict()
            assert during["dead_letters"] == 0 and during["backlog"] == 3, during
        finally:
            await asyncio.to_thread(lab.rgw.start_rgw)
        back = time.monotonic()
        for rid in rids:
            await wait_state(app, rid, "archived", timeout=60)
        drained = time.monotonic() - back
        assert archiver.stats.storage_down_since is None
        recs = [app[K.catalog].get(r) for r in rids]
        assert all(len(app[K.ledger].find(recording_id=r, kind="archive")) == 1 for r in rids)

    print(f"backlog of 3 drained {drained:.1f} s after RGW came back")
    for rec, keep in zip(recs, kept):
        assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]
        wav = age_decrypt(s3_client, rec, payload.bucket, header_store.bucket, tmp_path / "identity.txt", tmp_path)
        assert wav == keep.read_bytes()
    assert [p.name for p in appliance.spool.iterdir() if p.is_file()] == []
