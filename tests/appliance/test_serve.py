"""`callvault serve` as administrators run it: a real process against the lab.

Start-up prints the web address, the page answers, `callvault status` reports every
part up (the lab Asterisk connected), and SIGTERM drains and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from appliance import config as cfg
from appliance.compose import init_archive
from appliance.lab.asterisk import free_port
from appliance.lab.devsetup import dev_config
from storage import keys
from storage.age import Identity

pytestmark = pytest.mark.asterisk


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def config_file(lab_state, tmp_path) -> Path:
    identity = Identity.generate()
    keys.write_identity(tmp_path / "identity.txt", identity)
    (tmp_path / "ami.secret").write_text(lab_state.product_ami_secret)
    path = tmp_path / "callvault.toml"
    path.write_text(dev_config(lab_state, tmp_path, free_port(), str(identity.recipient)))
    init_archive(cfg.load(path, env={}, check_paths=False))
    return path


def wait_for_line(proc: subprocess.Popen, needle: str, limit: int = 200) -> str:
    for _ in range(limit):
        line = proc.stdout.readline()
        if not line:
            break
        if needle in line:
            return line
    raise AssertionError(f"serve never printed {needle!r}")


def test_serve_status_and_clean_sigterm(config_file):
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", "-c", str(config_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = wait_for_line(proc, "callvault: web on ")
        url = line.split("web on ", 1)[1].split()[0]
        page = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "callvault is" in page

        # The AMI session logs in asynchronously: status reports up once connected.
        for _ in range(100):
            status = cli("status", "-c", str(config_file), "--json")
            if json.loads(status.stdout)["status"] == "up":
                break
        assert status.returncode == 0 and json.loads(status.stdout) == {"status": "up"}, status.stdout
        human = cli("status", "-c", str(config_file))
        assert human.returncode == 0, human.stdout
        for line in ("ami:      up", "storage:  up", "database: up", "queue:    empty"):
            assert line in human.stdout, human.stdout

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    down = cli("status", "-c", str(config_file))
    assert down.returncode == 1 and "not running" in down.stdout


def test_serve_refuses_a_bad_config_with_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ami]\nport = \"five\"\n")
    result = cli("serve", "-c", str(bad))
    assert result.returncode == 2
    assert "[ami] port = 'five': expected a whole number" in result.stderr


def test_serve_refuses_an_implied_rule_without_its_notice(tmp_path):
    from standalone import standalone_config

    rule = '[[consent.rules]]\nname = "fr-implied"\nmode = "implied"\nprompt_language = "fr"\n'
    path = standalone_config(tmp_path, extra=rule)  # an empty sounds directory: nothing installed
    result = cli("serve", "-c", str(path))
    assert result.returncode == 2
    assert (f"{path}: [[consent.rules]] 'fr-implied' (mode = 'implied', prompt_language = 'fr'): "
            "notice-implied is not installed") in result.stderr
    assert "web on" not in result.stdout
