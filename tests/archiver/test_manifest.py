"""archiver.manifest: the manifest the archiver records for each encrypted recording."""

from __future__ import annotations

import pytest

from archiver.manifest import Manifest
from storage.age import Encryptor
from storage.errors import IntegrityError


def test_manifest_json_round_trip_and_validation(identity):
    enc = Encryptor([identity.recipient])
    b"".join(enc.payload_chunks(b"hello"))
    m = Manifest.of(enc.summary)
    assert Manifest.from_json(m.to_json()) == m
    assert isinstance(m.recipient_fingerprints, tuple)
    with pytest.raises(AttributeError, match="cannot assign to field"):
        m.plaintext_size = 3  # frozen
    bad = m.to_json().replace(f'"payload_size":{m.payload_size}', '"payload_size":1')
    with pytest.raises(IntegrityError):
        Manifest.from_json(bad)
    with pytest.raises(IntegrityError):
        Manifest.from_json("{}")


def test_manifest_of_an_encryption_carries_its_summary(identity):
    enc = Encryptor([identity.recipient])
    b"".join(enc.payload_chunks(b"x" * 70_000))
    s, m = enc.summary, Manifest.of(enc.summary)
    assert (m.plaintext_sha256, m.payload_sha256, m.header_sha256) == (
        s.plaintext_sha256, s.payload_sha256, s.header_sha256)
    assert (m.plaintext_size, m.payload_size, m.recipient_fingerprints) == (
        s.plaintext_size, s.payload_size, s.recipient_fingerprints)
    assert (m.chunk_size, m.format) == (65536, "age-encryption.org/v1")
