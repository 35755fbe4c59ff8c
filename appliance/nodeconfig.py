"""``[node] role``: what a node runs and which keys it may hold.

- ``all``: one node does everything (the default; any database).
- ``pbx``: beside Asterisk: FastAGI, AMI, the archiver and the agent live view. It
  holds age recipients only, never an identity, so that whoever takes the PBX host
  cannot decrypt recordings.
- ``retrieval``: the supervisor, officer and admin web apps, the identity that
  decrypts for playback, and the retention sweeper; it never talks to Asterisk.

Any role but ``all`` shares a PostgreSQL database with the other nodes: with SQLite
there is nothing to share.
"""

from __future__ import annotations

from typing import Any

ROLES = ("all", "pbx", "retrieval")
ASTERISK_ROLES = ("all", "pbx")  # run AMI, FastAGI and the archiver
RETRIEVAL_ROLES = ("all", "retrieval")  # hold the identity, run the retention sweeper


def role_problems(c: Any, where: str) -> list[str]:
    role = c.node.role
    if role not in ROLES:
        return []  # reported with the other choices
    out = []
    at = f"{where}: [node] role = {role!r}"
    if role != "all" and not c.database.url.startswith(("postgresql:", "postgres:")):
        out.append(f"{at}: needs a shared PostgreSQL [database] url (nodes share nothing through SQLite); "
                   "set url = \"postgresql://callvault@db.example:5432/callvault\", or role = \"all\" on a "
                   "single node")
    if role == "pbx":
        if c.web.identity_file is not None:
            out.append(f"{at}: [web] identity_file = {str(c.web.identity_file)!r}: a pbx node must not hold "
                       "the private identity (whoever takes the PBX host could decrypt every recording); "
                       "remove identity_file here, delete the file from this host, and set it on the "
                       "retrieval node")
        if c.web.identity_passphrase is not None:
            out.append(f"{at}: [web] identity_passphrase: a pbx node holds no identity; remove it "
                       "(identity_passphrase, identity_passphrase_file or CALLVAULT_WEB_IDENTITY_PASSPHRASE)")
    return out
