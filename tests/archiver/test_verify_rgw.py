"""Verification of a fresh upload from its PUT answers, against the real Ceph RGW:
what the answers carry, the requests a recording costs, and that nothing checked by
a read-back before is left unchecked."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import crc32c
import pytest
from archivehelpers import assert_locked_default_za, versions

from archiver import manifest_object
from storage.s3client import REQUESTS

pytestmark = pytest.mark.s3

MiB = 1 << 20


def delta(before: dict[str, int]) -> dict[str, int]:
    return {op: n - before.get(op, 0) for op, n in REQUESTS.snapshot().items() if n != before.get(op, 0)}


def test_put_answers_carry_the_checksum_the_service_checked(rgw_buckets):
    payload, _ = rgw_buckets()
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    r = payload.put("t/single", data, size=len(data), sha256=sha)
    assert r.checksum == sha and r.version_id

    # More than one part: each with its CRC32C, whether put from a source (a work file)
    # or encrypted straight into the upload; Ceph answers the CRC32C of the whole object.
    big = os.urandom(17 * MiB)  # three parts of 8 MiB
    r = payload.put("t/multi", big, size=len(big), sha256=hashlib.sha256(big).hexdigest())
    assert r.checksum == f"{crc32c.crc32c(big):08x}" and r.version_id
    up = payload.open_upload("t/streamed", size=len(big))
    for i in range(0, len(big), MiB):
        up.write(big[i:i + MiB])
    up.seal(size=len(big), sha256=hashlib.sha256(big).hexdigest())
    r = up.complete()
    assert r.checksum == f"{crc32c.crc32c(big):08x}" and r.version_id
    assert payload.head("t/multi").sha256 == payload.head("t/streamed").sha256 == hashlib.sha256(big).hexdigest()


def test_fresh_job_costs_three_puts_and_reads_nothing_back(make_env, rgw_buckets, s3_client):
    payload, header_store = rgw_buckets()
    env = make_env(payload, header_store)
    first, second = env.recording(), env.recording()

    before = REQUESTS.snapshot()
    assert env.process(first).kind == "archived"
    # The first fresh job of a process reads both objects back: the service is seen
    # to honour the PUTs' checksum and Object Lock before any read-back is left out.
    assert delta(before) == {"PutObject": 3, "HeadObject": 2}
    assert env.pipeline.puts_trusted

    before = REQUESTS.snapshot()
    assert env.process(second).kind == "archived"
    assert delta(before) == {"PutObject": 3}  # header, payload, manifest object

    for rid in (first, second):
        rec = env.catalog.get(rid)
        assert rec.state == "archived" and rec.archived_at and rec.lease_until == 0
        assert_locked_default_za(payload, rec, s3_client)  # one version, locked, tagged
        stored = manifest_object.read(payload, rid)
        assert stored.rec.version_id == rec.version_id and stored.rec.retain_until == rec.retain_until
        entries = env.ledger.find(recording_id=rid, kind="archive")
        assert len(entries) == 1 and entries[0].data["version_id"] == rec.version_id
        assert entries[0].data["manifest_sha256"] == stored.sha256
        assert payload.head(rec.object_key, rec.version_id).sha256 == json.loads(rec.manifest)["payload_sha256"]
        assert versions(s3_client, payload.bucket, manifest_object.key(rid)) != []
    assert env.spool_files() == [] and env.work_files() == []


def test_legal_hold_placed_during_a_fresh_upload_is_set_on_the_object(make_env, rgw_buckets):
    payload, header_store = rgw_buckets()

    def hold(point, rec):  # a supervisor places a hold while the payload uploads
        if point == "uploaded":
            env.catalog.update(rec.recording_id, legal_hold=1)

    env = make_env(payload, header_store, hook=hold)
    env.pipeline.puts_trusted = True  # the path without read-back
    rid = env.recording()
    assert env.process(rid).kind == "archived"
    rec = env.catalog.get(rid)
    assert payload.head(rec.object_key, rec.version_id).legal_hold


def test_checksum_answer_is_compared_with_what_was_sent():
    """Parsing only: RGW never answers another checksum, so a canned answer stands in."""
    from storage.errors import IntegrityError
    from storage.s3client import answered_checksum

    sha = hashlib.sha256(b"x").hexdigest()
    b64 = base64.b64encode(bytes.fromhex(sha)).decode()
    assert answered_checksum("k", {"ChecksumSHA256": b64}, sha, sha) == sha
    assert answered_checksum("k", {}, sha, sha) is None
    other = base64.b64encode(hashlib.sha256(b"y").digest()).decode()
    with pytest.raises(IntegrityError, match="reports checksum"):
        answered_checksum("k", {"ChecksumSHA256": other}, sha, sha)
    with pytest.raises(IntegrityError, match="reports checksum"):
        answered_checksum("k", {"ChecksumSHA256": f"{b64}-3"}, sha, f"{sha}-2")
    with pytest.raises(IntegrityError, match="not a SHA-256"):
        answered_checksum("k", {"ChecksumSHA256": "!!"}, sha, sha)
