"""The catalog rebuilt from the real Ceph RGW: recordings archived through the pipeline,
the database dropped, `callvault catalog rebuild`, then `recordings verify --all` and a
byte-identical decryption; the manifest objects are locked like their payloads."""

from __future__ import annotations

import json

import pytest

from appliance.cli import build_parser
from archiver import manifest_object
from storage import keys
from storage.catalog import Catalog
from storage.dburl import open_database

pytestmark = pytest.mark.s3


def run(capsys, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = args.fn(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rebuild_from_rgw_then_verify_all_and_decrypt(make_env, rgw_buckets, lab_state, identity, tmp_path,
                                                     capsys, s3_client):
    payload, headers = rgw_buckets()
    env = make_env(payload, headers)
    rids = [env.recording(70_000 + i) for i in range(3)]
    for rid in rids:
        assert env.process(rid).kind == "archived"
    env.pipeline.archive.shred(rids[2])
    before = {r.recording_id: r for r in env.catalog.search()}

    # Locked like its payload: same mode, same retain-until.
    for rid in rids:
        rec = before[rid]
        got = s3_client.get_object_retention(Bucket=payload.bucket, Key=manifest_object.key(rid))["Retention"]
        want = s3_client.get_object_retention(Bucket=payload.bucket, Key=rec.object_key,
                                              VersionId=rec.version_id)["Retention"]
        assert got == want and got["Mode"] == "COMPLIANCE"
        body = json.loads(payload.get(manifest_object.key(rid)))
        assert body["caller_hmac"] == "ab" * 32 and body["did"] == "27215550100"

    env.db.close()
    (env.root / "callvault.db").unlink()
    e = lab_state.s3_endpoint
    keys.write_identity(tmp_path / "id.txt", identity)
    config = tmp_path / "callvault.toml"
    config.write_text(f"""
[ami]
secret = "x"
[database]
url = "sqlite:///{env.root / 'callvault.db'}"
[spool]
dir = "{env.spool}"
[archive]
recipients = ["{identity.recipient}"]
[storage]
backend = "s3"
endpoint_url = "{e.endpoint_url}"
region = "{e.region}"
bucket = "{payload.bucket}"
header_bucket = "{headers.bucket}"
access_key_id = "{e.access_key_id}"
secret_access_key = "{e.secret_access_key}"
""")
    code, out, err = run(capsys, "catalog", "rebuild", "-c", str(config))
    assert code == 0, out + err
    assert "restored 3 of 3 recordings (2 archived, 1 erased, 0 on legal hold); 0 problems" in err
    assert "ledger LOST" in out

    db = open_database(f"sqlite:///{env.root / 'callvault.db'}")
    try:
        catalog = Catalog(db)
        for rid in rids:
            got, want = catalog.get(rid), before[rid]
            assert (got.version_id, got.manifest, got.caller_hmac, got.retain_until) == \
                   (want.version_id, want.manifest, want.caller_hmac, want.retain_until)
        assert catalog.get(rids[2]).state == "erased"
    finally:
        db.close()
    code, out, _ = run(capsys, "recordings", "verify", "--all", "-c", str(config))
    assert code == 0 and out.count(": ok") == 2
    wav = tmp_path / "out.wav"
    code, _, err = run(capsys, "recordings", "get", rids[1], "--identity", str(tmp_path / "id.txt"),
                       "--out", str(wav), "--reason", "restore drill", "-c", str(config))
    assert code == 0, err
    assert wav.read_bytes() == env.wavs[rids[1]]
