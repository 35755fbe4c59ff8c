"""The pipeline against the real Ceph RGW: Object Lock, tags, age interop.

The outage test, with real calls, is in test_calls_rgw.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from archivehelpers import assert_locked_default_za, versions
from archiver.errors import SetupError
from archiver.service import Archiver
from storage import keys
from storage.age import Decryptor

pytestmark = pytest.mark.s3

MiB = 1 << 20


def test_archive_to_rgw_locked_tagged_and_readable_by_age(make_env, rgw_buckets, s3_client, tmp_path):
    payload, header_store = rgw_buckets()
    env = make_env(payload, header_store)
    rid = env.recording(20 * MiB)  # multipart: three 8 MiB parts
    assert env.process(rid).kind == "archived"
    rec = env.catalog.get(rid)

    assert_locked_default_za(payload, rec, s3_client)
    assert header_store.head(rec.header_key).retention is None

    identity_file = tmp_path / "identity.txt"
    keys.write_identity(identity_file, env.identity)
    age_file = tmp_path / "recording.age"
    with open(age_file, "wb") as f:
        f.write(header_store.get(rec.header_key))
        with payload.open_stream(rec.object_key, rec.version_id) as stream:
            for chunk in stream:
                f.write(chunk)
    out = subprocess.run(["/usr/bin/age", "-d", "-i", str(identity_file), str(age_file)],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == env.wavs[rid]


def test_rerun_after_upload_does_not_make_a_second_version(make_env, rgw_buckets, s3_client):
    payload, header_store = rgw_buckets()
    crashed = []

    def hook(point, rec):
        if point == "uploaded" and not crashed:
            crashed.append(1)
            raise KeyboardInterrupt  # a BaseException: nothing in the pipeline catches it

    env = make_env(payload, header_store, hook=hook)
    rid = env.recording(9 * MiB)
    with pytest.raises(KeyboardInterrupt):
        env.process(rid)
    env.pipeline = env.make_pipeline()
    env.drive(rid)
    rec = env.catalog.get(rid)
    assert rec.state == "archived"
    assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]


async def test_payload_bucket_without_object_lock_is_refused_at_start(make_env, rgw_buckets):
    payload, header_store = rgw_buckets(lock=False)
    env = make_env(payload, header_store)
    archiver = Archiver(env.spool, catalog=env.catalog, ledger=env.ledger, pipeline=env.pipeline)
    with pytest.raises(SetupError, match="does not have Object Lock enabled"):
        await archiver.start()


def test_a_part_changed_on_disk_after_encryption_is_refused_by_rgw(make_env, rgw_buckets, s3_client):
    # The part digests are taken while encrypting and the store hashes nothing itself:
    # RGW refuses the changed part (BadDigest), the job encrypts again, the spool stays.
    payload, header_store = rgw_buckets()
    flipped = []

    def hook(point, rec):
        if point == "encrypting" and not flipped:  # half the payload written, digests taken
            part = Path(rec.spool_path).parent / ".callvault-work" / f"{rec.recording_id}.payload.part"
            with open(part, "r+b") as f:
                f.seek(8 * MiB + 100)  # in the second 8 MiB part
                b = f.read(1)
                f.seek(8 * MiB + 100)
                f.write(bytes([b[0] ^ 0x01]))
            flipped.append(point)

    env = make_env(payload, header_store, hook=hook)
    rid = env.recording(20 * MiB)
    outcome = env.process(rid)
    rec = env.catalog.get(rid)
    assert flipped and outcome.kind == "retry", outcome
    assert rec.state == "encrypting" and "does not match" in rec.last_error
    assert "BadDigest" in rec.last_error  # the service's refusal, not a local hash
    assert (env.spool / f"{rid}.wav").exists()
    assert versions(s3_client, payload.bucket, f"rec/{rid}.age.payload") == []
    assert s3_client.list_multipart_uploads(Bucket=payload.bucket).get("Uploads", []) == []

    env.drive(rid)
    rec = env.catalog.get(rid)
    assert rec.state == "archived" and rec.attempts == 1
    assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]
    assert not (env.spool / f"{rid}.wav").exists()
    got = Decryptor(header_store.get(rec.header_key), [env.identity]).decrypt(payload.get(rec.object_key, rec.version_id))
    assert got == env.wavs[rid]
