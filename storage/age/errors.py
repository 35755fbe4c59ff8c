"""Errors of the age layer, by what went wrong: a malformed key (local misuse),
a header or payload that does not verify (``IntegrityError``)."""

from __future__ import annotations

from storage.errors import IntegrityError, PermanentError

__all__ = ["ChunkAuthError", "HeaderError", "HeaderMacError", "KeyFormatError", "NoMatchingIdentity",
           "PayloadError", "TrailingData", "TruncatedPayload"]

class KeyFormatError(PermanentError, ValueError):
    """A key, recipient or identity string/file is malformed (local misuse)."""


class HeaderError(IntegrityError):
    """The age header is malformed, unsupported or violates the spec."""


class HeaderMacError(HeaderError):
    """The header MAC does not verify: the header was modified."""


class NoMatchingIdentity(IntegrityError):
    """None of the given identities (or the passphrase) unwraps the file key."""


class PayloadError(IntegrityError):
    """The payload does not verify under the header's file key."""


class TruncatedPayload(PayloadError):
    """The payload ends before its final chunk."""


class TrailingData(PayloadError):
    """Bytes follow the chunk that is authenticated as final."""


class ChunkAuthError(PayloadError):
    """A chunk fails authentication: corrupted, reordered, or another file's."""

