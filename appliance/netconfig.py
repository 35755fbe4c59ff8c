"""Network settings: listen addresses, [agi] allow/advertise, [ami] permit and [web]
trusted proxies and TLS files."""

from __future__ import annotations

import ipaddress
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. \"127.0.0.1:4573\"")
    return host.strip("[]"), int(port)


LOOPBACK_PEERS = ("127.0.0.1", "::1")


def networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; ValueError names the first bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an address or network; expected e.g. "
                             "\"10.0.0.5\" or \"10.0.0.0/24\"") from None
    return tuple(out)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host in ("", "*")


def network_problems(c: Any, where: str) -> list[str]:
    """[agi] allow/advertise against listen, and [ami] permit."""
    out = []
    for section, key in (("agi", "allow"), ("ami", "permit")):
        try:
            networks(getattr(getattr(c, section), key))
        except ValueError as e:
            out.append(f"{where}: [{section}] {key} = {list(getattr(getattr(c, section), key))!r}: {e}")
    if not c.ami.permit:
        out.append(f"{where}: [ami] permit = []: empty; list the networks callvault connects from, "
                   "e.g. [\"127.0.0.1/32\"]")
    if bool(c.ami.test_call_username) != bool(c.ami.test_call_secret):
        out.append(f"{where}: [ami] test_call_username = {c.ami.test_call_username!r}: set it together with "
                   "test_call_secret (or test_call_secret_file), or neither")
    try:
        host, _ = listen_address(c.agi.listen)
    except ValueError:
        return out  # reported with the other listen addresses
    if not c.agi.allow and not is_loopback(host):
        out.append(f"{where}: [agi] allow: missing while [agi] listen = {c.agi.listen!r} is not a loopback "
                   "address; list the Asterisk servers that may connect, e.g. allow = [\"10.0.0.5\"]")
    if c.agi.advertise:
        try:
            listen_address(c.agi.advertise)
        except ValueError as e:
            out.append(f"{where}: [agi] advertise = {c.agi.advertise!r}: {e}")
    elif is_unspecified(host):
        out.append(f"{where}: [agi] advertise: missing while [agi] listen = {c.agi.listen!r} listens on all "
                   "addresses; set the HOST:PORT Asterisk dials, e.g. advertise = \"10.0.0.2:4573\"")
    return out


def web_problems(w: Any, where: str, check_paths: bool) -> list[str]:
    """Config errors in ``[web] trusted_proxies``, ``tls_cert`` and ``tls_key`` (``w``: the
    ``WebConfig``)."""
    out = []
    for value in w.trusted_proxies:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            out.append(f"{where}: [web] trusted_proxies = {list(w.trusted_proxies)!r}: {value!r} is not an IP "
                       "address or network; list the proxies' addresses, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]")
    if (w.tls_cert is None) != (w.tls_key is None):
        given, missing = ("tls_cert", "tls_key") if w.tls_cert is not None else ("tls_key", "tls_cert")
        out.append(f"{where}: [web] {missing}: missing while {given} is set; set both (PEM files) or neither")
    elif w.tls_cert is not None and w.tls_key is not None and check_paths:
        # ssl is loaded only when there are files to check (not by `callvault-agi`).
        from .tls import TlsError, server_context

        try:
            server_context(w.tls_cert, w.tls_key)
        except TlsError as e:
            out.append(f"{where}: {e}")
    return out
