"""The pipeline against the real Ceph RGW: Object Lock, tags, age interop.

The outage test, with real calls, is in test_calls_rgw.py."""

from __future__ import annotations

import json
import subprocess

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


def test_streamed_upload_abandoned_mid_way_leaves_no_upload_and_no_header(make_env, rgw_buckets, s3_client):
    payload, header_store = rgw_buckets()
    crashed = []

    def hook(point, rec):
        if point == "encrypting" and not crashed:  # half the payload sent as parts
            crashed.append(s3_client.list_multipart_uploads(Bucket=payload.bucket).get("Uploads", []))
            raise KeyboardInterrupt

    env = make_env(payload, header_store, hook=hook)
    rid = env.recording(40 * MiB)
    with pytest.raises(KeyboardInterrupt):
        env.process(rid)
    assert [u["Key"] for u in crashed[0]] == [f"rec/{rid}.age.payload"]  # it was streaming
    assert s3_client.list_multipart_uploads(Bucket=payload.bucket).get("Uploads", []) == []
    assert versions(s3_client, header_store.bucket, f"hdr/{rid}.age.header") == []
    assert env.work_files() == []


def test_a_sealed_upload_completed_but_not_tagged_is_recognised_on_resume(make_env, rgw_buckets, s3_client):
    # A crash between CompleteMultipartUpload and the sha256 tag: the resumed job takes
    # the version as its own by the service's checksum of the part checksums, tags it.
    payload, header_store = rgw_buckets()
    crashed = []

    def hook(point, rec):
        if point == "uploading" and not crashed:  # every part stored, catalog says uploading
            crashed.append(1)
            raise KeyboardInterrupt

    env = make_env(payload, header_store, hook=hook)
    rid = env.recording(20 * MiB)
    with pytest.raises(KeyboardInterrupt):
        env.process(rid)
    token = json.loads((env.spool / ".callvault-work" / f"{rid}.upload").read_text())
    s3_client.complete_multipart_upload(Bucket=payload.bucket, Key=f"rec/{rid}.age.payload",
                                        UploadId=token["upload_id"], MultipartUpload={"Parts": token["parts"]})
    assert payload.head(f"rec/{rid}.age.payload").sha256 is None  # not tagged yet
    env.pipeline = env.make_pipeline()
    env.drive(rid)
    rec = env.catalog.get(rid)
    assert rec.state == "archived" and rec.attempts == 0
    assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]
    assert payload.head(rec.object_key).sha256 == token["sha256"]
    assert_locked_default_za(payload, rec, s3_client)
    got = Decryptor(header_store.get(rec.header_key), [env.identity]).decrypt(payload.get(rec.object_key, rec.version_id))
    assert got == env.wavs[rid]


@pytest.mark.parametrize("point", ["encrypting", "uploading"])
def test_rgw_down_while_a_large_payload_streams_then_it_is_archived_once(make_env, rgw_buckets, s3_client, lab,
                                                                         point):
    # encrypting: parts half sent; the retry aborts that upload (once RGW answers) and
    # encrypts again. uploading: every part stored; the retry only completes the upload.
    payload, header_store = rgw_buckets()
    stopped = []

    def hook(p, rec):
        if p == point and not stopped:
            stopped.append(p)
            lab.rgw.stop_rgw()

    env = make_env(payload, header_store, hook=hook)
    rid = env.recording(40 * MiB)
    try:
        outcome = env.process(rid)
        rec = env.catalog.get(rid)
        assert stopped and outcome.kind == "retry", outcome
        assert rec.state == point and payload.endpoint in rec.last_error
        assert env.work_files() == [f"{rid}.upload"]  # the upload it must abort or complete
    finally:
        lab.rgw.start_rgw()
    env.drive(rid)
    rec = env.catalog.get(rid)
    assert rec.state == "archived" and rec.attempts == 1
    assert versions(s3_client, payload.bucket, rec.object_key) == [rec.version_id]
    assert len(versions(s3_client, header_store.bucket, rec.header_key)) == 1  # no header of the first try
    assert s3_client.list_multipart_uploads(Bucket=payload.bucket).get("Uploads", []) == []
    assert env.work_files() == []
    got = Decryptor(header_store.get(rec.header_key), [env.identity]).decrypt(payload.get(rec.object_key, rec.version_id))
    assert got == env.wavs[rid]
