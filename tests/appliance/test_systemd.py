"""systemd: the unit `callvault systemd-unit` prints passes `systemd-analyze verify`, and
`serve` speaks sd_notify to a real datagram socket (READY=1 once both listeners accept,
STOPPING=1 at SIGTERM)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from standalone import standalone_config, start_serve

from appliance import config as cfg
from appliance.systemd import notify, watchdog_interval, writable_paths

CALLVAULT = Path(sys.executable).parent / "callvault"  # the installed entry point


def unit_for(config: Path, *args: str) -> str:
    result = subprocess.run([str(CALLVAULT), "systemd-unit", "-c", str(config), *args],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def verify(unit_text: str, where: Path) -> str:
    """`systemd-analyze verify` output (empty when the unit is clean)."""
    path = where / "callvault.service"
    path.write_text(unit_text)
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f"\nexit {result.returncode}")


def test_the_printed_unit_passes_systemd_analyze_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing (package systemd, Makefile APT)"
    config = standalone_config(tmp_path / "site with space")
    text = unit_for(config, "--user", "voice", "--group", "pbx")
    assert verify(text, tmp_path) == ""
    lines = text.splitlines()
    assert "Type=notify" in lines and "NoNewPrivileges=yes" in lines and "ProtectSystem=strict" in lines
    assert "ProtectHome=yes" in lines and "PrivateTmp=yes" in lines and "WatchdogSec=30s" in lines
    assert "User=voice" in lines and "Group=pbx" in lines
    [exec_start] = [line for line in lines if line.startswith("ExecStart=")]
    assert exec_start == f'ExecStart={CALLVAULT} serve -c "{config}"'
    [rw] = [line for line in lines if line.startswith("ReadWritePaths=")]
    # One entry per top directory serve writes to; the spool, store, database, key and
    # prompts all live under the site directory here.
    assert rw == f'ReadWritePaths=-"{config.parent}"'


def test_verify_does_catch_a_broken_unit(tmp_path):
    """The check above can fail: a typo and a command that is not there are reported."""
    good = unit_for(standalone_config(tmp_path / "site"))
    assert "Unknown key" in verify(good.replace("ProtectSystem=", "ProtectSytem="), tmp_path)
    assert "not executable" in verify(good.replace(str(CALLVAULT), "/nonexistent/callvault"), tmp_path)


def test_writable_paths_come_from_the_config(tmp_path):
    config = cfg.load(standalone_config(tmp_path / "a"), env={}, check_paths=False)
    assert writable_paths(config) == [tmp_path / "a"]
    spread = cfg.load(standalone_config(tmp_path / "b"), env={}, check_paths=False,
                      overrides={"spool.dir": "/var/spool/asterisk/cv", "prompts.library": "/srv/prompts"})
    assert writable_paths(spread) == [Path("/srv/prompts"), tmp_path / "b", Path("/var/spool/asterisk/cv")]


def datagram_socket(abstract: bool) -> tuple[socket.socket, str, Path | None]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"callvault-test-{secrets.token_hex(6)}"
        s.bind("\0" + name)
        return s, "@" + name, None
    where = Path(tempfile.mkdtemp(prefix="cvn-", dir="/tmp"))  # short: sun_path has 108 bytes
    s.bind(str(where / "notify"))
    return s, str(where / "notify"), where


def receive_until(s: socket.socket, wanted: str, seen: list[str], timeout: float = 30.0) -> None:
    s.settimeout(timeout)
    while True:
        lines = s.recv(4096).decode().split("\n")
        seen.extend(lines)
        if wanted in lines:
            return


def accepts(port: int) -> bool:
    with socket.socket() as c:
        c.settimeout(2)
        return c.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("abstract", [True, False], ids=["abstract", "path"])
def test_serve_notifies_ready_after_listeners_accept_and_stopping_on_sigterm(tmp_path, abstract):
    sock, address, cleanup = datagram_socket(abstract)
    serve = start_serve(standalone_config(tmp_path / "site"), tmp_path / "serve.log", NOTIFY_SOCKET=address,
                        WATCHDOG_USEC="300000")
    try:
        seen: list[str] = []
        receive_until(sock, "READY=1", seen)
        # The moment READY=1 arrives, both listeners already accept and the app answers.
        agi_port, web_port = serve.config.agi.address[1], serve.config.web.address[1]
        assert accepts(agi_port) and accepts(web_port)
        # No Asterisk here: /healthz answers 503 naming only the AMI session.
        with pytest.raises(urllib.error.HTTPError) as down:
            urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=5)
        assert down.value.code == 503 and json.load(down.value) == {"status": "down", "down": ["ami"]}
        down.value.close()
        assert any(line.startswith("STATUS=starting") for line in seen[:seen.index("READY=1")])
        assert any(line.startswith("STATUS=serving: web on") for line in seen)
        # The watchdog pings keep coming from the event loop (every 0.15 s here).
        pings = seen.count("WATCHDOG=1")
        for _ in range(2):
            receive_until(sock, "WATCHDOG=1", seen, timeout=5)
        assert seen.count("WATCHDOG=1") >= pings + 2

        serve.proc.send_signal(15)
        receive_until(sock, "STOPPING=1", seen)
        assert serve.proc.wait(timeout=60) == 0
        assert seen.count("READY=1") == 1
    finally:
        serve.kill()
        sock.close()
        if cleanup is not None:
            shutil.rmtree(cleanup)


def test_notify_without_a_manager_does_nothing_and_with_one_sends_lines(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    sock, address, _ = datagram_socket(abstract=True)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert notify("STATUS=hello", "WATCHDOG=1") is True
        sock.settimeout(5)
        assert sock.recv(4096) == b"STATUS=hello\nWATCHDOG=1"
        monkeypatch.setenv("NOTIFY_SOCKET", "@callvault-nobody-" + secrets.token_hex(4))
        assert notify("READY=1") is False  # nobody bound: logged, not raised
    finally:
        sock.close()


def test_watchdog_interval_is_half_the_timeout_for_this_process_only(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_interval() is None
