"""Errors raised by storage. One root; callers branch on the kind, not on text.

The split follows what a caller can do about it (restic's backend errors):
``NotFound`` (nothing there), ``RetryableError`` (try again later: network, 5xx,
throttling), ``PermanentError`` (retrying will not help: bad credentials, bad
bucket set-up), ``RetentionError`` (refused by a retention rule or legal hold),
``IntegrityError`` (data or a chain does not verify).
"""

from __future__ import annotations

import sqlite3
from os import PathLike


class StorageError(Exception):
    """Root of every error raised by the storage package."""


class NotFound(StorageError):
    """The object, row or key does not exist."""


class RetryableError(StorageError):
    """A transient failure; the same call may succeed later."""


class PermanentError(StorageError):
    """A failure that retrying will not fix (configuration, permissions)."""


class RetentionError(PermanentError):
    """Refused because of a retention period or a legal hold."""


class IntegrityError(StorageError):
    """Data, a checksum, a signature or a hash chain does not verify."""


def sqlite_error(exc: sqlite3.Error, path: str | PathLike[str]) -> StorageError:
    """The storage error for ``exc`` from the SQLite database at ``path``: locked or
    busy is retryable, anything else permanent."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return RetryableError(f"{path}: {text}")
    return PermanentError(f"{path}: {text}")
