"""Errors raised by the archiver. One root; storage errors keep their own kinds.

The pipeline never lets a ``storage.errors`` kind leave a job: it turns them into
catalog state (retry with backoff, dead letter). What does leave the package is
``SetupError`` (the archiver cannot start: stores, recipients or retention classes
are misconfigured) and misuse (``ValueError``).
"""

from __future__ import annotations


class ArchiverError(Exception):
    """Root of every error raised by the archiver package."""


class SetupError(ArchiverError):
    """The archiver cannot run as configured; the message names what to fix."""


class Abandoned(ArchiverError):
    """A stop was requested mid-step; the job is left resumable (lease released)."""
