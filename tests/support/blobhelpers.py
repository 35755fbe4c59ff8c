"""Helpers for the blob store tests (tests/storage/test_blobstore_*.py)."""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import random

from storage.localstore import LocalStore

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def later(**delta) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(**(delta or {"days": 1}))


class GeneratedFile(io.RawIOBase):
    """A read-only file whose bytes come from a generator: never all in memory."""

    def __init__(self, size: int, seed: int = 7, chunk: int = 1 << 16):
        self.size = size
        self._chunks = self._generate(size, seed, chunk)
        self._pending = b""
        self.max_read = 0

    @staticmethod
    def _generate(size: int, seed: int, chunk: int):
        rng = random.Random(seed)
        left = size
        while left:
            n = min(chunk, left)
            yield rng.randbytes(n)
            left -= n

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    @classmethod
    def digest(cls, size: int, seed: int = 7) -> str:
        h = hashlib.sha256()
        for chunk in cls._generate(size, seed, 1 << 16):
            h.update(chunk)
        return h.hexdigest()


DATA = os.urandom(100_003)


def assert_no_leftovers(store):
    if isinstance(store, LocalStore):
        assert list((store.root / "tmp").iterdir()) == []
    else:
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
