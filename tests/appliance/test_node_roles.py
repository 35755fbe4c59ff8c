"""`[node] role`: what each role may hold, and one caller-number HMAC key per database.

Roles other than "all" need the shared PostgreSQL database; a pbx node never holds the
private identity. A node whose HMAC key differs from the one the database recorded at
first use is refused by `serve` and `config check` (exit 2), with how to copy the key.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from standalone import standalone_config

from appliance import config as cfg
from storage.age import Identity
from storage.dburl import open_database
from storage.nodes import Nodes, hmac_fingerprint


def load(tmp_path, **overrides):
    return cfg.load(None, env={}, overrides={"ami.secret": "x", "spool.dir": str(tmp_path / "spool"),
                                             "storage.path": str(tmp_path / "archive"),
                                             "privacy.hmac_key_file": str(tmp_path / "hmac.key"),
                                             "database.url": f"sqlite:///{tmp_path / 'cv.db'}", **overrides},
                    check_paths=False)


def problems(tmp_path, **overrides) -> str:
    with pytest.raises(cfg.ConfigError) as e:
        load(tmp_path, **overrides)
    return "\n".join(e.value.problems)


def test_roles_need_postgresql_and_a_pbx_node_holds_no_identity(tmp_path):
    assert load(tmp_path).node.role == "all"
    pg = "postgresql://callvault@db.example:5432/callvault"
    assert load(tmp_path, **{"node.role": "retrieval", "database.url": pg}).node.role == "retrieval"
    assert load(tmp_path, **{"node.role": "pbx", "database.url": pg}).node.role == "pbx"

    out = problems(tmp_path, **{"node.role": "pbx"})
    assert "[node] role = 'pbx': needs a shared PostgreSQL [database] url" in out
    assert 'role = "all" on a single node' in out
    assert "[node] role = 'retrieval'" in problems(tmp_path, **{"node.role": "retrieval"})
    assert "[node] role = 'both': expected one of all, pbx, retrieval" in problems(tmp_path, **{"node.role": "both"})

    ident = tmp_path / "identity.txt"
    ident.write_text(str(Identity.generate()) + "\n")
    out = problems(tmp_path, **{"node.role": "pbx", "database.url": pg, "web.identity_file": str(ident),
                                "web.identity_passphrase": "pw"})
    assert f"[web] identity_file = '{ident}': a pbx node must not hold the private identity" in out
    assert "set it on the retrieval node" in out
    assert "[web] identity_passphrase: a pbx node holds no identity" in out
    assert "pw" not in out.replace("pbx", "")
    # The retrieval node is where the identity belongs; it needs no AMI secret.
    assert load(tmp_path, **{"node.role": "retrieval", "database.url": pg, "ami.secret": "",
                             "web.identity_file": str(ident)}).web.identity_file == ident
    assert "[ami] secret: missing" in problems(tmp_path, **{"node.role": "pbx", "database.url": pg, "ami.secret": ""})


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_node_with_another_hmac_key_is_refused(pg_url, tmp_path):
    first_key = secrets.token_bytes(32)
    with open_database(pg_url) as db:  # node-a started first: its key is the database's
        assert Nodes(db).claim_hmac_fingerprint(first_key, "node-a") == (hmac_fingerprint(first_key), "node-a")
    path = standalone_config(tmp_path / "b", node='name = "node-b"')
    text = path.read_text().replace(f'url = "sqlite:///{tmp_path / "b" / "callvault.db"}"', f'url = "{pg_url}"')
    path.write_text(text)
    key_file = tmp_path / "b" / "hmac.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)

    for args in (("config", "check"), ("serve",)):
        r = run(*args, "-c", str(path))
        assert r.returncode == 2, (args, r.stdout, r.stderr[-2000:])
        assert f"[privacy] hmac_key_file = '{key_file}'" in r.stderr
        assert "first used by node-a" in r.stderr
        assert f"`scp node-a:{key_file} {key_file}`" in r.stderr and f"chmod 0600 {key_file}" in r.stderr
        assert "callvault: web on" not in r.stdout

    key_file.write_bytes(first_key)  # the copied key
    r = run("config", "check", "-c", str(path))
    assert r.returncode == 0, r.stderr
    with open_database(pg_url) as db:  # the database's key is unchanged
        assert Nodes(db).recorded_fingerprint() == (hmac_fingerprint(first_key), "node-a")
