"""storage.crypto / storage.keys: the age v1 recording format.

The real ``age``/``age-keygen`` binaries and pyrage (rage) are the reference
peers: every format claim is checked against them in both directions.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pty
import random
import re
import select
import signal
import stat
import subprocess
import tracemalloc
from pathlib import Path

import pyrage
import pytest

from storage import crypto, keys
from storage.crypto import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    ChunkAuthError,
    Decryptor,
    Encryptor,
    HeaderError,
    HeaderMacError,
    Identity,
    KeyFormatError,
    Manifest,
    NoMatchingIdentity,
    PayloadError,
    Recipient,
    TrailingData,
    TruncatedPayload,
    parse_header,
    plaintext_range_to_chunks,
)
from storage.errors import IntegrityError, NotFound

VECTORS = Path(__file__).parent / "vectors"
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, (1 << 20) + 12345]
FAST_SCRYPT = 10  # log2 N for tests that do not talk to a real peer


def data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def encrypt(pt: bytes, *recipients: Recipient, **hooks) -> tuple[bytes, bytes, Encryptor]:
    enc = Encryptor(recipients, **hooks)
    return enc.header, b"".join(enc.payload_chunks(pt)), enc


def write_key(path: Path, identity: Identity) -> Path:
    keys.write_identity(path, identity)
    return path


def age(*args: str, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["age", *args], input=input, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def run_with_tty(argv: list[str], passphrase: str, timeout: float = 60) -> tuple[int, bytes]:
    """Run ``argv`` on a pseudo-terminal, answering every passphrase prompt:
    age reads passphrases from the terminal, never from stdin."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    out, answered = b"", 0
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"{argv} timed out; output: {out!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            while answered < len(re.findall(rb"passphrase[^\r\n]*: ", out, re.I)):
                os.write(fd, passphrase.encode() + b"\n")
                answered += 1
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


@pytest.fixture(scope="module")
def ident() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def keyfile(ident, tmp_path_factory) -> Path:
    return write_key(tmp_path_factory.mktemp("keys") / "id.txt", ident)


# --- bech32, keys ----------------------------------------------------------------

def test_spec_identity_and_recipient_encoding():
    # The X25519 example pair from the C2SP age spec.
    i = Identity.parse("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
    assert str(i.recipient) == "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    assert i.secret_string() == "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
    assert Recipient.parse(str(i.recipient)) == i.recipient


def test_bech32_bip173_vectors():
    assert crypto.bech32_decode("A12UEL5L") == ("a", b"")
    assert crypto.bech32_decode("a12uel5l") == ("a", b"")
    hrp = "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio"
    assert crypto.bech32_decode(hrp + "1tt5tgs")[0] == hrp
    for bad in ["A12uEL5L", "a12uel5m", "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3"]:
        with pytest.raises(KeyFormatError):
            crypto.bech32_decode(bad)
    payload = bytes(range(200))  # longer than BIP173's 90-char limit: age allows it
    assert crypto.bech32_decode(crypto.bech32_encode("test", payload)) == ("test", payload)
    assert crypto.bech32_encode("TEST", payload).isupper()


def test_age_keygen_identity_loads(tmp_path):
    path = tmp_path / "k.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    [i] = keys.load_identities(path)
    public = re.search(r"# public key: (age1\S+)", path.read_text()).group(1)
    assert str(i.recipient) == public
    assert keys.load_recipients([public]) == [i.recipient]


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


def test_write_identity_mode_format_and_no_overwrite(tmp_path, ident):
    path = tmp_path / "id.txt"
    keys.write_identity(path, ident)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert re.fullmatch(r"# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[0])
    assert lines[1] == f"# public key: {ident.recipient}"
    assert lines[2] == ident.secret_string()
    assert keys.load_identities(path) == [ident]
    with pytest.raises(FileExistsError):
        keys.write_identity(path, Identity.generate())
    assert keys.load_identities(path) == [ident]
    assert [p.name for p in tmp_path.iterdir()] == ["id.txt"]  # no temp file left
    # age-keygen -y agrees on the public key of our file
    out = subprocess.run(["age-keygen", "-y", str(path)], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == str(ident.recipient)


def test_load_identities_errors(tmp_path):
    with pytest.raises(NotFound):
        keys.load_identities(tmp_path / "missing")
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\nAGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(KeyFormatError, match="line 2"):
        keys.load_identities(bad)
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(KeyFormatError, match="no identity"):
        keys.load_identities(tmp_path / "empty.txt")


def test_load_recipients_strings_and_files(tmp_path, keyfile, ident):
    other = Identity.generate()
    rfile = tmp_path / "recipients.txt"
    yout = subprocess.run(["age-keygen", "-y", str(keyfile)], capture_output=True, check=True, text=True)
    rfile.write_text(f"# supervisors\n{yout.stdout}\n{other.recipient}\n")
    got = keys.load_recipients([str(ident.recipient), rfile, str(rfile)])
    assert got == [ident.recipient, other.recipient]
    with pytest.raises(KeyFormatError):
        keys.load_recipients([])
    (tmp_path / "bad.txt").write_text("age1notarecipient\n")
    with pytest.raises(KeyFormatError, match="bad.txt:1"):
        keys.load_recipients([tmp_path / "bad.txt"])
    with pytest.raises(NotFound):
        keys.load_recipients([tmp_path / "nope"])


# --- round trips and interop -----------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_round_trip_and_age_decrypts_ours(size, ident, keyfile, tmp_path):
    pt = data(size, size)
    header, payload, enc = encrypt(pt, ident.recipient)
    assert len(payload) == crypto.payload_size_for(size)
    assert crypto.plaintext_size(len(payload)) == size
    assert Decryptor(header, [ident]).decrypt(payload) == pt
    m = enc.manifest
    assert (m.plaintext_size, m.payload_size) == (size, len(payload))
    assert m.plaintext_sha256 == hashlib.sha256(pt).hexdigest()
    assert m.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert m.header_sha256 == hashlib.sha256(header).hexdigest()
    assert m.recipient_fingerprints == (ident.fingerprint,)
    (tmp_path / "f.age").write_bytes(header + payload)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "f.age")) == pt


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_age_output(size, ident, tmp_path):
    pt = data(size, size + 1)
    blob = age("-r", str(ident.recipient), input=pt)
    n, stanzas, mac = parse_header(blob)
    assert [s.type for s in stanzas] == ["X25519"] and len(mac) == 32
    header, payload = blob[:n], blob[n:]
    assert Decryptor(header, [ident]).decrypt(payload) == pt
    assert crypto.read_header(io.BytesIO(blob)) == header


def test_age_generated_vector():
    [i] = keys.load_identities(VECTORS / "x25519-identity.txt")
    blob = (VECTORS / "x25519-2chunks.age").read_bytes()
    stream = io.BytesIO(blob)
    header = crypto.read_header(stream)
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
    assert enc.manifest.recipient_fingerprints == ("c9dfdd162ff61e9a",)
    key = tmp_path / "k.txt"
    key.write_text(i.secret_string() + "\n")
    (tmp_path / "v.age").write_bytes(header + payload)
    assert age("-d", "-i", str(key), str(tmp_path / "v.age")) == b"callvault recording-format test vector\n"


def test_multiple_recipients(ident, keyfile, tmp_path):
    escrow, stranger = Identity.generate(), Identity.generate()
    pt = data(200_000, 7)
    header, payload, enc = encrypt(pt, ident.recipient, escrow.recipient)
    assert [s.type for s in parse_header(header)[1]] == ["X25519", "X25519"]
    assert enc.manifest.recipient_fingerprints == (ident.fingerprint, escrow.fingerprint)
    for who in ([ident], [escrow], [stranger, escrow]):
        assert Decryptor(header, who).decrypt(payload) == pt
    (tmp_path / "m.age").write_bytes(header + payload)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "m.age")) == pt
    # and the other direction: age with two recipients, either identity works
    blob = age("-r", str(escrow.recipient), "-r", str(ident.recipient), input=pt)
    n = parse_header(blob)[0]
    assert Decryptor(blob[:n], [escrow]).decrypt(blob[n:]) == pt


@pytest.mark.parametrize("size", [0, 5, CHUNK_SIZE, 2 * CHUNK_SIZE + 3])
def test_pyrage_interop_both_ways(size, ident):
    pt = data(size, 99)
    header, payload, _ = encrypt(pt, ident.recipient)
    rage_identity = pyrage.x25519.Identity.from_str(ident.secret_string())
    assert pyrage.decrypt(header + payload, [rage_identity]) == pt
    blob = pyrage.encrypt(pt, [pyrage.x25519.Recipient.from_str(str(ident.recipient))])
    n = parse_header(blob)[0]
    assert Decryptor(blob[:n], [ident]).decrypt(blob[n:]) == pt


def test_encrypt_file_writes_two_objects(tmp_path, ident, keyfile):
    src = tmp_path / "call.wav"
    src.write_bytes(data(300_000, 3))
    m = crypto.encrypt_file(src, tmp_path / "h", tmp_path / "p", [ident.recipient])
    h, p = (tmp_path / "h").read_bytes(), (tmp_path / "p").read_bytes()
    assert m.header_sha256 == hashlib.sha256(h).hexdigest()
    assert m.payload_sha256 == hashlib.sha256(p).hexdigest()
    assert m.payload_size == len(p) and m.plaintext_size == 300_000
    (tmp_path / "joined.age").write_bytes(h + p)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "joined.age")) == src.read_bytes()
    hbuf, pbuf = io.BytesIO(), io.BytesIO()  # streams work too
    m2 = crypto.encrypt_file(src, hbuf, pbuf, [ident.recipient])
    assert Decryptor(hbuf.getvalue(), [ident]).decrypt(pbuf.getvalue()) == src.read_bytes()
    assert m2.plaintext_sha256 == m.plaintext_sha256 and m2.payload_sha256 != m.payload_sha256


def test_manifest_json_round_trip_and_validation(ident):
    _, _, enc = encrypt(b"hello", ident.recipient)
    m = enc.manifest
    assert Manifest.from_json(m.to_json()) == m
    assert isinstance(m.recipient_fingerprints, tuple)
    with pytest.raises(AttributeError, match="cannot assign to field"):
        m.plaintext_size = 3  # frozen
    bad = m.to_json().replace(f'"payload_size":{m.payload_size}', '"payload_size":1')
    with pytest.raises(IntegrityError):
        Manifest.from_json(bad)
    with pytest.raises(IntegrityError):
        Manifest.from_json("{}")


def test_output_does_not_depend_on_how_input_is_split(ident):
    pt = data(3 * CHUNK_SIZE + 77, 5)
    hooks = dict(_file_key=bytes(16), _nonce=bytes(16), _ephemeral_secrets=[bytes(range(32))])
    _, reference, _ = encrypt(pt, ident.recipient, **hooks)
    rng = random.Random(1)
    for _ in range(5):
        cuts = sorted(rng.sample(range(len(pt)), 40))
        enc = Encryptor([ident.recipient], **hooks)
        pieces = [pt[a:b] for a, b in zip([0, *cuts], [*cuts, len(pt)])]
        assert b"".join([enc.update(x) for x in pieces] + [enc.finalize()]) == reference
        dec = Decryptor(enc.header, [ident]).payload_decryptor()
        cuts = sorted(rng.sample(range(len(reference)), 40))
        out = [dec.update(reference[a:b]) for a, b in zip([0, *cuts], [*cuts, len(reference)])]
        assert b"".join(out) + dec.finalize() == pt
        assert dec.plaintext_sha256 == hashlib.sha256(pt).hexdigest()
        assert dec.payload_sha256 == hashlib.sha256(reference).hexdigest()


def test_byte_at_a_time_decrypt_of_small_payload(ident):
    pt = data(100, 2)
    header, payload, _ = encrypt(pt, ident.recipient)
    dec = Decryptor(header, [ident]).payload_decryptor()
    assert b"".join(dec.update(payload[i:i + 1]) for i in range(len(payload))) + dec.finalize() == pt


# --- random access -------------------------------------------------------------------------

def test_chunk_math():
    span = plaintext_range_to_chunks(70_000, 140_000, crypto.payload_size_for(200_000))
    assert span == (1, 2, 16 + ENC_CHUNK_SIZE, 16 + 3 * ENC_CHUNK_SIZE, False)
    span = plaintext_range_to_chunks(0, 10**9, crypto.payload_size_for(CHUNK_SIZE))
    assert span == (0, 0, 16, 16 + ENC_CHUNK_SIZE, True)
    assert plaintext_range_to_chunks(0, 0, 32) == (0, 0, 16, 32, True)
    for impossible in (0, 31, 16 + ENC_CHUNK_SIZE + 16, 16 + ENC_CHUNK_SIZE + 5):
        with pytest.raises(PayloadError):
            crypto.plaintext_size(impossible)
    for size in range(0, 3 * CHUNK_SIZE + 2, 4099):
        assert crypto.plaintext_size(crypto.payload_size_for(size)) == size


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE,
                                  3 * CHUNK_SIZE + 5])
def test_every_boundary_range_matches_plaintext_slice(size, ident):
    pt = data(size, size)
    header, payload, _ = encrypt(pt, ident.recipient)
    dec = Decryptor(header, [ident])
    reads = []

    def read_range(a, b):
        reads.append((a, b))
        return payload[a:b]

    marks = {0, 1, size - 1, size, size + 5}
    for k in range(1, 4):
        marks |= {k * CHUNK_SIZE - 1, k * CHUNK_SIZE, k * CHUNK_SIZE + 1}
    marks = sorted(m for m in marks if 0 <= m <= size + 5)
    for start in (m for m in marks if m <= size):
        for end in (m for m in marks if m >= start):
            reads.clear()
            assert dec.decrypt_range(read_range, start, end, len(payload)) == pt[start:end], (start, end)
            span = plaintext_range_to_chunks(start, end, len(payload))
            fetched = sum(b - a for a, b in reads)
            assert len(reads) <= 2 and fetched <= 16 + (span.last_chunk - span.first_chunk + 1) * ENC_CHUNK_SIZE


def test_random_access_authenticates_the_final_flag(ident):
    pt = data(3 * CHUNK_SIZE + 5, 4)
    header, payload, _ = encrypt(pt, ident.recipient)
    dec, nonce = Decryptor(header, [ident]), payload[:16]
    c1 = payload[16 + ENC_CHUNK_SIZE:16 + 2 * ENC_CHUNK_SIZE]
    assert dec.decrypt_chunks(c1, 1, False, nonce=nonce) == pt[CHUNK_SIZE:2 * CHUNK_SIZE]
    with pytest.raises(TruncatedPayload):  # a non-final chunk presented as the object's end
        dec.decrypt_chunks(c1, 1, True, nonce=nonce)
    with pytest.raises(ChunkAuthError):  # right bytes, wrong index
        dec.decrypt_chunks(c1, 2, False, nonce=nonce)
    tail = payload[16 + 3 * ENC_CHUNK_SIZE:]
    assert dec.decrypt_chunks(tail, 3, True, nonce=nonce) == pt[3 * CHUNK_SIZE:]
    with pytest.raises(TruncatedPayload):
        dec.decrypt_chunks(tail, 3, False, nonce=nonce)
    # Object cut at a chunk boundary: its size looks valid, its end does not verify.
    cut = payload[:16 + 2 * ENC_CHUNK_SIZE]
    assert crypto.plaintext_size(len(cut)) == 2 * CHUNK_SIZE
    with pytest.raises(TruncatedPayload):
        dec.decrypt_range(lambda a, b: cut[a:b], 2 * CHUNK_SIZE - 10, 2 * CHUNK_SIZE, len(cut))
    assert dec.decrypt_range(lambda a, b: cut[a:b], 0, 10, len(cut)) == pt[:10]
    with pytest.raises(TruncatedPayload):  # the store returned less than asked
        dec.decrypt_range(lambda a, b: payload[a:b - 1], 0, 10, len(payload))


# --- failures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(ident):
    pt = data(3 * CHUNK_SIZE + 5, 11)  # chunks 0..2 full, chunk 3 short and final
    header, payload, _ = encrypt(pt, ident.recipient)
    return pt, header, payload


def chunk(payload: bytes, i: int) -> bytes:
    return payload[16 + i * ENC_CHUNK_SIZE:16 + (i + 1) * ENC_CHUNK_SIZE]


def decrypt(header: bytes, payload: bytes, identities) -> bytes:
    return Decryptor(header, identities).decrypt(payload)


def test_dropped_final_chunk_is_truncation(sample, ident):
    _, header, payload = sample
    with pytest.raises(TruncatedPayload, match="chunk 2 is not final"):
        decrypt(header, payload[:16 + 3 * ENC_CHUNK_SIZE], [ident])


def test_cut_mid_chunk(sample, ident):
    _, header, payload = sample
    with pytest.raises(ChunkAuthError, match="chunk 3 .*cut mid-chunk"):
        decrypt(header, payload[:-3], [ident])
    with pytest.raises(ChunkAuthError, match="chunk 2 "):
        decrypt(header, payload[:16 + 2 * ENC_CHUNK_SIZE + 1000], [ident])
    for short in (payload[:10], payload[:16], payload[:16 + 3 * ENC_CHUNK_SIZE + 7]):
        with pytest.raises(TruncatedPayload):
            decrypt(header, short, [ident])


def test_reordered_chunks(sample, ident):
    _, header, payload = sample
    swapped = payload[:16] + chunk(payload, 1) + chunk(payload, 0) + payload[16 + 2 * ENC_CHUNK_SIZE:]
    with pytest.raises(ChunkAuthError, match="chunk 0 .*reordered"):
        decrypt(header, swapped, [ident])


def test_trailing_data(sample, ident):
    _, header, payload = sample
    with pytest.raises(IntegrityError):
        decrypt(header, payload + b"x", [ident])
    pt = data(2 * CHUNK_SIZE, 12)  # the final chunk is full: the flag tells
    h2, p2, _ = encrypt(pt, ident.recipient)
    for extra in (b"x", p2[16:]):
        with pytest.raises(TrailingData, match="chunk 1 is the final chunk"):
            decrypt(h2, p2 + extra, [ident])


def test_wrong_key_and_foreign_payload(sample, ident):
    pt, header, payload = sample
    with pytest.raises(NoMatchingIdentity, match="none of the 1 identities"):
        decrypt(header, payload, [Identity.generate()])
    other_header, other_payload, _ = encrypt(pt, ident.recipient)
    with pytest.raises(ChunkAuthError, match="chunk 0"):
        decrypt(other_header, payload, [ident])


def test_flipped_bits(sample, ident):
    _, header, payload = sample
    mac_at = header.rindex(b"--- ") + 4
    tampered = bytearray(header)
    tampered[mac_at] = ord("A") if header[mac_at] != ord("A") else ord("B")
    with pytest.raises(HeaderMacError, match="header MAC mismatch"):
        Decryptor(bytes(tampered), [ident])
    tampered = bytearray(header)
    tampered[mac_at + 5] ^= 0x01  # may leave the base64 alphabet: malformed, still refused
    with pytest.raises(HeaderError):
        Decryptor(bytes(tampered), [ident])
    for pos in (0, 15, 16, 100, 16 + ENC_CHUNK_SIZE + 5, len(payload) - 1):
        flipped = bytearray(payload)
        flipped[pos] ^= 0x10
        with pytest.raises(ChunkAuthError):
            decrypt(header, bytes(flipped), [ident])


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


def test_scrypt_stanza_must_be_alone(ident):
    blob = crypto.encrypt_with_passphrase(b"x", "pw", work_factor=FAST_SCRYPT)
    n, stanzas, _ = parse_header(blob)
    extra = crypto.Stanza("X25519", (crypto._b64encode(bytes(32)).decode(),), bytes(32))
    mixed = crypto._header_with_mac(bytes(16), [*stanzas, extra])
    with pytest.raises(HeaderError, match="scrypt stanza must be the only"):
        crypto.decrypt_with_passphrase(mixed + blob[n:], "pw")


# --- passphrase files ------------------------------------------------------------------------

def test_passphrase_round_trip_and_errors():
    blob = crypto.encrypt_with_passphrase(b"secret identity", "pw \u00e9", work_factor=FAST_SCRYPT)
    assert crypto.decrypt_with_passphrase(blob, "pw \u00e9") == b"secret identity"
    with pytest.raises(NoMatchingIdentity, match="wrong passphrase"):
        crypto.decrypt_with_passphrase(blob, "nope")
    with pytest.raises(HeaderError, match="exceeds limit"):
        crypto.decrypt_with_passphrase(blob, "pw \u00e9", max_work_factor=FAST_SCRYPT - 1)
    x = encrypt(b"y", Identity.generate().recipient)
    with pytest.raises(HeaderError, match="no scrypt stanza"):
        crypto.decrypt_with_passphrase(x[0] + x[1], "pw")


def test_passphrase_interop_with_pyrage():
    ours = crypto.encrypt_with_passphrase(b"from callvault", "correct horse", work_factor=14)
    assert pyrage.passphrase.decrypt(ours, "correct horse") == b"from callvault"
    theirs = pyrage.passphrase.encrypt(b"from rage", "correct horse")
    assert crypto.decrypt_with_passphrase(theirs, "correct horse") == b"from rage"


def test_passphrase_identity_file_from_age_p():
    # Made with `age -p` (prompted passphrase) from passphrase-identity.txt.
    got = keys.load_identities(VECTORS / "passphrase-identity.age", "callvault test passphrase")
    assert got == keys.load_identities(VECTORS / "passphrase-identity.txt")
    with pytest.raises(KeyFormatError, match="passphrase is needed"):
        keys.load_identities(VECTORS / "passphrase-identity.age")
    with pytest.raises(NoMatchingIdentity):
        keys.load_identities(VECTORS / "passphrase-identity.age", "wrong")


def test_our_passphrase_identity_file_works_with_age(tmp_path, ident):
    path = tmp_path / "protected.age"
    keys.write_identity(path, ident, "s3cret phrase", work_factor=12)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load_identities(path, "s3cret phrase") == [ident]
    header, payload, _ = encrypt(b"supervisor only", ident.recipient)
    (tmp_path / "r.age").write_bytes(header + payload)
    code, out = run_with_tty(["age", "-d", "-i", str(path), "-o", str(tmp_path / "r.out"),
                              str(tmp_path / "r.age")], "s3cret phrase")
    assert code == 0, out
    assert (tmp_path / "r.out").read_bytes() == b"supervisor only"
    # and age -p can read what our scrypt stanza protects, directly
    code, out = run_with_tty(["age", "-d", "-o", str(tmp_path / "id.out"), str(path)], "s3cret phrase")
    assert code == 0, out
    assert keys.parse_identities((tmp_path / "id.out").read_text()) == [ident]


# --- bounded memory ---------------------------------------------------------------------------

def test_streaming_memory_is_bounded(ident):
    piece = data(CHUNK_SIZE + 123, 1)  # odd size: chunk boundaries fall inside pieces
    count = (64 << 20) // len(piece)

    def source():
        for _ in range(count):
            yield piece

    tracemalloc.start()
    try:
        enc = Encryptor([ident.recipient])
        dec = Decryptor(enc.header, [ident])
        digest, total = hashlib.sha256(), 0
        for pt in dec.decrypt_stream(enc.payload_chunks(source())):
            digest.update(pt)
            total += len(pt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == count * len(piece)
    assert enc.manifest.plaintext_sha256 == digest.hexdigest()
    assert peak < 1 << 20, f"peak {peak} bytes for a {total >> 20} MiB stream"


# --- encrypt_to: the archiver's whole-file path ------------------------------------------------

BLOCK = crypto.BLOCK_CHUNKS * CHUNK_SIZE


class ShortReads(io.RawIOBase):
    """A file that returns at most ``most`` bytes per call, through read() only."""

    def __init__(self, payload: bytes, most: int):
        self._f, self._most = io.BytesIO(payload), most

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(self._most, n if n >= 0 else self._most))

    readinto = None  # type: ignore[assignment]  # read() only: the other path of _fill


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, BLOCK - 1, BLOCK, BLOCK + 1,
                                  2 * BLOCK, 3 * BLOCK + CHUNK_SIZE + 7])
@pytest.mark.parametrize("source", ["file", "short-reads"])
def test_encrypt_to_is_byte_for_byte_the_streaming_encryption(size, source, ident):
    pt = data(size, 5)
    key, nonce = os.urandom(16), os.urandom(16)
    ref = Encryptor([ident.recipient], _file_key=key, _nonce=nonce)
    expected = b"".join(ref.payload_chunks(pt))
    enc = Encryptor([ident.recipient], _file_key=key, _nonce=nonce)
    src = io.BytesIO(pt) if source == "file" else ShortReads(pt, 100_001)
    out, seen = io.BytesIO(), []
    manifest = enc.encrypt_to(src, out.write, progress=seen.append)
    assert out.getvalue() == expected
    assert manifest == enc.manifest
    assert (manifest.plaintext_sha256, manifest.payload_sha256) == (
        hashlib.sha256(pt).hexdigest(), hashlib.sha256(expected).hexdigest())
    assert (manifest.plaintext_size, manifest.payload_size) == (size, len(expected))
    assert seen == sorted(seen) and seen[-1] == len(expected)


MiB8 = 8 << 20
# Plaintext sizes around the 8 MiB part boundaries of the *payload* (nonce and tags included).
_EDGE = MiB8 - crypto.NONCE_SIZE - crypto.TAG_SIZE * (MiB8 // crypto.ENC_CHUNK_SIZE + 1)


@pytest.mark.parametrize("size", [0, 1, BLOCK, MiB8, 2 * MiB8 + 12_345, 17 * BLOCK + 5])
def test_encrypt_to_part_digests_are_those_of_the_payload_slices(size, ident):
    enc = Encryptor([ident.recipient])
    out = io.BytesIO()
    assert enc.part_digests is None
    manifest = enc.encrypt_to(io.BytesIO(data(size, 9)), out.write, part_size=MiB8)
    payload = out.getvalue()
    slices = [payload[k:k + MiB8] for k in range(0, max(1, len(payload)), MiB8)]
    assert enc.part_digests.part_size == MiB8
    assert list(enc.part_digests.sha256) == [hashlib.sha256(s).hexdigest() for s in slices]
    assert enc.part_digests.fits(manifest.payload_size)
    assert manifest.payload_sha256 == hashlib.sha256(payload).hexdigest()


def test_encrypt_to_part_digests_at_an_exact_part_boundary(ident):
    # A payload of exactly one part has one digest, the payload's own.
    ran = 0
    for size in range(_EDGE - 2, _EDGE + 3):
        if crypto.payload_size_for(size) not in (MiB8 - 1, MiB8, MiB8 + 1):
            continue
        enc = Encryptor([ident.recipient])
        m = enc.encrypt_to(io.BytesIO(bytes(size)), lambda piece: None, part_size=MiB8)
        want = 1 if m.payload_size <= MiB8 else 2
        assert len(enc.part_digests.sha256) == want
        if want == 1:
            assert enc.part_digests.sha256[0] == m.payload_sha256
        ran += 1
    assert ran == 3


@pytest.mark.parametrize("size", [0, BLOCK, 2 * BLOCK + 3])
def test_encrypt_to_output_is_read_by_age_and_rage(size, ident, keyfile, tmp_path):
    pt = data(size, 6)
    enc = Encryptor([ident.recipient])
    out = io.BytesIO()
    enc.encrypt_to(io.BytesIO(pt), out.write)
    blob = enc.header + out.getvalue()
    assert pyrage.decrypt(blob, [pyrage.x25519.Identity.from_str(ident.secret_string())]) == pt
    (tmp_path / "f.age").write_bytes(blob)
    assert age("-d", "-i", str(keyfile), str(tmp_path / "f.age")) == pt


def test_encrypt_to_memory_is_bounded(ident):
    size = 64 << 20

    class Noise(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:
            n = min(len(buf), self.left, CHUNK_SIZE + 5)
            buf[:n] = b"\x5a" * n
            self.left -= n
            return n

    def rss() -> int:  # the buffers are anonymous maps, which tracemalloc does not see
        return int(re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) << 10

    grew = 0

    def write(piece) -> None:
        nonlocal grew
        grew = max(grew, rss() - before)

    before = rss()
    tracemalloc.start()
    try:
        Encryptor([ident.recipient]).encrypt_to(Noise(), write)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak >> 20} MiB of objects for a {size >> 20} MiB stream"
    assert grew < 24 << 20, f"RSS grew {grew >> 20} MiB for a {size >> 20} MiB stream"


@pytest.mark.parametrize("where", ["progress", "write"])
def test_encrypt_to_stops_on_an_error_and_leaves_no_thread(where, ident):
    import threading

    class Stop(Exception):
        pass

    def fail(*_):
        raise Stop

    before = threading.active_count()
    kw = {"progress": lambda n: fail() if n > BLOCK else None} if where == "progress" else {}
    write = fail if where == "write" else (lambda piece: None)
    enc = Encryptor([ident.recipient])
    with pytest.raises(Stop):
        enc.encrypt_to(io.BytesIO(data(4 * BLOCK, 7)), write, **kw)
    assert threading.active_count() == before
    with pytest.raises(RuntimeError):
        enc.manifest  # spent, not finished
    with pytest.raises(RuntimeError):
        enc.encrypt_to(io.BytesIO(b"x"), write)


# --- local misuse ---------------------------------------------------------------------------

def test_misuse_is_reported(tmp_path, ident):
    with pytest.raises(KeyFormatError, match="at least one recipient"):
        Encryptor([])
    enc = Encryptor([ident.recipient])
    with pytest.raises(RuntimeError, match="after finalize"):
        enc.manifest
    payload = enc.update(b"abc") + enc.finalize()
    with pytest.raises(RuntimeError):
        enc.update(b"more")
    pd = Decryptor(enc.header, [ident]).payload_decryptor()
    with pytest.raises(ChunkAuthError):
        pd.update(payload[:16] + bytes(ENC_CHUNK_SIZE + 1))
    with pytest.raises(RuntimeError):  # no further output after a failure
        pd.update(payload[16:])
    with pytest.raises(ValueError):
        plaintext_range_to_chunks(10, 5, len(payload))
    with pytest.raises(ValueError):
        plaintext_range_to_chunks(4, 4, len(payload))  # beyond the 3-byte plaintext


def test_encrypt_file_leaves_no_partial_object(tmp_path, ident):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 1000)
    with pytest.raises(FileNotFoundError):
        crypto.encrypt_file(src, tmp_path / "h", tmp_path / "missing-dir" / "p", [ident.recipient])
    assert not (tmp_path / "h").exists()


def test_decrypt_stream_from_file_object(tmp_path, ident):
    pt = data(5 * CHUNK_SIZE + 1, 8)
    header, payload, _ = encrypt(pt, ident.recipient)
    (tmp_path / "p").write_bytes(payload)
    with open(tmp_path / "p", "rb") as f:
        assert b"".join(Decryptor(header, [ident]).decrypt_stream(f)) == pt
