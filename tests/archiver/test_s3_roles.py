"""Storage roles on the real Ceph RGW: `callvault storage init`, run with the admin
(bucket owner) keys, writes the bucket policies; the pbx user then archives through
the real archiver but RGW refuses it every way to destroy, and the retrieval user
erases and sets legal holds."""

from __future__ import annotations

import datetime
import json
import secrets

import botocore.exceptions as bce
import pytest

from appliance import compose
from appliance import config as cfg
from appliance.cli import build_parser
from storage.blobstore import Retention
from storage.errors import PermanentError, RetentionError
from storage.s3policy import ROLES

pytestmark = pytest.mark.s3

MiB = 1 << 20


@pytest.fixture(scope="module")
def role_users(lab):
    """The two roles' RGW users, made once per module: role -> (principal, endpoint)."""
    tag = secrets.token_hex(3)
    return {role: (f"arn:aws:iam:::user/cv-{role}-{tag}", lab.rgw.add_user(f"cv-{role}-{tag}")) for role in ROLES}


@pytest.fixture(scope="module")
def site(role_users, lab_state, identity_module, tmp_path_factory):
    """A config on two new buckets, initialised by `callvault storage init` with the admin
    keys; ``load(role)`` is the same config with that role's keys (as on its node)."""
    root = tmp_path_factory.mktemp("roles")
    e = lab_state.s3_endpoint
    bucket = f"cvr-{secrets.token_hex(5)}"
    path = root / "callvault.toml"
    path.write_text(f"""
[ami]
secret = "x"
[database]
url = "sqlite:///{root / 'callvault.db'}"
[spool]
dir = "{root / 'spool'}"
[archive]
recipients = ["{identity_module.recipient}"]
[storage]
backend = "s3"
endpoint_url = "{e.endpoint_url}"
bucket = "{bucket}"
header_bucket = "{bucket}-hdr"
access_key_id = "{e.access_key_id}"
secret_access_key = "{e.secret_access_key}"
pbx_principal = "{role_users['pbx'][0]}"
pbx_access_key_id = "{role_users['pbx'][1].access_key_id}"
retrieval_principal = "{role_users['retrieval'][0]}"
retrieval_access_key_id = "{role_users['retrieval'][1].access_key_id}"
""")
    for _ in range(2):  # idempotent: the second run updates the same policies
        args = build_parser().parse_args(["storage", "init", "-c", str(path)])
        assert args.fn(args) == 0

    def load(role: str) -> cfg.Config:
        keys = role_users[role][1]
        return cfg.load(path, env={}, check_paths=False, overrides={
            "storage.access_key_id": keys.access_key_id, "storage.secret_access_key": keys.secret_access_key})

    return path, load


@pytest.fixture(scope="module")
def identity_module():
    from storage.age import Identity

    return Identity.generate()


def refused(call, **kw) -> str:
    with pytest.raises(bce.ClientError) as e:
        call(**kw)
    return e.value.response["Error"]["Code"]


def test_storage_init_prints_the_policies(site, capsys):
    path, _ = site
    args = build_parser().parse_args(["storage", "init", "-c", str(path)])
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert "ready: policies: pbx = arn:aws:iam:::user/cv-pbx-" in out and "never delete" in out


def test_pbx_archives_but_cannot_destroy_and_retrieval_erases(site, make_env, s3_client):
    _, load = site
    pbx = compose.build_archive(load("pbx"))
    retrieval = compose.build_archive(load("retrieval"))
    try:
        pbx.check_setup()  # head bucket and Object Lock configuration: allowed
        env = make_env(pbx.payload, pbx.headers)
        rid = env.recording(9 * MiB)  # multipart, with Object Lock headers on create
        assert env.process(rid).kind == "archived", env.catalog.get(rid).last_error
        rec = env.catalog.get(rid)
        assert pbx.verify(rec) is None
        hbucket, pbucket = pbx.headers.bucket, pbx.payload.bucket
        # Objects belong to the user who wrote them (RGW keeps object ACLs): the bucket
        # owner reads nothing the pbx wrote; the retrieval user reads by the policy.
        r = retrieval.headers.client
        assert refused(s3_client.head_object, Bucket=hbucket, Key=rec.header_key) == "403"
        original = r.head_object(Bucket=hbucket, Key=rec.header_key)["VersionId"]
        header_bytes = r.get_object(Bucket=hbucket, Key=rec.header_key)["Body"].read()

        c = pbx.headers.client  # the pbx user's own boto3 client
        # The header: no delete, with or without a version id (no delete marker either).
        assert refused(c.delete_object, Bucket=hbucket, Key=rec.header_key) == "AccessDenied"
        assert refused(c.delete_object, Bucket=hbucket, Key=rec.header_key, VersionId=original) == "AccessDenied"
        with pytest.raises(PermanentError):
            pbx.shred(rid)
        # The payload: no delete, no legal hold, no shorter retention, no bypass.
        for vid in ({}, {"VersionId": rec.version_id}):
            assert refused(c.delete_object, Bucket=pbucket, Key=rec.object_key, **vid) == "AccessDenied"
        assert refused(c.put_object_legal_hold, Bucket=pbucket, Key=rec.object_key, VersionId=rec.version_id,
                       LegalHold={"Status": "ON"}) == "AccessDenied"
        with pytest.raises(PermanentError):
            pbx.set_legal_hold(rec, True)
        sooner = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        assert refused(c.put_object_retention, Bucket=pbucket, Key=rec.object_key, VersionId=rec.version_id,
                       Retention={"Mode": "COMPLIANCE", "RetainUntilDate": sooner}) == "AccessDenied"
        gov = pbx.payload.put("rec/gov-test", b"g", sha256=_sha(b"g"),
                              retention=Retention("GOVERNANCE", sooner + datetime.timedelta(days=1)))
        for bypass in ({}, {"BypassGovernanceRetention": True}):
            assert refused(c.put_object_retention, Bucket=pbucket, Key="rec/gov-test", VersionId=gov.version_id,
                           Retention={"Mode": "GOVERNANCE", "RetainUntilDate": sooner}, **bypass) == "AccessDenied"
            assert refused(c.delete_object, Bucket=pbucket, Key="rec/gov-test", VersionId=gov.version_id,
                           **bypass) == "AccessDenied"
        # Nor may it make a PUT destructive, or widen its own rights.
        assert refused(c.put_bucket_versioning, Bucket=hbucket,
                       VersioningConfiguration={"Status": "Suspended"}) == "AccessDenied"
        assert refused(c.delete_bucket_policy, Bucket=hbucket) == "AccessDenied"

        # A PUT over the header is not refused by policy: it adds a version, the
        # original stays whole, and the pbx user cannot remove either.
        forged = pbx.headers.put(rec.header_key, b"forged", sha256=_sha(b"forged"))
        versions = _versions(s3_client, hbucket, rec.header_key)
        assert set(versions) == {original, forged.version_id}
        kept = r.get_object(Bucket=hbucket, Key=rec.header_key, VersionId=original)["Body"].read()
        assert kept == header_bytes
        assert refused(c.delete_object, Bucket=hbucket, Key=rec.header_key,
                       VersionId=forged.version_id) == "AccessDenied"

        # The retrieval user: legal hold on and off, and erasure removes every version.
        retrieval.set_legal_hold(rec, True)
        assert retrieval.held(rec)
        retrieval.set_legal_hold(rec, False)
        with pytest.raises(RetentionError):  # COMPLIANCE still binds the retrieval role
            retrieval.payload.delete(rec.object_key, rec.version_id)
        retrieval.shred(rid)
        assert _versions(s3_client, hbucket, rec.header_key) == []
    finally:
        pbx.close()
        retrieval.close()


def test_the_policy_is_what_init_wrote(site, s3_client):
    _, load = site
    config = load("pbx")
    doc = json.loads(s3_client.get_bucket_policy(Bucket=config.storage.header_bucket)["Policy"])
    pbx_deny = next(s for s in doc["Statement"] if s["Sid"] == "PbxNeverDestroys")
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectLegalHold"} <= set(pbx_deny["Action"])
    versioning = s3_client.get_bucket_versioning(Bucket=config.storage.header_bucket)
    assert versioning["Status"] == "Enabled"


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _versions(client, bucket: str, key: str) -> list[str]:
    got = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in got.get("Versions", []) + got.get("DeleteMarkers", []) if v["Key"] == key]
