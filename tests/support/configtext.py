"""The smallest config that `config check` accepts, and `config check` as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def good_config(tmp_path: Path, extra: str = "") -> str:
    """A complete, valid config under ``tmp_path``; ``extra`` is appended TOML."""
    return f"""
[ami]
secret = "s3cret-value"
[database]
url = "sqlite:///{tmp_path}/db/callvault.db"
[spool]
dir = "{tmp_path}/spool"
[storage]
path = "{tmp_path}/archive"
[privacy]
hmac_key_file = "{tmp_path}/hmac.key"
{extra}"""


def config_check(path: Path) -> subprocess.CompletedProcess:
    """`callvault config check -c path` with no CALLVAULT_* variables from this process."""
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    return subprocess.run([sys.executable, "-m", "appliance", "config", "check", "-c", str(path)],
                          check=False, capture_output=True, text=True, env=env, timeout=30,
                          stdin=subprocess.DEVNULL)
