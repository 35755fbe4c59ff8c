"""storage.age.keys: X25519 recipients and identities, wrapping the file key to them.

The real ``age`` binary and the C2SP spec's examples are the reference.
"""

from __future__ import annotations

import hashlib
import pickle

import pytest

from agehelpers import age, data, encrypt
from storage.age import Decryptor, Identity, KeyFormatError, Recipient, parse_header


def test_spec_identity_and_recipient_encoding():
    # The X25519 example pair from the C2SP age spec.
    i = Identity.parse("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
    assert str(i.recipient) == "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    assert i.secret_string() == "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
    assert Recipient.parse(str(i.recipient)) == i.recipient


def test_identity_never_shows_its_secret(ident):
    secret = ident.secret_string()
    for shown in (repr(ident), str(ident), f"{ident}", repr([ident]), repr(ident.recipient)):
        assert secret not in shown and secret.lower() not in shown
        assert "SECRET" not in shown
    assert str(ident.recipient) in repr(ident)
    with pytest.raises(TypeError):
        pickle.dumps(ident)


def test_fingerprint_is_sha256_prefix_of_recipient_string(ident):
    r = ident.recipient
    assert r.fingerprint == hashlib.sha256(str(r).encode()).hexdigest()[:16] == ident.fingerprint


def test_bad_keys_are_rejected_without_echo():
    secret = Identity.generate().secret_string()
    broken = secret[:-1] + ("Q" if secret[-1] != "Q" else "P")
    with pytest.raises(KeyFormatError) as exc:
        Identity.parse(broken)
    assert broken not in str(exc.value)
    for bad in ["age1qqqq", "ssh-ed25519 AAAA", secret, "AGE1" + "q" * 58, ""]:
        with pytest.raises(KeyFormatError):
            Recipient.parse(bad)
    with pytest.raises(KeyFormatError):
        Identity.parse(str(Identity.generate().recipient))


def test_multiple_recipients(ident, keyfile, tmp_path):
    escrow, stranger = Identity.generate(), Identity.generate()
    pt = data(200_000, 7)
    header, payload, enc = encrypt(pt, ident.recipient, escrow.recipient)
    assert [s.type for s in parse_header(header)[1]] == ["X25519", "X25519"]
    assert enc.summary.recipient_fingerprints == (ident.fingerprint, escrow.fingerprint)
    for who in ([ident], [escrow], [stranger, escrow]):
        assert Decryptor(header, who).decrypt(payload) == pt
    (tmp_path / "m.age").write_bytes(header + payload)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "m.age")) == pt
    # and the other direction: age with two recipients, either identity works
    blob = age("-r", str(escrow.recipient), "-r", str(ident.recipient), input=pt)
    n = parse_header(blob)[0]
    assert Decryptor(blob[:n], [escrow]).decrypt(blob[n:]) == pt
