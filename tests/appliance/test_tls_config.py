"""TLS and reverse-proxy settings: `config check` names the key, the value and the fix;
it warns (exit 0) when the web is reachable beyond loopback over plain HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from configtext import config_check, good_config
from cryptography.hazmat.primitives import serialization
from nginxproxy import self_signed

from appliance import config as cfg


def web(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "callvault.toml"
    path.write_text(good_config(tmp_path, f"[web]\n{body}\n"))
    return path


@pytest.fixture(scope="module")
def pems(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pems")
    cert, key = self_signed(d / "a")
    _, other_key = self_signed(d / "b")
    locked = d / "locked.pem"
    key_obj = serialization.load_pem_private_key(key.read_bytes(), None)
    locked.write_bytes(key_obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"passphrase")))
    junk = d / "junk.pem"
    junk.write_text("not a pem file\n")
    return {"cert": cert, "key": key, "other_key": other_key, "locked": locked, "junk": junk}


def test_native_tls_loads_and_both_files_are_needed(tmp_path, pems):
    c = cfg.load(web(tmp_path, f'tls_cert = "{pems["cert"]}"\ntls_key = "{pems["key"]}"'), env={})
    assert c.web.tls_cert == pems["cert"] and c.web.tls_key == pems["key"]
    only = config_check(web(tmp_path, f'tls_cert = "{pems["cert"]}"'))
    assert only.returncode == 2
    assert "[web] tls_key: missing while tls_cert is set; set both (PEM files) or neither" in only.stderr


@pytest.mark.parametrize(("body", "expected"), [
    ('tls_cert = "{cert}"\ntls_key = "/nonexistent/key.pem"',
     "[web] tls_key = '/nonexistent/key.pem': no such file"),
    ('tls_cert = "{cert}"\ntls_key = "{other_key}"', ("[web] tls_key = '{other_key}': does not match the "
                                                      "certificate in tls_cert")),
    ('tls_cert = "{junk}"\ntls_key = "{key}"', "[web] tls_cert = '{junk}': not a PEM certificate"),
    ('tls_cert = "{cert}"\ntls_key = "{junk}"', "[web] tls_key = '{junk}': not a usable PEM private key"),
    # A passphrase-protected key is refused, not prompted for on the terminal.
    ('tls_cert = "{cert}"\ntls_key = "{locked}"', "[web] tls_key = '{locked}': not a usable PEM private key"),
    ('trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "proxy.example"]',
     ("[web] trusted_proxies = ['127.0.0.1', '10.0.0.0/8', 'proxy.example']: 'proxy.example' is not an IP "
      "address or network")),
    ('proxy_headers = "x-real-ip"', "[web] proxy_headers = 'x-real-ip': expected one of x-forwarded, forwarded"),
])
def test_bad_tls_and_proxy_settings_name_the_key(tmp_path, pems, body, expected):
    result = config_check(web(tmp_path, body.format(**pems)))
    assert result.returncode == 2, result
    assert expected.format(**pems) in result.stderr


def test_unreadable_key_names_the_key(tmp_path, pems):
    result = config_check(web(tmp_path, f'tls_cert = "{pems["cert"]}"\ntls_key = "{tmp_path}"'))
    assert result.returncode == 2
    assert f"[web] tls_key = '{tmp_path}': cannot read it (Is a directory)" in result.stderr


@pytest.mark.parametrize(("listen", "extra", "warns"), [
    ("0.0.0.0:8443", "", True),
    ("192.0.2.10:8080", "", True),
    ("127.0.0.1:8080", "", False),
    ("[::1]:8080", "", False),
    ("0.0.0.0:8443", 'tls_cert = "{cert}"\ntls_key = "{key}"', False),
    ("0.0.0.0:8080", 'trusted_proxies = ["10.1.2.3"]', False),
])
def test_plain_http_beyond_loopback_is_a_warning_not_an_error(tmp_path, pems, listen, extra, warns):
    result = config_check(web(tmp_path, f'listen = "{listen}"\n' + extra.format(**pems)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(": ok\n")
    warning = f"warning: [web] listen = '{listen}': reachable beyond this host over plain HTTP"
    assert (warning in result.stderr) is warns, result.stderr
