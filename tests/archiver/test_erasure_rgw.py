"""Erasure on the real RGW: recordings archived through the real pipeline, erased by
subject through `callvault erasure`, with legal holds, certificates and the two-person rule."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile

import pyrage
import pytest

from appliance.cli import build_parser
from storage import keys
from storage.catalog import Catalog
from storage.dburl import open_database
from storage.hmac_index import load_hmac_key, subject_hmacs
from storage.users import Users

pytestmark = pytest.mark.s3

NUMBER = "0215550123"
PASSWORD = "officer-pass-1234"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = args.fn(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def site(make_env, rgw_buckets, lab_state, identity, tmp_path, monkeypatch):
    """Four archived recordings on RGW (three of NUMBER's), two officers and a config."""
    payload, headers = rgw_buckets()
    env = make_env(payload, headers)
    key = load_hmac_key(tmp_path / "hmac.key")
    subject = subject_hmacs(key, NUMBER, "27")[-1]  # catalogued under the E.164 form
    rids = [env.recording(40_000 + i) for i in range(4)]
    for rid in rids:
        assert env.drive(rid)[-1].kind == "archived"
    for rid in rids[:3]:
        env.catalog.update(rid, caller_hmac=subject)
    users = Users(env.db)
    users.add("olga", "officer", PASSWORD)
    users.add("oscar", "officer", PASSWORD)
    users.add("sam", "supervisor", PASSWORD)
    keys.write_identity(tmp_path / "id.txt", identity)
    e = lab_state.s3_endpoint

    def config(approval: str) -> str:
        path = tmp_path / f"callvault-{approval}.toml"
        path.write_text(f"""
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
[privacy]
hmac_key_file = "{tmp_path / 'hmac.key'}"
default_country = "27"
erasure_approval = "{approval}"
""")
        return str(path)

    monkeypatch.setenv("CALLVAULT_OFFICER_PASSWORD", PASSWORD)
    env.config = config
    env.rids = rids
    return env


def test_erase_by_subject_shreds_two_reports_the_held_one_and_certifies(site, capsys, tmp_path, s3_client):
    env, rids = site, site.rids
    conf = env.config("single")
    code, out, err = run(capsys, "recordings", "get", rids[0], "-c", conf, "--identity", str(tmp_path / "id.txt"),
                         "--out", str(tmp_path / "before.wav"), "--reason", "check before")
    assert code == 0, err
    from archiver.retention import RetentionSweeper
    RetentionSweeper(env.catalog, env.ledger, env.archive()).set_legal_hold(rids[1], True, "counsel")
    # Copies left on this node: a stray work file, a quarantined copy.
    work = env.spool / ".callvault-work"
    work.mkdir(exist_ok=True)
    (work / f"{rids[0]}.header").write_bytes(b"stale")
    (env.spool / ".callvault-quarantine").mkdir()
    (env.spool / ".callvault-quarantine" / f"{rids[2]}.wav").write_bytes(b"RIFF")

    code, out, err = run(capsys, "erasure", "plan", "--subject", NUMBER, "--reference", "DSR-1", "-c", conf)
    assert code == 0, err
    assert f"ERASE  {rids[0]}" in out and f"ERASE  {rids[2]}" in out and f"HELD   {rids[1]}" in out
    assert rids[3] not in out and "nothing changed" in err
    assert env.catalog.get(rids[0]).state == "archived"

    code, out, err = run(capsys, "erasure", "request", "--subject", NUMBER, "--reference", "DSR-1",
                         "--officer", "olga", "-c", conf)
    assert code == 1, err  # done, but one recording is held
    assert f"HELD   {rids[1]}  untouched: legal hold in the catalog" in out
    request_id = err.split(":")[0].strip()

    payload, headers = env.payload, env.headers
    for rid in (rids[0], rids[2]):
        rec = env.catalog.get(rid)
        assert rec.state == "erased"
        left = s3_client.list_object_versions(Bucket=headers.bucket, Prefix=rec.header_key)
        assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []
        lock = s3_client.get_object_retention(Bucket=payload.bucket, Key=rec.object_key, VersionId=rec.version_id)
        assert lock["Retention"]["Mode"] == "COMPLIANCE"
        blob = tmp_path / f"{rid}.remains"
        blob.write_bytes(payload.get(rec.object_key, rec.version_id))
        age = subprocess.run(["age", "-d", "-i", str(tmp_path / "id.txt"), str(blob)],
                             check=False, capture_output=True)
        assert age.returncode != 0 and age.stdout == b""
        code, _, err = run(capsys, "recordings", "get", rid, "-c", conf, "--identity", str(tmp_path / "id.txt"),
                           "--out", str(tmp_path / f"{rid}.wav"), "--reason", "after")
        assert code == 1 and "is erased, not archived" in err
        assert [e.kind for e in env.ledger.find(recording_id=rid)].count("erase") == 1
    assert env.work_files() == [] and not (env.spool / ".callvault-quarantine" / f"{rids[2]}.wav").exists()
    held = env.catalog.get(rids[1])
    assert held.state == "archived" and env.archive().verify(held) is None
    assert env.catalog.get(rids[3]).state == "archived"

    # The subject's access export after the erasure: the erased recordings are listed as
    # erased, with no audio; only the held one is exported.
    bundle = tmp_path / "dsar.zip.age"
    code, out, err = run(capsys, "subject", "export", NUMBER, "--reference", "DSR-1b", "--out", str(bundle),
                         "--identity", str(tmp_path / "id.txt"), "-c", conf)
    assert code == 0, err
    passphrase = out.strip().rsplit("passphrase: ", 1)[1]
    with zipfile.ZipFile(io.BytesIO(pyrage.passphrase.decrypt(bundle.read_bytes(), passphrase))) as zf:
        assert [n for n in zf.namelist() if n.endswith(".wav")] == [f"recordings/{rids[1]}.wav"]
        states = {r["recording_id"]: r["state"] for r in json.loads(zf.read("recordings.json"))}
    assert states == {rids[0]: "erased", rids[1]: "archived", rids[2]: "erased"}

    cert_json, cert_html = tmp_path / "cert.json", tmp_path / "cert.html"
    code, _, err = run(capsys, "erasure", "certificate", request_id, "--json", str(cert_json),
                       "--html", str(cert_html), "-c", conf)
    assert code == 0, err
    cert = json.loads(cert_json.read_text())
    assert cert["reference"] == "DSR-1" and cert["officers"] == ["olga"]
    assert sorted(r["recording_id"] for r in cert["recordings"]) == sorted([rids[0], rids[2]])
    assert all(r["retain_until"] and r["header_versions_deleted"] for r in cert["recordings"])
    assert "DSR-1" in cert_html.read_text() and rids[1] in cert_html.read_text()
    code, _, err = run(capsys, "erasure", "verify", str(cert_json), "-c", conf)
    assert code == 0 and "verified against the ledger and the buckets" in err

    # A certificate claiming more than happened fails: altered, or a header that is still there.
    forged = dict(cert, reference="DSR-2")
    cert_json.write_text(json.dumps(forged))
    code, out, _ = run(capsys, "erasure", "verify", str(cert_json), "-c", conf)
    assert code == 1 and "was altered" in out
    still = dict(cert["recordings"][0], header_key=held.header_key)
    cert_json.write_text(json.dumps(dict(cert, recordings=[still])))
    code, out, _ = run(capsys, "erasure", "verify", str(cert_json), "-c", conf)
    assert code == 1 and "still has 1 version(s)" in out


def test_two_person_rule(site, capsys):
    env, rids = site, site.rids
    conf = env.config("two-person")
    code, out, err = run(capsys, "erasure", "request", "--recording", rids[3], "--reference", "DSR-9",
                         "--officer", "olga", "-c", conf)
    assert code == 0, err
    request_id = out.split(":")[0]
    assert env.catalog.get(rids[3]).state == "archived" and "waiting for a second officer" in out
    code, _, err = run(capsys, "erasure", "approve", request_id, "--officer", "olga", "-c", conf)
    assert code == 1 and "a different officer must approve it" in err
    code, _, err = run(capsys, "erasure", "approve", request_id, "--officer", "sam", "-c", conf)
    assert code == 1 and "not an enabled officer" in err
    assert env.catalog.get(rids[3]).state == "archived"
    code, out, err = run(capsys, "erasure", "approve", request_id, "--officer", "oscar", "-c", conf)
    assert code == 0, err
    assert env.catalog.get(rids[3]).state == "erased"
    kinds = {e.kind: e.data for e in env.ledger.iter_entries() if e.kind.startswith("erasure.")}
    assert kinds["erasure.request"]["officer"] == "olga" and kinds["erasure.approve"]["officer"] == "oscar"
    code, _, err = run(capsys, "erasure", "approve", request_id, "--officer", "oscar", "-c", conf)
    assert code == 1 and "not pending approval" in err
    db = open_database(f"sqlite:///{env.root / 'callvault.db'}")
    try:
        assert Catalog(db).get(rids[3]).state == "erased"
    finally:
        db.close()
