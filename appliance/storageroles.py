"""[storage] role settings: the pbx and retrieval S3 users that `storage init` writes
the bucket policies for, their checks (`config check` errors) and cautions."""

from __future__ import annotations

import re
from typing import Any

from storage.s3policy import ROLES

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

