"""storage.age.passphrase: passphrase-encrypted age files (the scrypt recipient), checked
against pyrage.
"""

from __future__ import annotations

import pyrage
import pytest

from agehelpers import FAST_SCRYPT, encrypt
from storage.age import (
    HeaderError,
    Identity,
    NoMatchingIdentity,
    Stanza,
    decrypt_with_passphrase,
    encrypt_with_passphrase,
    parse_header,
)
from storage.age.header import header_with_mac
from storage.age.primitives import b64encode


def test_passphrase_round_trip_and_errors():
    blob = encrypt_with_passphrase(b"secret identity", "pw \u00e9", work_factor=FAST_SCRYPT)
    assert decrypt_with_passphrase(blob, "pw \u00e9") == b"secret identity"
    with pytest.raises(NoMatchingIdentity, match="wrong passphrase"):
        decrypt_with_passphrase(blob, "nope")
    with pytest.raises(HeaderError, match="exceeds limit"):
        decrypt_with_passphrase(blob, "pw \u00e9", max_work_factor=FAST_SCRYPT - 1)
    x = encrypt(b"y", Identity.generate().recipient)
    with pytest.raises(HeaderError, match="no scrypt stanza"):
        decrypt_with_passphrase(x[0] + x[1], "pw")


def test_passphrase_interop_with_pyrage():
    ours = encrypt_with_passphrase(b"from callvault", "correct horse", work_factor=14)
    assert pyrage.passphrase.decrypt(ours, "correct horse") == b"from callvault"
    theirs = pyrage.passphrase.encrypt(b"from rage", "correct horse")
    assert decrypt_with_passphrase(theirs, "correct horse") == b"from rage"


def test_scrypt_stanza_must_be_alone(ident):
    blob = encrypt_with_passphrase(b"x", "pw", work_factor=FAST_SCRYPT)
    n, stanzas, _ = parse_header(blob)
    extra = Stanza("X25519", (b64encode(bytes(32)).decode(),), bytes(32))
    mixed = header_with_mac(bytes(16), [*stanzas, extra])
    with pytest.raises(HeaderError, match="scrypt stanza must be the only"):
        decrypt_with_passphrase(mixed + blob[n:], "pw")
