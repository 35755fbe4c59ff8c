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


DEV_USERS = (("agent", "agent", ["did:27215550100"]), ("supervisor", "supervisor", []), ("admin", "admin", []))


def dev_users(data: Path) -> Path:
    """Development web users, made once with random passwords written to a 0600 file.

    The agent owns the lab's default DID, so `callvault lab call` shows on their page.
    """
    import secrets

    from storage.dburl import open_database
    from storage.users import UserError, Users

    logins = data / "web-logins.txt"
    db = open_database(f"sqlite:///{data / 'callvault.db'}")
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
