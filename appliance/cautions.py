"""What works but is probably a mistake: `config check` prints these as warnings (and
still exits 0) and `serve` logs them at start. The setting may be the administrator's
deliberate choice, so none of them stops the appliance."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from .netconfig import listen_address
from .storageroles import storage_role_cautions

if TYPE_CHECKING:
    from .config import Config


def cautions(c: Config) -> list[str]:
    """One line per caution, each naming the key and the fix."""
    return _plain_http(c) + _exposed_keys(c) + storage_role_cautions(c, c.node.role)


def _plain_http(c: Config) -> list[str]:
    host, _ = listen_address(c.web.listen)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or c.web.tls_cert is not None or c.web.trusted_proxies:
        return []
    return [(f"[web] listen = {c.web.listen!r}: reachable beyond this host over plain HTTP (passwords and "
             "session cookies in clear); set tls_cert and tls_key, or put a TLS proxy in front and list it "
             "in trusted_proxies")]


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
