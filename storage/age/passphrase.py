"""Passphrase-encrypted age files (the scrypt recipient), like ``age -p``: small data
such as an identity file."""

from __future__ import annotations

import os

from storage.age.errors import HeaderError, KeyFormatError
from storage.age.header import (
    FILE_KEY_SIZE,
    header_with_mac,
    parse_header,
    unwrap_file_key,
)
from storage.age.keys import ScryptIdentity, scrypt_stanza
from storage.age.stream import NONCE_SIZE, PayloadDecryptor, Sealer

__all__ = ["PassphraseWriter", "decrypt_with_passphrase", "encrypt_with_passphrase"]


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    pw = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not pw:
        raise KeyFormatError("empty passphrase")
    return pw


def encrypt_with_passphrase(data: bytes, passphrase: str | bytes, *, work_factor: int = 18) -> bytes:
    """A complete age file (like ``age -p``) for small data such as an identity
    file. ``work_factor`` is log2 of scrypt's N (age's default is 18)."""
    if not 1 <= work_factor <= 30:
        raise ValueError("scrypt work factor must be in 1..30")
    file_key = os.urandom(FILE_KEY_SIZE)
    header = header_with_mac(file_key, [scrypt_stanza(file_key, _passphrase_bytes(passphrase), work_factor)])
    sealer = Sealer(file_key, os.urandom(NONCE_SIZE))
    return header + sealer.update(data) + sealer.finalize()


class PassphraseWriter:
    """A passphrase-encrypted age file written as a stream (``age -p`` for data of any
    size): the header goes to ``sink`` at once, each ``write`` is sealed and passed on,
    ``close`` seals the last chunk. Holds at most one 64 KiB chunk of plaintext. Not
    seekable: a ``zipfile.ZipFile`` written into it uses data descriptors."""

    def __init__(self, sink, passphrase: str | bytes, *, work_factor: int = 18) -> None:
        if not 1 <= work_factor <= 30:
            raise ValueError("scrypt work factor must be in 1..30")
        file_key = os.urandom(FILE_KEY_SIZE)
        self._sink = sink
        self._sink.write(header_with_mac(file_key, [scrypt_stanza(file_key, _passphrase_bytes(passphrase),
                                                                  work_factor)]))
        self._sealer = Sealer(file_key, os.urandom(NONCE_SIZE))

    def write(self, data) -> int:
        sealed = self._sealer.update(data)
        if sealed:
            self._sink.write(sealed)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self._sealer.done:
            self._sink.write(self._sealer.finalize())


def decrypt_with_passphrase(data: bytes, passphrase: str | bytes, *, max_work_factor: int = 22) -> bytes:
    """Decrypt a passphrase-encrypted age file (binary, not armored). Wrong
    passphrase: ``NoMatchingIdentity``; a work factor over the limit: ``HeaderError``."""
    n, stanzas, _ = parse_header(data)
    if not any(s.type == "scrypt" for s in stanzas):
        raise HeaderError("not a passphrase-encrypted age file (no scrypt stanza)")
    file_key = unwrap_file_key(data[:n], [ScryptIdentity(_passphrase_bytes(passphrase), max_work_factor)])
    pd = PayloadDecryptor(file_key)
    return pd.update(memoryview(data)[n:]) + pd.finalize()
