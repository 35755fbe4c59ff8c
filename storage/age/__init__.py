"""age v1 encryption for recordings: the project's cryptographic trust boundary.

This package is the only code that imports ``cryptography`` primitives. It
implements the subset of the age v1 format (C2SP age spec) that callvault needs:
X25519 recipients, the scrypt recipient for passphrase-protected identity files,
the header MAC and the 64 KiB ChaCha20-Poly1305 STREAM payload. The byte layout,
what is authenticated and the random-access arithmetic are written down in
``docs/recording-format.md``; the real ``age`` and ``rage`` tools are the
reference (tests check interop both ways).

Header and payload are produced separately because callvault stores them as
two objects (crypto-shredding under WORM); ``header || payload`` is a valid age
file.

Modules: ``errors``; ``bech32`` (key strings); ``keys`` (Recipient, Identity,
the scrypt identity: wrapping and unwrapping the file key); ``header`` (stanzas,
building and parsing the header, its MAC); ``stream`` (the STREAM payload: size
arithmetic, random access, ``Decryptor``); ``encryptor`` (``Encryptor``,
``encrypt_file``); ``passphrase`` (``age -p`` style files). Callers import from
``storage.age``.
"""

from storage.age.bech32 import bech32_decode, bech32_encode
from storage.age.encryptor import (
    BLOCK_CHUNKS,
    INLINE_BYTES,
    EncryptionSummary,
    Encryptor,
    encrypt_file,
)
from storage.age.errors import (
    ChunkAuthError,
    HeaderError,
    HeaderMacError,
    KeyFormatError,
    NoMatchingIdentity,
    PayloadError,
    TrailingData,
    TruncatedPayload,
)
from storage.age.header import (
    FILE_KEY_SIZE,
    FORMAT,
    MAX_HEADER_SIZE,
    VERSION_LINE,
    Stanza,
    build_header,
    parse_header,
    read_header,
    unwrap_file_key,
)
from storage.age.keys import Identity, Recipient
from storage.age.passphrase import (
    PassphraseWriter,
    decrypt_with_passphrase,
    encrypt_with_passphrase,
)
from storage.age.stream import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    ChunkSpan,
    Decryptor,
    PayloadDecryptor,
    chunk_count,
    payload_size_for,
    plaintext_range_to_chunks,
    plaintext_size,
)

__all__ = [
    "BLOCK_CHUNKS", "CHUNK_SIZE", "ENC_CHUNK_SIZE", "FILE_KEY_SIZE", "FORMAT", "INLINE_BYTES",
    "MAX_HEADER_SIZE", "NONCE_SIZE", "TAG_SIZE", "VERSION_LINE",
    "ChunkAuthError", "ChunkSpan", "Decryptor", "EncryptionSummary", "Encryptor", "HeaderError",
    "HeaderMacError", "Identity", "KeyFormatError", "NoMatchingIdentity", "PassphraseWriter",
    "PayloadDecryptor",
    "PayloadError", "Recipient", "Stanza", "TrailingData", "TruncatedPayload",
    "bech32_decode", "bech32_encode", "build_header", "chunk_count", "decrypt_with_passphrase",
    "encrypt_file", "encrypt_with_passphrase", "parse_header", "payload_size_for",
    "plaintext_range_to_chunks", "plaintext_size", "read_header", "unwrap_file_key",
]
