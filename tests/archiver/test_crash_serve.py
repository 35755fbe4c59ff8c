"""kill -9 of `callvault serve` in the middle of archiving, then a restart, against RGW.

The pipeline's test hook (``CALLVAULT_TEST_HOOK``, see ``archiver.pipeline.env_test_hook``)
makes a worker stop dead at a named point and leave a file saying so; the test then
SIGKILLs the process, starts it again without the hook and checks that every
recording is archived exactly once: one payload version, one header, one manifest
object, one ledger ``archive`` entry, catalog ``archived``, spool empty.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.lab.asterisk import free_port
from appliance.lab.devsetup import dev_config
from storage import keys

pytestmark = [pytest.mark.s3, pytest.mark.asterisk]

MiB = 1 << 20


@pytest.fixture
def site(lab_state, tmp_path, rgw_buckets, make_env, identity):
    payload, header_store = rgw_buckets()
    (tmp_path / "ami.secret").write_text(lab_state.product_ami_secret)
    keys.write_identity(tmp_path / "identity.txt", identity)
    text = dev_config(lab_state, tmp_path, free_port(), str(identity.recipient))
    e = lab_state.s3_endpoint
    env = make_env(payload, header_store)  # for its catalog, ledger and recording factory
    text = re.sub(r"\[spool\]\n(.*\n)*?\n", f'[spool]\ndir = "{env.spool}"\nscan_interval = 1.0\n\n', text)
    text = re.sub(r"\[storage\]\n(.*\n)*?\n", f"""[storage]
backend = "s3"
endpoint_url = "{e.endpoint_url}"
region = "{e.region}"
bucket = "{payload.bucket}"
header_bucket = "{header_store.bucket}"
access_key_id = "{e.access_key_id}"
secret_access_key = "{e.secret_access_key}"

""", text)
    text = re.sub(r'url = "sqlite:///.*"', f'url = "sqlite:///{env.root / "callvault.db"}"', text)
    (tmp_path / "callvault.toml").write_text(text)
    return tmp_path / "callvault.toml", env, payload, header_store


def start_serve(config: Path, log: Path, **env: str) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 (Popen gets its own copy; ours is closed below)
    try:
        return subprocess.Popen([sys.executable, "-m", "appliance", "serve", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    finally:
        out.close()


def wait_for(predicate, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"serve exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def versions(s3_client, bucket: str, key: str) -> int:
    page = s3_client.list_object_versions(Bucket=bucket, Prefix=key)
    return sum(1 for v in page.get("Versions", []) if v["Key"] == key)


@pytest.mark.parametrize("point", ["encrypting", "uploading", "uploaded", "manifest", "verified"])
def test_kill_9_mid_archive_then_restart_archives_everything_once(site, s3_client, tmp_path, point):
    config, env, payload, header_store = site
    rids = [env.recording(20 * MiB, state="recording"), env.recording(300_000, state="recording"),
            env.recording(300_000, state="recording")]
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    log = tmp_path / "serve.log"

    proc = start_serve(config, log, CALLVAULT_TEST_HOOK=point, CALLVAULT_TEST_HOOK_DIR=str(hooks))
    try:
        big = rids[0]
        wait_for(lambda: (hooks / f"{point}.{big}").exists(), proc, log, 60, f"the big job to reach {point!r}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = {r: env.catalog.get(r).state for r in rids}
    assert before[big] == {"encrypting": "encrypting", "uploading": "uploading", "uploaded": "uploading",
                           "manifest": "uploading", "verified": "archived"}[point]
    if point == "manifest":  # stored and locked before the catalog says archived
        assert versions(s3_client, payload.bucket, f"manifests/{big}.json") == 1
    if point == "uploading":  # killed mid-multipart: an incomplete upload, not a version
        uploads = s3_client.list_multipart_uploads(Bucket=payload.bucket).get("Uploads", [])
        assert [u["Key"] for u in uploads] == [f"rec/{big}.age.payload"]
        assert versions(s3_client, payload.bucket, f"rec/{big}.age.payload") == 0
    # ("verified": the spool file may still be there, or already gone: the 1 s spool scan
    # of the killed process removes files whose row says archived; either way is right.)

    proc = start_serve(config, log)
    try:
        wait_for(lambda: all(env.catalog.get(r).state == "archived" for r in rids) and not env.spool_files(),
                 proc, log, 90, "every recording archived and the spool empty")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    for rid in rids:
        rec = env.catalog.get(rid)
        assert versions(s3_client, payload.bucket, rec.object_key) == 1, (rid, before[rid])
        assert versions(s3_client, header_store.bucket, rec.header_key) == 1, (rid, before[rid])
        assert versions(s3_client, payload.bucket, f"manifests/{rid}.json") == 1, (rid, before[rid])
        assert payload.head(rec.object_key).sha256 == rec.manifest.split('"payload_sha256":"')[1][:64]
        assert len(env.ledger.find(recording_id=rid, kind="archive")) == 1
    assert env.spool_files() == [] and env.work_files() == []
    assert s3_client.list_multipart_uploads(Bucket=payload.bucket).get("Uploads", []) == []


def test_serve_with_a_payload_bucket_without_object_lock_exits_with_the_reason(site, rgw_buckets, tmp_path):
    config, _, _, _ = site
    unlocked, _ = rgw_buckets(lock=False)
    text = re.sub(r'\nbucket = ".*"', f'\nbucket = "{unlocked.bucket}"', config.read_text())
    config.write_text(text)
    log = tmp_path / "serve.log"
    proc = start_serve(config, log)
    try:
        assert proc.wait(60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "does not have Object Lock enabled" in log.read_text()

