"""Verification on the local store: what a fresh job may leave out, and what it may not
when the store's PUT answers do not vouch for what it stored."""

from __future__ import annotations

from dataclasses import replace

from storage.blobstore import BlobStore


class Answering:
    """The local store, its PUT answers or its Object Lock made like those of a lesser
    service: ``checksum=False`` answers without a checksum (a service that may not
    check them); ``lock=False`` drops the retention a payload PUT asks for (a service
    that ignores it). Counts the HEADs."""

    def __init__(self, inner: BlobStore, *, checksum: bool = True, lock: bool = True):
        self.inner, self.checksum, self.lock = inner, checksum, lock
        self.heads: list[str] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, key, source, **kw):
        if not self.lock and key.startswith("rec/"):
            kw["retention"] = None
        r = self.inner.put(key, source, **kw)
        return r if self.checksum else replace(r, checksum=None)

    def head(self, key, *args, **kw):
        self.heads.append(key)
        return self.inner.head(key, *args, **kw)


def run(env, payload, headers, n=2):
    env.pipeline = env.make_pipeline(archive=env.archive(payload=payload, headers=headers))
    rids = [env.recording() for _ in range(n)]
    for rid in rids:
        assert env.process(rid).kind == "archived"
    return rids


def test_fresh_jobs_read_back_only_the_first(archive_env):
    env = archive_env
    payload, headers = Answering(env.payload), Answering(env.headers)
    first, *_ = run(env, payload, headers, 3)
    assert payload.heads == [env.payload_key(first)] and headers.heads == [env.header_key(first)]
    assert env.pipeline.puts_trusted


def test_store_answering_without_checksum_is_read_back_every_time(archive_env):
    env = archive_env
    payload, headers = Answering(env.payload, checksum=False), Answering(env.headers, checksum=False)
    rids = run(env, payload, headers)
    assert payload.heads == [env.payload_key(r) for r in rids]
    assert headers.heads == [env.header_key(r) for r in rids]
    assert not env.pipeline.puts_trusted


def test_service_ignoring_object_lock_on_put_is_caught_and_never_trusted(archive_env):
    env = archive_env
    payload, headers = Answering(env.payload, lock=False), Answering(env.headers)
    rids = run(env, payload, headers)
    assert payload.heads == [env.payload_key(r) for r in rids]  # read back every time
    assert not env.pipeline.puts_trusted
    for rid in rids:  # and each retention put right
        rec = env.catalog.get(rid)
        assert env.payload.head(rec.object_key, rec.version_id).retention.mode == "COMPLIANCE"
        assert rec.retain_until == env.payload.head(rec.object_key).retention.until.timestamp()
