"""`callvault serve` with native TLS, as administrators run it: it prints an https
address, and `callvault status` reaches it trusting exactly the configured certificate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from nginxproxy import self_signed

from appliance import config as cfg
from appliance.compose import init_archive
from appliance.lab.asterisk import free_port
from appliance.lab.devsetup import dev_config
from storage import keys
from storage.age import Identity

pytestmark = pytest.mark.asterisk


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          timeout=30, check=False, env={**os.environ, **(env or {})})


def test_serve_over_tls_and_status_pins_the_configured_certificate(lab_state, tmp_path):
    identity = Identity.generate()
    keys.write_identity(tmp_path / "identity.txt", identity)
    (tmp_path / "ami.secret").write_text(lab_state.product_ami_secret)
    cert, key = self_signed(tmp_path / "tls")
    stranger, _ = self_signed(tmp_path / "other")
    path = tmp_path / "callvault.toml"
    text = dev_config(lab_state, tmp_path, free_port(), str(identity.recipient))
    path.write_text(text.replace("[web]\n", f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n', 1))
    config = cfg.load(path, env={}, check_paths=False)
    assert config.web.tls_cert == cert, "dev_config has no [web] table to add TLS to"
    init_archive(config)
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", "-c", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for _ in range(200):
            line = proc.stdout.readline()
            if not line or "callvault: web on " in line:
                break
        assert "web on https://" in line, line
        for _ in range(100):  # the AMI session logs in asynchronously
            status = cli("status", "-c", str(path), "--json")
            assert status.returncode in (0, 1), status.stderr
            if json.loads(status.stdout)["status"] == "up":
                break
        human = cli("status", "-c", str(path))
        assert human.returncode == 0 and "up at https://127.0.0.1:" in human.stdout, human
        # Another certificate configured than the one served: refused, and said so.
        wrong = cli("status", "-c", str(path), env={"CALLVAULT_WEB_TLS_CERT": str(stranger)})
        assert wrong.returncode == 1 and "does not present the certificate in [web] tls_cert" in wrong.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
