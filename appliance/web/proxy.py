"""Behind a reverse proxy: the client's address and scheme from forwarding headers.

Only a peer listed in ``[web] trusted_proxies`` is believed. From it, the headers
``[web] proxy_headers`` names are read: ``X-Forwarded-For`` / ``X-Forwarded-Proto``
("x-forwarded") or RFC 7239 ``Forwarded`` ("forwarded"), never both, because a proxy
passes the kind it does not set through from the client untouched. Hops are read
from the right (the nearest proxy's entry last): each entry written by a trusted
proxy gives the address and scheme that proxy saw; the first address that is not a
trusted proxy is the client. Entries further left were written by the client or by
proxies nobody vouches for, and are ignored.

The middleware hands the rest of the app a ``request.clone(scheme=..., remote=...)``,
so the origin check, Secure cookies, HSTS and the login throttle see the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from .auth import Handler

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 16  # more entries than this in one header: only the last ones count


@dataclass(frozen=True)
class Hop:
    client: str | None  # the address the proxy saw (None: unknown or obfuscated)
    proto: str | None  # "http" or "https" (None: not said)


def _address(value: str) -> str | None:
    """The IP address in a ``for=`` or X-Forwarded-For value (ports and brackets removed)."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _proto(value: str | None) -> str | None:
    value = (value or "").strip().strip('"').lower()
    return value if value in ("http", "https") else None


def _split(values: Iterable[str]) -> list[str]:
    return [part for value in values for part in value.split(",")]


def forwarded_hops(values: Iterable[str]) -> list[Hop]:
    """RFC 7239 ``Forwarded`` header values as hops, left to right."""
    hops = []
    for element in _split(values):
        pairs = {}
        for pair in element.split(";"):
            name, sep, value = pair.partition("=")
            if sep:
                pairs[name.strip().lower()] = value.strip()
        hops.append(Hop(_address(pairs["for"]) if "for" in pairs else None, _proto(pairs.get("proto"))))
    return hops


def x_forwarded_hops(fors: Iterable[str], protos: Iterable[str]) -> list[Hop]:
    """``X-Forwarded-For`` and ``X-Forwarded-Proto`` as hops, left to right; the two
    lists are matched from the right (a proxy that appends to one appends to both)."""
    addresses, schemes = _split(fors), _split(protos)
    if not addresses:
        return [Hop(None, _proto(schemes[-1]))] if schemes else []
    schemes = [None] * (len(addresses) - len(schemes)) + schemes[-len(addresses):]
    return [Hop(_address(a), _proto(p)) for a, p in zip(addresses, schemes)]


def resolve(peer: str | None, scheme: str, hops: list[Hop],
            trusted: Callable[[str | None], bool]) -> tuple[str | None, str]:
    """The client's (address, scheme), walking ``hops`` from the right while the
    address in hand is a trusted proxy."""
    for hop in reversed(hops[-MAX_HOPS:]):
        if not trusted(peer):
            break
        scheme = hop.proto or scheme
        if hop.client is None:
            break
        peer = hop.client
    return peer, scheme


def make_middleware(trusted_proxies: Iterable[str], headers: str) -> Callable:
    networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def trusted(address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in n for n in networks)

    @web.middleware
    async def proxy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or not trusted(request.remote):
            return await handler(request)
        h = request.headers
        if headers == "forwarded":
            hops = forwarded_hops(h.getall("Forwarded", []))
        else:
            hops = x_forwarded_hops(h.getall("X-Forwarded-For", []), h.getall("X-Forwarded-Proto", []))
        remote, scheme = resolve(request.remote, request.scheme, hops, trusted)
        if (remote, scheme) == (request.remote, request.scheme):
            return await handler(request)
        return await handler(request.clone(scheme=scheme, remote=remote or ""))

    return proxy_middleware
