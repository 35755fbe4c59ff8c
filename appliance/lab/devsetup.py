"""The lab's development set-up: the config `callvault lab up` writes for `callvault
serve`, and the development web users. For the lab only; nothing in production uses it.
"""

from __future__ import annotations

import os
from pathlib import Path


def dev_config(state, data: Path, web_port: int, recipient: str) -> str:
    data = data.resolve()
    return f"""# Development config written by `callvault lab up`; do not use in production.
[agi]
listen = "127.0.0.1:{state.agi_port}"

[ami]
host = "127.0.0.1"
port = {state.ami_port}
username = "{state.product_ami_user}"
secret_file = "{data / 'ami.secret'}"
# The lab's Originate-only user, for the admin page's test calls.
test_call_username = "{state.test_call_ami_user}"
test_call_secret = "{state.test_call_ami_secret}"

[database]
url = "sqlite:///{data / 'callvault.db'}"

[spool]
dir = "{state.spool_host}"
asterisk_dir = "{state.spool_inside}"
scan_interval = 10.0

[archive]
recipients = ["{recipient}"]

[storage]
backend = "local"
path = "{data / 'archive'}"

[web]
listen = "127.0.0.1:{web_port}"
# Development only: the private key sits beside the archive so recordings play here.
identity_file = "{data / 'identity.txt'}"

[privacy]
hmac_key_file = "{data / 'hmac.key'}"

[prompts]
sounds_dir = "{state.sounds_host}"
library = "{data / 'prompts'}"
"""


def node_config(state, data: Path, shared: Path, *, name: str, role: str, web_port: int, db_url: str,
                recipient: str, s3: dict, buckets: tuple[str, str]) -> str:
    """One node of the lab's cluster: ``role`` "pbx" (``state`` is its Asterisk; recipients
    only) or "retrieval" (``state`` is None; the identity). All nodes share the PostgreSQL
    database, the buckets, the HMAC key and the prompt library in ``shared``; ``s3`` holds
    this node's own S3 keys (its role's user) and the four role keys."""
    data, shared = data.resolve(), shared.resolve()
    parts = [f"""# Development config written by `callvault lab up --pbx-nodes`; do not use in production.
[node]
name = "{name}"
role = "{role}"

[database]
url = "{db_url}"
"""]
    if state is not None:
        parts.append(f"""
[agi]
listen = "127.0.0.1:{state.agi_port}"

[ami]
host = "127.0.0.1"
port = {state.ami_port}
username = "{state.product_ami_user}"
secret_file = "{data / 'ami.secret'}"

[spool]
dir = "{state.spool_host}"
asterisk_dir = "{state.spool_inside}"
scan_interval = 10.0
""")
    parts.append(f"""
[archive]
recipients = ["{recipient}"]

[storage]
backend = "s3"
endpoint_url = "{s3['endpoint_url']}"
bucket = "{buckets[0]}"
header_bucket = "{buckets[1]}"
# This node's own keys: the {role} user's.
access_key_id = "{s3['access_key_id']}"
secret_access_key_file = "{data / 's3.secret'}"
pbx_principal = "{s3['pbx_principal']}"
pbx_access_key_id = "{s3['pbx_access_key_id']}"
retrieval_principal = "{s3['retrieval_principal']}"
retrieval_access_key_id = "{s3['retrieval_access_key_id']}"

[web]
listen = "127.0.0.1:{web_port}"
""")
    if role == "retrieval":
        parts.append(f'identity_file = "{shared / "identity.txt"}"\n')
    parts.append(f"""
[privacy]
# The same key on every node (one file here; a copy of it on each host in production).
hmac_key_file = "{shared / 'hmac.key'}"
""")
    if state is not None:
        parts.append(f"""
[prompts]
sounds_dir = "{state.sounds_host}"
library = "{shared / 'prompts'}"
""")
    return "".join(parts)


DEV_USERS = (("agent", "agent", ["did:27215550100"]), ("supervisor", "supervisor", []), ("admin", "admin", []))


def dev_users(data: Path, url: str | None = None) -> Path:
    """Development web users, made once with random passwords written to a 0600 file, in
    the database at ``url`` (default: the single node's SQLite file in ``data``).

    The agent owns the lab's default DID, so `callvault lab call` shows on their page.
    """
    import secrets

    from storage.dburl import open_database
    from storage.users import UserError, Users

    logins = data / "web-logins.txt"
    db = open_database(url or f"sqlite:///{data / 'callvault.db'}")
    try:
        users = Users(db)
        known = {u.name for u in users.list()}
        lines = []
        for name, role, ids in DEV_USERS:
            if name in known:
                continue
            password = secrets.token_urlsafe(12)
            try:
                users.add(name, role, password, ids)
            except UserError as e:
                raise SystemExit(f"lab up: cannot create the development user {name!r}: {e}") from None
            lines.append(f"{name} {password}\n")
    finally:
        db.close()
    if lines:
        fd = os.open(logins, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.writelines(lines)
    return logins
