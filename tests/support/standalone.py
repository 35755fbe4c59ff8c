"""`callvault serve` as a real process without the lab: everything local in a temp dir.

The AMI address is a loopback port nobody listens on (the session keeps retrying in
the background, as it does when Asterisk is down), storage is the local store, and
the FastAGI listener takes fake-Asterisk connections. Enough for what does not need a
PBX: start-up and shutdown, logs, metrics, health.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from appliance import config as cfg
from appliance.compose import init_archive
from appliance.lab.asterisk import free_port
from storage.age import Identity


def standalone_config(root: Path, extra: str = "", **sections: str) -> Path:
    """A config for `serve` under ``root``. ``sections`` add lines to a table
    (``web='metrics_token = "x"'``); ``extra`` is appended TOML (e.g. a [log] table)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ami.secret").write_text("not-used-nobody-answers\n")
    (root / "sounds").mkdir(exist_ok=True)
    path = root / "callvault.toml"
    text = f"""[agi]
listen = "127.0.0.1:{free_port()}"

[ami]
host = "127.0.0.1"
port = {free_port()}
secret_file = "{root / 'ami.secret'}"

[database]
url = "sqlite:///{root / 'callvault.db'}"

[spool]
dir = "{root / 'spool'}"

[archive]
recipients = ["{Identity.generate().recipient}"]

[storage]
backend = "local"
path = "{root / 'archive'}"

[web]
listen = "127.0.0.1:{free_port()}"

[privacy]
hmac_key_file = "{root / 'hmac.key'}"

[prompts]
sounds_dir = "{root / 'sounds'}"
library = "{root / 'prompts'}"

{extra}
"""
    for section, lines in sections.items():
        text = text.replace(f"[{section}]\n", f"[{section}]\n{lines}\n", 1)
    path.write_text(text)
    init_archive(cfg.load(path, env={}, check_paths=False))
    return path


@dataclass
class Serve:
    proc: subprocess.Popen
    log: Path  # stderr: the process's log lines
    config: cfg.Config
    url: str = ""

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait for the "web on" line on stdout; returns the web URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "callvault: web on " in line:
                self.url = line.split("web on ", 1)[1].split()[0].rstrip("/")
                return self.url
        raise AssertionError(f"serve never got ready (exit {self.proc.poll()}):\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def start_serve(config_path: Path, log: Path, **env: str) -> Serve:
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", "-c", str(config_path)],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    return Serve(proc, log, cfg.load(config_path, env={}, check_paths=False))
