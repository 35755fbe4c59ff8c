"""What `serve` and the CLI leave on disk: private files, warnings about exposed keys,
dead letters' plaintext in quarantine, and config errors that never echo a secret key.

`serve` runs as a real process (tests/support/standalone.py) under the common umask
022, which is how the database came out 0644 before.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from archiveenv import write_wav
from prometheus_client.parser import text_string_to_metric_families
from standalone import standalone_config, start_serve

from storage import keys
from storage.age import Identity
from storage.catalog import Catalog, Recording
from storage.dburl import open_database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def quarantined(url: str) -> float:
    """The `callvault_archive_quarantined` gauge, as a scrape reads it."""
    metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    [gauge] = [f for f in text_string_to_metric_families(metrics) if f.name == "callvault_archive_quarantined"]
    return gauge.samples[0].value


def wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_serve_makes_private_files_warns_about_exposed_keys_and_quarantines_dead_letters(tmp_path, umask_022):
    root = tmp_path / "site"
    identity = root / "identity.txt"
    root.mkdir()
    keys.write_identity(identity, Identity.generate())
    os.chmod(identity, 0o644)  # copied around carelessly
    config = standalone_config(root, web=f'identity_file = "{identity}"', spool="scan_interval = 0.3")
    # The HMAC key in a directory that does not exist yet: serve makes it, 0700.
    config.write_text(config.read_text().replace(str(root / "hmac.key"), str(root / "secrets" / "hmac.key")))
    serve = start_serve(config, tmp_path / "serve.log")
    try:
        url = serve.wait_ready()
        for name in ("callvault.db", "callvault.db-wal", "callvault.db-shm", "secrets/hmac.key"):
            assert mode(root / name) == 0o600, name
        assert mode(root / "secrets") == 0o700
        log = (tmp_path / "serve.log").read_text()
        assert f"[web] identity_file = '{identity}': mode 0644: others can get at it" in log
        assert "hmac_key_file" not in log  # created 0600: nothing to say

        check = cli("config", "check", "-c", str(config))
        assert check.returncode == 0 and "[web] identity_file" in check.stderr and "chmod 600" in check.stderr
        os.chmod(identity, 0o600)
        assert "warning" not in cli("config", "check", "-c", str(config)).stderr

        # A dead letter from before quarantine existed: its WAV still in the spool.
        rid = "r" + secrets.token_hex(12)
        wav = root / "spool" / f"{rid}.wav"
        audio = write_wav(wav, 16_000)
        db = open_database(f"sqlite:///{root / 'callvault.db'}")
        try:
            catalog = Catalog(db)
            catalog.add(Recording(recording_id=rid, consent_id="c1", uniqueid="u1", linkedid="l1", channel="",
                                  spool_path=str(wav), caller_hmac="", did="", agent="", rule="",
                                  jurisdiction="ZA", retention_class="default", consent_state="granted",
                                  started_at=time.time() - 60, ended_at=time.time() - 30, state="failed",
                                  last_error="gave up after 8 attempts"))
            wait(lambda: quarantined(url) == 1, "the scan to quarantine it")
            quarantine = root / "spool" / ".callvault-quarantine"
            assert not wav.exists() and (quarantine / wav.name).read_bytes() == audio
            assert mode(quarantine) == 0o700
            assert "1 in quarantine (plaintext)" in cli("status", "-c", str(config)).stdout

            retry = cli("recordings", "retry", rid, "--reason", "storage fixed", "-c", str(config))
            assert retry.returncode == 0, retry.stderr
            wait(lambda: catalog.get(rid).state == "archived", "the retried job to be archived")
            assert not wav.exists() and list(quarantine.iterdir()) == []
            wait(lambda: quarantined(url) == 0, "the count to drop")
        finally:
            db.close()
        assert serve.stop() == 0
    finally:
        serve.kill()

    out = tmp_path / "ledger.jsonl"
    assert cli("ledger", "export", "-c", str(config), "-o", str(out)).returncode == 0
    assert mode(out) == 0o600 and "archive.release" in out.read_text()


def test_config_check_never_echoes_a_private_key(tmp_path):
    secret = Identity.generate().secret_string()
    path = tmp_path / "callvault.toml"
    path.write_text(f'[ami]\nsecret = "x"\n[archive]\nrecipients = ["{secret}"]\n')
    check = cli("config", "check", "-c", str(path))
    assert check.returncode == 2
    assert "this is a private identity (AGE-SECRET-KEY-...), not a recipient" in check.stderr
    assert "keep the identity on the retrieval node" in check.stderr
    # Quoted whole instead of as a list, or in a consent rule: hidden just the same.
    path.write_text(f'[ami]\nsecret = "x"\n[archive]\nrecipients = "{secret}"\nworkers = "{secret}"\n'
                    f'[[consent.rules]]\nname = "{secret}"\nretention = "nope"\n')
    check = cli("config", "check", "-c", str(path))
    assert check.returncode == 2 and check.stderr.count("\n") >= 2
    body = secret.split("-")[-1]
    assert body not in check.stderr and body[:20] not in check.stderr.upper()
