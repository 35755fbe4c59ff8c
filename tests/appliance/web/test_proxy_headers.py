"""Parsing forwarding headers (pure functions; the middleware is proven over HTTP in
test_web_tls.py): hops are read from the right, only through trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from appliance.web.proxy import Hop, forwarded_hops, resolve, x_forwarded_hops

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def trusted(address: str | None) -> bool:
    return address is not None and any(ipaddress.ip_address(address) in n for n in PROXIES)


def test_forwarded_elements_quotes_ports_and_ipv6():
    hops = forwarded_hops(['for=192.0.2.60;proto=http;by=203.0.113.43', 'For="[2001:db8:cafe::17]:4711"',
                           'for=unknown;proto=HTTPS, for=_hidden, for="198.51.100.2:80";proto=ftp'])
    assert hops == [Hop("192.0.2.60", "http"), Hop("2001:db8:cafe::17", None), Hop(None, "https"),
                    Hop(None, None), Hop("198.51.100.2", None)]


def test_x_forwarded_lists_are_matched_from_the_right():
    assert x_forwarded_hops(["203.0.113.9, 10.1.1.1"], ["https"]) == [Hop("203.0.113.9", None),
                                                                      Hop("10.1.1.1", "https")]
    assert x_forwarded_hops([], ["https"]) == [Hop(None, "https")]
    assert x_forwarded_hops(["not-an-ip"], ["gopher"]) == [Hop(None, None)]


@pytest.mark.parametrize(("peer", "hops", "expected"), [
    # Not from a trusted proxy: the headers are ignored.
    ("192.0.2.1", [Hop("203.0.113.9", "https")], ("192.0.2.1", "http")),
    # One trusted proxy.
    ("127.0.0.1", [Hop("203.0.113.9", "https")], ("203.0.113.9", "https")),
    # A client-written entry left of the first untrusted address is ignored.
    ("127.0.0.1", [Hop("198.51.100.1", "http"), Hop("203.0.113.9", "https")], ("203.0.113.9", "https")),
    # Two trusted proxies in a row.
    ("127.0.0.1", [Hop("203.0.113.9", "https"), Hop("10.2.2.2", "http")], ("203.0.113.9", "https")),
    # An unknown client: the scheme the proxy saw, the proxy's address.
    ("127.0.0.1", [Hop(None, "https")], ("127.0.0.1", "https")),
])
def test_resolve_walks_only_through_trusted_proxies(peer, hops, expected):
    assert resolve(peer, "http", hops, trusted) == expected


def test_the_documented_nginx_block_is_the_one_the_tests_run():
    from pathlib import Path

    from nginxproxy import SERVER

    def location(text: str) -> list[str]:
        block = text[text.index("location / {"):]
        block = block[:block.index("}") + 1]
        return [line.split("#")[0].strip() for line in block.splitlines()]

    docs = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    assert location(docs) == location(SERVER.format(port=443, cert="c", key="k", upstream=8080))
