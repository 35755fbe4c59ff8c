"""storage.keys: identity and recipient files, read and written as ``age-keygen`` and
``age -p`` do (the real binaries are the reference).
"""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from agehelpers import encrypt, run_with_tty
from storage import keys
from storage.age import Identity, KeyFormatError, NoMatchingIdentity
from storage.errors import NotFound

VECTORS = Path(__file__).parent / "age" / "vectors"


def test_age_keygen_identity_loads(tmp_path):
    path = tmp_path / "k.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    [i] = keys.load_identities(path)
    public = re.search(r"# public key: (age1\S+)", path.read_text()).group(1)
    assert str(i.recipient) == public
    assert keys.load_recipients([public]) == [i.recipient]


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
