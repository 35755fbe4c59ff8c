"""TLS for the web listener: the server's context, and the client context `status` uses.

The server context speaks TLS 1.2 and 1.3 only, with the certificate chain and key
from ``[web] tls_cert`` and ``[web] tls_key`` (PEM). ``callvault status`` talks to the
same listener and trusts exactly the configured certificate (pinned, whatever issued
it); the host name is not checked because it connects to the listen address, which
a certificate rarely names.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsError(Exception):
    """The certificate or key cannot be used; ``key`` names the config key at fault."""

    def __init__(self, key: str, value: Path, fix: str):
        self.key, self.value, self.fix = key, value, fix
        super().__init__(f"[web] {key} = {str(value)!r}: {fix}")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with ``cert`` (chain, leaf first) and ``key``; raises TlsError."""
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        try:
            with open(path, "rb") as f:
                f.read(1)
        except FileNotFoundError:
            raise TlsError(name, path, "no such file; point it at a PEM file") from None
        except OSError as e:
            raise TlsError(name, path, f"cannot read it ({e.strerror}); fix its permissions "
                           "for the account serve runs as") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # A passphrase-protected key fails here instead of OpenSSL asking on the terminal.
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            raise TlsError("tls_key", key, f"does not match the certificate in tls_cert ({cert}); "
                           "give the key the certificate was issued for") from None
        if not _is_certificate(cert):
            raise TlsError("tls_cert", cert, "not a PEM certificate; give the certificate chain in PEM "
                           "(-----BEGIN CERTIFICATE-----), the server's own certificate first") from None
        raise TlsError("tls_key", key, "not a usable PEM private key (or it has a passphrase); give the "
                       "unencrypted PEM key (-----BEGIN PRIVATE KEY-----) of tls_cert") from None
    return ctx


def _is_certificate(path: Path) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError):
        return False
    return True


def pinned_client_context(cert: Path) -> ssl.SSLContext:
    """A client context that accepts exactly the server certificate in ``cert``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=cert)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the trust anchor
    return ctx
