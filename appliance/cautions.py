"""What works but is probably a mistake: `config check` prints these as warnings (and
still exits 0) and `serve` logs them at start. The setting may be the administrator's
deliberate choice, so none of them stops the appliance."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from storage.s3policy import ROLES

from .netconfig import listen_address
from .storageroles import roles_configured

if TYPE_CHECKING:
    from .config import Config


def cautions(c: Config) -> list[str]:
    """One line per caution, each naming the key and the fix."""
    return (_plain_http(c) + _plain_http_store(c) + _exposed_keys(c)
            + storage_role_cautions(c, c.node.role))


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain_http(c: Config) -> list[str]:
    host, _ = listen_address(c.web.listen)
    if _loopback(host) or c.web.tls_cert is not None or c.web.trusted_proxies:
        return []
    return [(f"[web] listen = {c.web.listen!r}: reachable beyond this host over plain HTTP (passwords and "
             "session cookies in clear); set tls_cert and tls_key, or put a TLS proxy in front and list it "
             "in trusted_proxies")]


def _plain_http_store(c: Config) -> list[str]:
    """An S3 endpoint beyond this host over plain HTTP: a streamed payload's parts carry
    a CRC32C (docs/archiver.md, "Part checksums"), which catches a changed byte but
    not one forged on the path, and object keys and tags cross the network in clear."""
    s = c.storage
    url = urlsplit(s.endpoint_url)
    if s.backend != "s3" or url.scheme != "http" or _loopback(url.hostname or ""):
        return []
    return [(f"[storage] endpoint_url = {s.endpoint_url!r}: plain HTTP to a store beyond this host "
             "(object keys and tags in clear; a forged payload part would only be found when it is "
             "read back); use an https:// endpoint unless the network to the store is trusted")]


def _exposed_keys(c: Config) -> list[str]:
    """Secret key files that others than their owner may read."""
    from storage.private import exposure

    out = []
    for section, key in (("web", "identity_file"), ("privacy", "hmac_key_file")):
        path = getattr(getattr(c, section), key)
        why = exposure(path) if path is not None else None
        if why:
            out.append(f"[{section}] {key} = {str(path)!r}: {why}, and it is a secret key; "
                       f"run `chmod 600 {path}`")
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
