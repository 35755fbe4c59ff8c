"""storage.age.header: building, parsing and reading the age header, and its MAC.

The real ``age`` binary and vectors it made are the reference.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from agehelpers import SIZES, age, data, encrypt
from storage import keys
from storage.age import (
    CHUNK_SIZE,
    Decryptor,
    HeaderError,
    HeaderMacError,
    Identity,
    parse_header,
    read_header,
)

VECTORS = Path(__file__).parent / "vectors"


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_age_output(size, ident, tmp_path):
    pt = data(size, size + 1)
    blob = age("-r", str(ident.recipient), input=pt)
    n, stanzas, mac = parse_header(blob)
    assert [s.type for s in stanzas] == ["X25519"] and len(mac) == 32
    header, payload = blob[:n], blob[n:]
    assert Decryptor(header, [ident]).decrypt(payload) == pt
    assert read_header(io.BytesIO(blob)) == header


def test_age_generated_vector():
    [i] = keys.load_identities(VECTORS / "x25519-identity.txt")
    blob = (VECTORS / "x25519-2chunks.age").read_bytes()
    stream = io.BytesIO(blob)
    header = read_header(stream)
    pt = b"".join(Decryptor(header, [i]).decrypt_stream(stream))
    assert pt == hashlib.shake_256(b"callvault age vector").digest(CHUNK_SIZE + 1000)


def test_deterministic_vector_matches_docs(tmp_path):
    # The vector printed in docs/recording-format.md; also checked with age.
    i = Identity(hashlib.sha256(b"callvault test identity").digest())
    assert i.secret_string() == "AGE-SECRET-KEY-15RKGES5XCLPGGYNF8020QJLH3EE4GWJG326YQZ4XADE9YE9LG6JSHF7S5W"
    header, payload, enc = encrypt(
        b"callvault recording-format test vector\n", i.recipient, _file_key=bytes(range(16)),
        _nonce=bytes(range(0xF0, 0x100)),
        _ephemeral_secrets=[hashlib.sha256(b"callvault test ephemeral").digest()])
    assert header == (b"age-encryption.org/v1\n"
                      b"-> X25519 8QuQxaPhW60yS/LojQQNCdR2ZZLEjf4Nyi+/xGCcTmo\n"
                      b"c0Go3FGVAsm0Dll63Ff0lhJhV4R7PNN+bm5th6PLpDo\n"
                      b"--- cbteMPvk2N0KAV43Zc3y8kS1MqZL/wEmZJlS+S9MnsY\n")
    assert payload.hex() == (
        "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
        "c97b074c1dbd5abdf7394126f35d4af9f7620a7ac4c1e93f12ce0d190778776757dffe3f5852db13"
        "6dc1ff4a6eeae0a801f78fe0bf861e")
    assert enc.summary.recipient_fingerprints == ("c9dfdd162ff61e9a",)
    key = tmp_path / "k.txt"
    key.write_text(i.secret_string() + "\n")
    (tmp_path / "v.age").write_bytes(header + payload)
    assert age("-d", "-i", str(key), str(tmp_path / "v.age")) == b"callvault recording-format test vector\n"


def test_header_changes_that_keep_the_file_key_fail_the_mac(ident):
    escrow = Identity.generate()
    header, payload, _ = encrypt(b"x" * 10, ident.recipient, escrow.recipient)
    first = header.index(b"-> ")
    second = header.index(b"-> ", first + 1)
    mac = header.index(b"---")
    dropped = header[:second] + header[mac:]  # remove the escrow stanza
    with pytest.raises(HeaderMacError):
        Decryptor(dropped, [ident])


@pytest.mark.parametrize("bad, message", [
    (b"", "not an age v1 file"),
    (b"age-encryption.org/v2\n", "unsupported age version"),
    (b"-----BEGIN AGE ENCRYPTED FILE-----\n", "armored"),
    (b"age-encryption.org/v1\n--- " + b"A" * 43 + b"\n", "no recipient stanza"),
    (b"age-encryption.org/v1\n-> X25519 abc\n" + b"A" * 64 + b"\n--- " + b"A" * 43 + b"\n", "base64"),
    (b"age-encryption.org/v1\n-> X25519  a\n\n--- " + b"A" * 43 + b"\n", "arguments"),
    (b"age-encryption.org/v1\n-> X25519 a\nAB\n--- " + b"A" * 43 + b"\n", "non-canonical"),
    (b"age-encryption.org/v1\n-> X25519 a\n\n--- AAAA\n", "MAC line"),
    (b"age-encryption.org/v1\n-> X25519 a\n", "truncated"),
])
def test_malformed_headers(bad, message):
    with pytest.raises(HeaderError, match=message):
        parse_header(bad)


def test_header_with_trailing_bytes_is_refused(sample, ident):
    _, header, payload = sample
    with pytest.raises(HeaderError, match="follow the header"):
        Decryptor(header + payload[:5], [ident])
