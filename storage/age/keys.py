"""age keys: the X25519 recipient (public key) and identity (private key), and the
scrypt identity that opens passphrase-protected files. Each wraps the file key
into a header stanza, or unwraps it from one."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from storage.age.bech32 import bech32_decode, bech32_encode
from storage.age.errors import HeaderError, KeyFormatError, NoMatchingIdentity
from storage.age.header import Stanza
from storage.age.primitives import b64decode, b64encode, hkdf

__all__ = ["Identity", "Recipient", "ScryptIdentity", "scrypt_stanza"]

_ZERO_NONCE = bytes(12)
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"


@dataclass(frozen=True)
class Recipient:
    """An X25519 age recipient (public key), ``age1...``."""

    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise KeyFormatError("X25519 recipient must be 32 bytes")

    @classmethod
    def parse(cls, text: str) -> Recipient:
        text = text.strip()
        if text.startswith("ssh-"):
            raise KeyFormatError("SSH recipients are not supported; use an age1... recipient")
        hrp, data = bech32_decode(text)
        if hrp != "age":  # also rejects age1pq1.../age1tag1...: hrp is up to the last "1"
            raise KeyFormatError(f"not a native X25519 age recipient (bech32 type {hrp!r})")
        return cls(data)

    def __str__(self) -> str:
        return bech32_encode("age", self.public_key)

    def __repr__(self) -> str:
        return f"Recipient({str(self)!r})"

    @cached_property  # named in every recording's manifest: its bech32 string costs ~40 us
    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 of the ``age1...`` string: a stable,
        public, short id for manifests and the catalog (not a secret, not
        collision-resistant enough to authenticate anything)."""
        return hashlib.sha256(str(self).encode("ascii")).hexdigest()[:16]

    def _wrap(self, file_key: bytes, ephemeral: bytes | None = None) -> Stanza:
        eph = (X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral is not None
               else X25519PrivateKey.generate())
        share = eph.public_key().public_bytes_raw()
        try:
            shared = eph.exchange(X25519PublicKey.from_public_bytes(self.public_key))
        except ValueError:
            raise KeyFormatError("recipient is a low-order point") from None
        wrap_key = hkdf(shared, share + self.public_key, _X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return Stanza("X25519", (b64encode(share).decode(),), body)



class Identity:
    """An X25519 age identity (private key). ``repr``/``str`` never show the
    secret; ``secret_string()`` is the one explicit way to get it."""

    __slots__ = ("_key", "recipient")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise KeyFormatError("X25519 identity must be 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self.recipient = Recipient(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> Identity:
        try:
            hrp, data = bech32_decode(text.strip())
        except KeyFormatError:
            # The message must not echo the (possibly secret) input.
            raise KeyFormatError("malformed age identity (AGE-SECRET-KEY-1...)") from None
        if hrp != "age-secret-key-":
            raise KeyFormatError("not an age X25519 identity (AGE-SECRET-KEY-1...)")
        return cls(data)

    def secret_string(self) -> str:
        return bech32_encode("AGE-SECRET-KEY-", self._key.private_bytes_raw())

    @property
    def fingerprint(self) -> str:
        return self.recipient.fingerprint

    def __repr__(self) -> str:
        return f"Identity(recipient={str(self.recipient)!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and self.recipient == other.recipient

    def __hash__(self) -> int:
        return hash(self.recipient)

    def __reduce__(self):  # pickling would copy the secret somewhere unplanned
        raise TypeError("Identity is not picklable")

    def _unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for s in stanzas:
            if s.type != "X25519":
                continue
            if len(s.args) != 1:
                raise HeaderError("X25519 stanza must have exactly two arguments")
            share = b64decode(s.args[0].encode("ascii"), "X25519 share")
            if len(share) != 32 or len(s.body) != 32:
                raise HeaderError("X25519 stanza: bad share or body length")
            try:
                shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:
                raise HeaderError("X25519 stanza: low-order ephemeral share") from None
            wrap_key = hkdf(shared, share + self.recipient.public_key, _X25519_LABEL)
            try:
                return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, s.body, None)
            except InvalidTag:
                continue
        return None


@dataclass(frozen=True, repr=False)
class ScryptIdentity:
    passphrase: bytes
    max_work_factor: int

    def _unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for s in stanzas:
            if s.type != "scrypt":
                continue
            if len(s.args) != 2 or not re.fullmatch(r"[1-9][0-9]*", s.args[1]):
                raise HeaderError("scrypt stanza: bad arguments")
            salt = b64decode(s.args[0].encode("ascii"), "scrypt salt")
            log_n = int(s.args[1])
            if len(salt) != 16 or len(s.body) != 32:
                raise HeaderError("scrypt stanza: bad salt or body length")
            if log_n > self.max_work_factor:
                raise HeaderError(f"scrypt work factor {log_n} exceeds limit {self.max_work_factor}")
            key = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1)
            try:
                return ChaCha20Poly1305(key.derive(self.passphrase)).decrypt(_ZERO_NONCE, s.body, None)
            except InvalidTag:
                raise NoMatchingIdentity("wrong passphrase") from None
        return None



def scrypt_stanza(file_key: bytes, passphrase: bytes, work_factor: int) -> Stanza:
    """The scrypt recipient stanza wrapping ``file_key`` under ``passphrase``
    (``work_factor`` is log2 of scrypt's N)."""
    salt = os.urandom(16)
    kdf = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    body = ChaCha20Poly1305(kdf.derive(passphrase)).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza("scrypt", (b64encode(salt).decode(), str(work_factor)), body)
