"""A data subject's calls through the lab Asterisk 22 and RGW: `callvault subject find`
and `callvault subject export` (the age-encrypted access bundle)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pty
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from callhelpers import OPT_IN, finish, run_call, wait_state

from appliance.keys import AppKeys as K
from storage import keys
from storage.age import Identity

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

NATIONAL = "021 555 0123"  # the lab caller 27215550123, as the person gives it


def age_decrypt(path: Path, out: Path, passphrase: str) -> None:
    """Debian's ``age -d`` reads the passphrase from its terminal only: give it a pty."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execv("/usr/bin/age", ["age", "-d", "-o", str(out), str(path)])
    said = b""
    try:
        while b"passphrase" not in said.lower():
            said += os.read(fd, 1024)
        os.write(fd, passphrase.encode() + b"\n")
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            said += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, said


def cli(config: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *argv, "-c", str(config)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_subject_find_and_export_of_three_recorded_and_one_declined_call(
        appliance, rgw_buckets, lab_state, ami, calls, tmp_path):
    payload, headers = rgw_buckets()
    e = lab_state.s3_endpoint
    overrides = {"storage.backend": "s3", "storage.endpoint_url": e.endpoint_url, "storage.region": e.region,
                 "storage.bucket": payload.bucket, "storage.header_bucket": headers.bucket,
                 "storage.access_key_id": e.access_key_id, "storage.secret_access_key": e.secret_access_key,
                 "privacy.default_country": "27"}
    kept: dict[str, bytes] = {}
    async with appliance(rules=[OPT_IN], **overrides) as app:
        for i in range(3):
            call, event, started = await run_call(app, ami, calls, ["1"])
            assert started and event.get("Record") == "yes"
            [rec] = app[K.catalog].by_linkedid(call.caller_uniqueid)
            wav = appliance.spool / f"{rec.recording_id}.wav"
            while not wav.exists():
                await asyncio.sleep(0.05)
            os.link(wav, tmp_path / f"kept-{i}.wav")  # MixMonitor's bytes, after the archiver unlinks
            await asyncio.sleep(0.5)
            await finish(app, ami, calls, call)
            kept[rec.recording_id] = tmp_path / f"kept-{i}.wav"
        declined, event, started = await run_call(app, ami, calls, ["2"])
        assert event.get("Record") == "no" and not started
        await finish(app, ami, calls, declined)
        for rid in kept:
            await wait_state(app, rid, "archived")
    kept = {rid: path.read_bytes() for rid, path in kept.items()}

    env = {**os.environ, **{f"CALLVAULT_{k.replace('.', '_').upper()}": v for k, v in overrides.items()}}
    config = tmp_path / "callvault.toml"
    found = cli(config, env, "subject", "find", NATIONAL, "--json")
    assert found.returncode == 0, found.stderr
    subject = json.loads(found.stdout)
    assert sorted(r["recording_id"] for r in subject["recordings"]) == sorted(kept)
    assert sorted(c["outcome"] for c in subject["consents"]) == ["declined", "granted", "granted", "granted"]
    assert sorted(c["recording_id"] or "" for c in subject["consents"]) == sorted(["", *kept])
    assert all(r["state"] == "archived" and r["retain_until"] and not r["legal_hold"]
               for r in subject["recordings"])
    table = cli(config, env, "subject", "find", "+27215550123")
    assert table.returncode == 0 and "consent events (4)" in table.stdout and "recordings (3)" in table.stdout
    assert cli(config, env, "subject", "find", "+27215550999", "--json").stdout.count("recording_id") == 0

    # A key that opens nothing: the audit entry is written, then the key fails.
    wrong = tmp_path / "wrong.txt"
    keys.write_identity(wrong, Identity.generate())
    failed = cli(config, env, "subject", "export", NATIONAL, "--reference", "DSAR-0", "--out",
                 str(tmp_path / "no.zip.age"), "--identity", str(wrong))
    assert failed.returncode == 1 and not (tmp_path / "no.zip.age").exists()

    out = tmp_path / "dsar.zip.age"
    done = cli(config, env, "subject", "export", NATIONAL, "--reference", "DSAR-1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("recording ") == 3 and "recording 3/3" in done.stderr
    [passphrase] = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("passphrase: ")]
    assert out.read_bytes()[:21] == b"age-encryption.org/v1"

    plain = tmp_path / "dsar.zip"
    await asyncio.to_thread(age_decrypt, out, plain, passphrase)
    with zipfile.ZipFile(io.BytesIO(plain.read_bytes())) as z:
        manifest = json.loads(z.read("MANIFEST.json"))
        assert set(manifest["files"]) == {*(f"recordings/{rid}.wav" for rid in kept), "consents.json",
                                          "access.json", "recordings.json", "summary.html", "README.txt"}
        for name, meta in manifest["files"].items():
            data = z.read(name)
            assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["size"], name
        for rid, original in kept.items():
            assert z.read(f"recordings/{rid}.wav") == original and original[:4] == b"RIFF"
        consents = json.loads(z.read("consents.json"))
        assert sorted(c["outcome"] for c in consents) == ["declined", "granted", "granted", "granted"]
        assert "DSAR-1" in z.read("README.txt").decode() and "declined" in z.read("summary.html").decode()

    from storage.dburl import open_database
    from storage.ledger import Ledger

    db = open_database(f"sqlite:///{tmp_path / 'callvault.db'}")
    try:
        exports = Ledger(db).find(kind="audit.export")
    finally:
        db.close()
    # The failed export: one entry (the first recording), written before its key failed.
    first = [x for x in exports if x.data["reference"] == "DSAR-0"]
    assert len(first) == 1 and first[0].recording_id in kept
    ok = [x for x in exports if x.data["reference"] == "DSAR-1"]
    assert sorted(x.recording_id for x in ok) == sorted(kept)
    assert all(x.data["via"] == "cli" and x.data["actor"] for x in ok)
