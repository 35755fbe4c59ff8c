"""S3 over HTTPS: a private nginx terminating TLS in front of the lab's RGW.

Single PUTs go past botocore's pipeline (``storage.s3client.DirectPut``) on the
client's own HTTP session, so they verify the service's certificate exactly as every
other request does: against ``AWS_CA_BUNDLE`` here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.parse

import pytest
from nginxproxy import nginx_proxy

from storage.errors import PermanentError
from storage.s3client import REQUESTS
from storage.s3store import S3Store

DATA = b"over tls " * 100
SHA = hashlib.sha256(DATA).hexdigest()


def _puts() -> int:
    return REQUESTS.snapshot().get("PutObject", 0)


@pytest.mark.s3
def test_single_puts_over_https_go_direct_and_check_the_certificate(s3_settings, make_s3_store, tmp_path,
                                                                    monkeypatch):
    bucket = make_s3_store(lock=False).bucket
    upstream = urllib.parse.urlsplit(s3_settings.endpoint_url).port
    with nginx_proxy(tmp_path / "nginx", upstream) as url:
        tls = dataclasses.replace(s3_settings, endpoint_url=url, max_attempts=1)
        # A certificate nobody trusts: refused on the direct way and again by boto3.
        monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        with S3Store(tls, bucket, object_lock=False) as store:
            before = _puts()
            with pytest.raises(PermanentError, match="TLS failure"):
                store.put("refused", DATA, sha256=SHA)
            assert _puts() - before >= 2  # the direct one, then boto3's
        monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "nginx" / "tls" / "cert.pem"))
        with S3Store(tls, bucket, object_lock=False) as store:
            assert store._direct is not None and store._direct._base.startswith(f"{url}/")
            before = _puts()
            result = store.put("k", DATA, sha256=SHA)
            assert _puts() - before == 1  # the direct PUT was answered: no second one
            assert result.checksum == SHA
            assert store.get("k") == DATA and store.head("k").sha256 == SHA
