"""[storage] role keys: `config check` errors (exit 2) and the caution for a node that
runs with keys other than its role's (the admin keys, most likely)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance import config as cfg
from appliance.cautions import storage_role_cautions

ROLES = """
pbx_principal = "arn:aws:iam:::user/callvault-pbx"
pbx_access_key_id = "PBXKEY"
retrieval_principal = "arn:aws:iam:::user/callvault-retrieval"
retrieval_access_key_id = "RETKEY"
"""


def write(tmp_path: Path, access_key_id: str, roles: str = ROLES) -> Path:
    p = tmp_path / "callvault.toml"
    p.write_text(f"""
[ami]
secret = "x"
[database]
url = "sqlite:///{tmp_path}/callvault.db"
[spool]
dir = "{tmp_path}/spool"
[privacy]
hmac_key_file = "{tmp_path}/hmac.key"
[storage]
backend = "s3"
endpoint_url = "http://127.0.0.1:9"
bucket = "cv-payload"
header_bucket = "cv-headers"
access_key_id = "{access_key_id}"
secret_access_key = "not-shown"
{roles}""")
    return p


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "config", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_admin_keys_on_a_node_are_a_caution_role_keys_are_not(tmp_path):
    admin = check(write(tmp_path, "ADMINKEY"))
    assert admin.returncode == 0, admin.stderr
    assert "[storage] access_key_id = 'ADMINKEY': neither pbx_access_key_id nor retrieval_access_key_id" \
        in admin.stderr
    assert "give this node its role's keys" in admin.stderr
    for key in ("PBXKEY", "RETKEY"):
        ok = check(write(tmp_path, key))
        assert ok.returncode == 0 and "access_key_id" not in ok.stderr, ok.stderr
    no_roles = check(write(tmp_path, "ADMINKEY", roles=""))
    assert no_roles.returncode == 0 and "access_key_id" not in no_roles.stderr


def test_a_pbx_node_with_the_retrieval_keys_is_a_caution(tmp_path):
    config = cfg.load(write(tmp_path, "RETKEY"), env={}, check_paths=False)
    [caution] = storage_role_cautions(config, "pbx")
    assert "not pbx_access_key_id ('PBXKEY') although this is a pbx node" in caution
    assert storage_role_cautions(config, "retrieval") == []
    assert storage_role_cautions(config) == []  # a role's keys, role unknown: nothing to say


def test_role_keys_are_checked_together(tmp_path):
    bad = ROLES.replace('"arn:aws:iam:::user/callvault-pbx"', '"callvault-pbx"') \
        .replace('retrieval_access_key_id = "RETKEY"', 'retrieval_access_key_id = "PBXKEY"')
    out = check(write(tmp_path, "PBXKEY", roles=bad))
    assert out.returncode == 2
    assert "[storage] pbx_principal = 'callvault-pbx': expected the IAM user ARN" in out.stderr
    assert "[storage] retrieval_access_key_id = 'PBXKEY': the same as pbx_access_key_id" in out.stderr
    half = check(write(tmp_path, "PBXKEY", roles='pbx_principal = "arn:aws:iam:::user/callvault-pbx"\n'))
    assert half.returncode == 2
    assert "[storage] retrieval_principal: missing; the storage roles need all of" in half.stderr
    assert "not-shown" not in out.stderr + half.stderr


def test_plain_http_store_beyond_loopback_is_a_caution(tmp_path):
    def endpoint(url: str) -> Path:
        p = write(tmp_path, "PBXKEY")
        p.write_text(p.read_text().replace('endpoint_url = "http://127.0.0.1:9"', f'endpoint_url = "{url}"'))
        return p

    remote = check(endpoint("http://192.0.2.7:7480"))
    assert remote.returncode == 0, remote.stderr
    assert ("warning: [storage] endpoint_url = 'http://192.0.2.7:7480': plain HTTP to a store beyond this host"
            in remote.stderr)
    assert "use an https:// endpoint" in remote.stderr
    for url in ("http://127.0.0.1:7480", "http://localhost:7480", "http://[::1]:7480", "https://s3.example:443"):
        quiet = check(endpoint(url))
        assert quiet.returncode == 0 and "endpoint_url" not in quiet.stderr, (url, quiet.stderr)
