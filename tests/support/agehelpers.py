"""Helpers for the age tests (tests/storage/age/, tests/storage/test_keys.py).

The real ``age``/``age-keygen`` binaries and pyrage (rage) are the reference
peers: every format claim is checked against them in both directions.
"""

from __future__ import annotations

import os
import pty
import random
import re
import select
import signal
import subprocess
from pathlib import Path

import pytest

from storage import keys
from storage.age import CHUNK_SIZE, ENC_CHUNK_SIZE, Decryptor, Encryptor, Identity, Recipient

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


def chunk(payload: bytes, i: int) -> bytes:
    return payload[16 + i * ENC_CHUNK_SIZE:16 + (i + 1) * ENC_CHUNK_SIZE]


def decrypt(header: bytes, payload: bytes, identities) -> bytes:
    return Decryptor(header, identities).decrypt(payload)

