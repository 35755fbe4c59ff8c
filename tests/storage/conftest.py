"""Blob store fixtures (each test gets a fresh store: local dir or new RGW bucket), the
database under test (``any_db``: a fresh SQLite file or a fresh PostgreSQL database, for
the conformance tests), and an age identity with its key file for the key and age tests
(module-scoped)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from agehelpers import write_key
from storage.age import Identity
from storage.dburl import open_database
from storage.localstore import LocalStore
from storage.s3store import S3Settings, S3Store


def bucket_name() -> str:
    return f"cvt-{secrets.token_hex(8)}"


@pytest.fixture(scope="session")
def s3_settings(lab_state) -> S3Settings:
    e = lab_state.s3_endpoint
    return S3Settings(endpoint_url=e.endpoint_url, region=e.region, access_key_id=e.access_key_id,
                      secret_access_key=e.secret_access_key, addressing_style="path")


@pytest.fixture
def make_s3_store(s3_settings):
    """``make_s3_store(lock=True, create=True, **kw)``: a store on a new bucket, closed after."""
    stores = []

    def make(*, lock: bool = True, create: bool = True, settings: S3Settings | None = None, **kw) -> S3Store:
        store = S3Store(settings or s3_settings, bucket_name(), object_lock=lock, **kw)
        stores.append(store)
        if create:
            store.create_bucket(lock=lock)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path):
    """The store under test. Locked S3 buckets are left behind: the lab's memstore dies with it."""
    if request.param == "local":
        with LocalStore.create(tmp_path / "blobs") as local:
            yield local
    else:
        yield request.getfixturevalue("make_s3_store")()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh database of each backend: the same test runs against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callvault.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def any_db(db_url):
    db = open_database(db_url)
    yield db
    db.close()


@pytest.fixture(scope="module")
def ident() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def keyfile(ident, tmp_path_factory) -> Path:
    return write_key(tmp_path_factory.mktemp("keys") / "id.txt", ident)
