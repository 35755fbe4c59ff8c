"""Fixtures for the age tests (``ident`` and ``keyfile`` come from tests/storage/conftest.py)."""

from __future__ import annotations

import pytest

from agehelpers import data, encrypt
from storage.age import CHUNK_SIZE


@pytest.fixture(scope="module")
def sample(ident):
    pt = data(3 * CHUNK_SIZE + 5, 11)  # chunks 0..2 full, chunk 3 short and final
    header, payload, _ = encrypt(pt, ident.recipient)
    return pt, header, payload

