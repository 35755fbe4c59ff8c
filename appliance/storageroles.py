"""[storage] role settings: the pbx and retrieval S3 users that `storage init` writes
the bucket policies for, their checks (`config check` errors) and cautions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from storage.s3policy import ROLES

if TYPE_CHECKING:
    from .config import Config

ROLE_KEYS = tuple(f"{role}_{what}" for role in ROLES for what in ("principal", "access_key_id"))
# An IAM user (or role) ARN; the account is empty on Ceph RGW without tenants.
PRINCIPAL_RE = re.compile(r"^arn:aws:iam::[A-Za-z0-9_-]*:(user|role)/[A-Za-z0-9_+=,.@/-]{1,512}$")
EXAMPLE = "e.g. \"arn:aws:iam::123456789012:user/callvault-pbx\" (AWS) or \"arn:aws:iam:::user/callvault-pbx\" (Ceph RGW)"


def roles_configured(s: Any) -> bool:
    return any(getattr(s, key) for key in ROLE_KEYS)


def storage_problems(s: Any, where: str) -> list[str]:
    """The four role keys go together; principals are IAM ARNs; the roles differ."""
    if not roles_configured(s):
        return []
    out = []
    for key in ROLE_KEYS:
        value = getattr(s, key)
        if not value:
            out.append(f"{where}: [storage] {key}: missing; the storage roles need all of "
                       f"{', '.join(ROLE_KEYS)} (or none of them)")
        elif key.endswith("_principal") and not PRINCIPAL_RE.match(value):
            out.append(f"{where}: [storage] {key} = {value!r}: expected the IAM user ARN of the role's S3 user, "
                       f"{EXAMPLE}")
    for what in ("principal", "access_key_id"):
        pbx, retrieval = getattr(s, f"pbx_{what}"), getattr(s, f"retrieval_{what}")
        if pbx and pbx == retrieval:
            out.append(f"{where}: [storage] retrieval_{what} = {retrieval!r}: the same as pbx_{what}; each role "
                       "needs its own S3 user, or the pbx node can delete headers")
    return out


def storage_role_cautions(c: Config, role: str | None = None) -> list[str]:
    """This node's S3 keys against its role's: a pbx node with other keys can destroy
    what its own keys cannot. ``role`` is the node's role when known; without it
    only keys that are neither role's (the admin keys, most likely) are a caution."""
    s = c.storage
    if s.backend != "s3" or not roles_configured(s) or not s.access_key_id:
        return []
    key = s.access_key_id
    if role in ROLES:
        want = getattr(s, f"{role}_access_key_id")
        if key == want:
            return []
        return [(f"[storage] access_key_id = {key!r}: not {role}_access_key_id ({want!r}) although this is a "
                 f"{role} node; it may do more than the {role} role should (delete headers, set legal holds); "
                 f"give this node the {role} user's keys")]
    if key in (s.pbx_access_key_id, s.retrieval_access_key_id):
        return []
    return [(f"[storage] access_key_id = {key!r}: neither pbx_access_key_id nor retrieval_access_key_id, "
             "most likely the admin keys `callvault storage init` runs with (the bucket owner can delete every "
             "header); give this node its role's keys and keep the admin keys for `storage init`")]
