"""One behaviour, every store: the same cases run on LocalStore and on S3Store (real RGW).

What each store says when it cannot work: test_blobstore_setup.py; streamed uploads
(``open_upload``): test_blobstore_upload.py.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import tracemalloc

import pytest

from blobhelpers import DATA, GeneratedFile, MiB, assert_no_leftovers, later, sha
from storage.blobstore import BlobStore, Retention
from storage.errors import IntegrityError, NotFound, RetentionError


def test_store_satisfies_protocol(store):
    assert isinstance(store, BlobStore)
    store.check_setup()


def test_put_head_get_round_trip(store):
    tags = {"policy": "za-popia", "kind": "payload"}
    r = store.put("rec/a1", DATA, size=len(DATA), sha256=sha(DATA), tags=tags)
    assert (r.size, r.sha256) == (len(DATA), sha(DATA)) and r.version_id and r.etag
    info = store.head("rec/a1")
    assert info.size == len(DATA)
    assert info.sha256 == sha(DATA)
    assert info.version_id == r.version_id
    assert info.retention is None and info.legal_hold is False
    assert info.tags == tags
    assert store.get("rec/a1") == DATA
    assert store.get("rec/a1", r.version_id) == DATA


def test_put_from_a_file_object_of_unknown_size(store):
    r = store.put("f1", io.BytesIO(DATA), sha256=sha(DATA))
    assert r.size == len(DATA)
    assert store.get("f1") == DATA


def test_empty_object(store):
    store.put("empty", b"", size=0, sha256=sha(b""))
    assert store.head("empty").size == 0
    assert store.get("empty") == b""


def test_each_put_is_a_new_version(store):
    first = store.put("v", b"one", sha256=sha(b"one"))
    second = store.put("v", b"two", sha256=sha(b"two"))
    assert first.version_id != second.version_id
    assert store.get("v") == b"two"
    assert store.get("v", first.version_id) == b"one"
    assert store.head("v", first.version_id).sha256 == sha(b"one")


@pytest.mark.parametrize("byte_range", [
    (0, 10),                      # start
    (50_000, 50_100),             # middle
    (len(DATA) - 10, len(DATA)),  # end
    (4242, 4243),                 # single byte
    (len(DATA) - 1, len(DATA) + 500),  # stop past the end: clamped
], ids=["start", "middle", "end", "single-byte", "clamped"])
def test_range_reads(store, byte_range):
    store.put("r", DATA, sha256=sha(DATA))
    start, stop = byte_range
    assert store.get("r", byte_range=byte_range) == DATA[start:stop]
    with store.open_stream("r", byte_range=byte_range) as stream:
        assert b"".join(stream) == DATA[start:stop]


def test_range_starting_past_the_end_is_empty(store):
    store.put("r", DATA, sha256=sha(DATA))
    assert store.get("r", byte_range=(len(DATA), len(DATA) + 1)) == b""
    assert store.get("r", byte_range=(len(DATA) + 10, len(DATA) + 20)) == b""


@pytest.mark.parametrize("bad", [(-1, 4), (5, 5), (6, 2)])
def test_bad_ranges_are_the_callers_mistake(store, bad):
    store.put("r", DATA, sha256=sha(DATA))
    with pytest.raises(ValueError):
        store.get("r", byte_range=bad)


def test_open_stream_yields_chunks_and_closes(store):
    store.put("s", DATA, sha256=sha(DATA))
    stream = store.open_stream("s", chunk_size=8192)
    chunks = list(stream)
    assert b"".join(chunks) == DATA and len(chunks) > 1
    stream.close()
    # an abandoned stream must be closable early without leaking (ResourceWarning is an error)
    with store.open_stream("s", chunk_size=1000) as partial:
        assert len(next(partial)) <= 1000


@pytest.mark.parametrize("known_size", [True, False], ids=["size-given", "size-unknown"])
def test_multipart_streamed_20mib_reads_back_identical(store, known_size):
    size = 20 * MiB + 12_345
    digest = GeneratedFile.digest(size)
    source = GeneratedFile(size)
    r = store.put("big/one", source, size=size if known_size else None, sha256=digest,
                  tags={"kind": "payload"})
    assert (r.size, r.sha256) == (size, digest)
    info = store.head("big/one")
    assert (info.size, info.sha256, info.tags) == (size, digest, {"kind": "payload"})
    h = hashlib.sha256()
    n = 0
    with store.open_stream("big/one") as stream:
        for chunk in stream:
            h.update(chunk)
            n += len(chunk)
    assert (n, h.hexdigest()) == (size, digest)
    # a range across the 8 MiB part boundary
    expected = b"".join(GeneratedFile._generate(size, 7, 1 << 16))[8 * MiB - 100: 8 * MiB + 100]
    assert store.get("big/one", byte_range=(8 * MiB - 100, 8 * MiB + 100)) == expected


def test_put_streams_with_bounded_memory(store):
    size = 96 * MiB  # more parts than S3Store keeps in flight
    digest = GeneratedFile.digest(size)
    tracemalloc.start()
    try:
        store.put("mem", GeneratedFile(size), sha256=digest)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 * MiB, f"peak {peak / MiB:.0f} MiB"
    assert store.head("mem").sha256 == digest


@pytest.mark.parametrize("size", [1000, 20 * MiB], ids=["single", "multipart"])
def test_wrong_sha256_is_refused_and_leaves_nothing(store, size):
    with pytest.raises(IntegrityError):
        store.put("bad/x", GeneratedFile(size), sha256="0" * 64)
    with pytest.raises(NotFound):
        store.head("bad/x")
    assert list(store.list("bad/")) == []
    assert_no_leftovers(store)


def test_wrong_size_is_refused(store):
    with pytest.raises(IntegrityError):
        store.put("sz", DATA, size=len(DATA) + 1, sha256=sha(DATA))
    with pytest.raises(NotFound):
        store.head("sz")
    assert_no_leftovers(store)


def test_compliance_retention_refuses_delete(store):
    retention = Retention("COMPLIANCE", later(days=1))
    r = store.put("locked", DATA, sha256=sha(DATA), retention=retention)
    assert store.head("locked").retention == retention
    with pytest.raises(RetentionError):
        store.delete("locked", r.version_id)
    with pytest.raises(RetentionError):
        store.delete("locked", r.version_id, bypass_governance=True)
    with pytest.raises(RetentionError):
        store.delete("locked")
    assert store.get("locked") == DATA
    assert store.get("locked", r.version_id) == DATA


def test_compliance_retention_can_only_be_extended(store):
    retention = Retention("COMPLIANCE", later(days=1))
    store.put("locked", DATA, sha256=sha(DATA), retention=retention)
    longer = Retention("COMPLIANCE", retention.until + datetime.timedelta(days=2))
    store.set_retention("locked", longer)
    assert store.head("locked").retention == longer
    with pytest.raises(RetentionError):
        store.set_retention("locked", retention)
    with pytest.raises(RetentionError):
        store.set_retention("locked", Retention("GOVERNANCE", longer.until + datetime.timedelta(days=1)))
    assert store.head("locked").retention == longer


def test_legal_hold_refuses_delete_until_released(store):
    r = store.put("held", DATA, sha256=sha(DATA))
    store.set_legal_hold("held", True)
    assert store.head("held").legal_hold is True
    with pytest.raises(RetentionError):
        store.delete("held", r.version_id, bypass_governance=True)
    with pytest.raises(RetentionError):
        store.delete("held")
    assert store.get("held") == DATA
    store.set_legal_hold("held", False, r.version_id)
    assert store.head("held").legal_hold is False
    store.delete("held", r.version_id)
    with pytest.raises(NotFound):
        store.head("held")


def test_governance_retention_yields_to_bypass(store):
    retention = Retention("GOVERNANCE", later(days=1))
    r = store.put("gov", DATA, sha256=sha(DATA), retention=retention)
    with pytest.raises(RetentionError):
        store.delete("gov", r.version_id)
    with pytest.raises(RetentionError):  # shortening GOVERNANCE also needs the bypass
        store.set_retention("gov", Retention("GOVERNANCE", later(hours=1)))
    store.set_retention("gov", Retention("GOVERNANCE", later(hours=1)), bypass_governance=True)
    store.set_legal_hold("gov", True)
    with pytest.raises(RetentionError):  # a hold beats the bypass
        store.delete("gov", bypass_governance=True)
    store.set_legal_hold("gov", False)
    store.delete("gov", bypass_governance=True)
    with pytest.raises(NotFound):
        store.get("gov")


def test_delete_one_version_or_all(store):
    v1 = store.put("d", b"one", sha256=sha(b"one"))
    v2 = store.put("d", b"two", sha256=sha(b"two"))
    store.delete("d", v2.version_id)
    assert store.get("d") == b"one"
    with pytest.raises(NotFound):
        store.get("d", v2.version_id)
    v3 = store.put("d", b"three", sha256=sha(b"three"))
    assert set(store.versions("d")) == {v1.version_id, v3.version_id}
    store.delete("d")
    assert store.versions("d") == []
    for vid in (None, v1.version_id):
        with pytest.raises(NotFound):
            store.head("d", vid)
    assert list(store.list("d")) == []
    store.delete("d")  # already gone: not an error (retried sweeps are idempotent)
    store.delete("d", v1.version_id)


def test_a_protected_version_blocks_delete_of_all(store):
    store.put("mix", b"old", sha256=sha(b"old"), retention=Retention("COMPLIANCE", later(days=1)))
    store.put("mix", b"new", sha256=sha(b"new"))
    with pytest.raises(RetentionError):
        store.delete("mix")
    assert store.get("mix") == b"new"  # refused as a whole: nothing was deleted


def test_tags_round_trip(store):
    tags = {f"k{i}": v for i, v in enumerate(["plain", "with space", "a+b=c", "x.y_z:1/2@3", "", "-"])}
    tags["t" * 128] = "v" * 256
    store.put("tagged", DATA, sha256=sha(DATA), tags=tags)
    assert store.head("tagged").tags == tags


@pytest.mark.parametrize("tags", [
    {f"k{i}": "v" for i in range(11)},
    {"k" * 129: "v"},
    {"k": "v" * 257},
    {"": "v"},
    {"name": "Zoë"},
    {"k": "a&b"},
    {"aws:x": "v"},
], ids=["11-tags", "long-key", "long-value", "empty-key", "non-ascii", "ampersand", "aws-prefix"])
def test_tag_validation(store, tags):
    with pytest.raises(ValueError):
        store.put("t", DATA, sha256=sha(DATA), tags=tags)
    with pytest.raises(NotFound):
        store.head("t")


@pytest.mark.parametrize("key", [
    "", "../x", "a/../b", "a..b", "a b", "caf\u00e9", "/lead", "trail/", "a//b", "a/./b", ".",
    "x" * 513, "a/" + "s" * 256, "a\\b", "a?b",
], ids=lambda k: repr(k[:20]))
def test_key_validation(store, key):
    with pytest.raises(ValueError):
        store.put(key, DATA, sha256=sha(DATA))
    with pytest.raises(ValueError):
        store.head(key)


def test_longest_key_is_accepted(store):
    key = "/".join(["s" * 255, "t" * 255])  # 511 characters
    store.put(key, b"x", sha256=sha(b"x"))
    assert store.get(key) == b"x"
    assert list(store.list("s")) == [key]


def test_bad_sha256_and_past_retention_are_the_callers_mistake(store):
    with pytest.raises(ValueError):
        store.put("k", DATA, sha256=sha(DATA).upper())
    with pytest.raises(ValueError):
        store.put("k", DATA, sha256=sha(DATA), retention=Retention("COMPLIANCE", later(days=-1)))
    with pytest.raises(ValueError):
        Retention("COMPLIANCE", datetime.datetime.now())  # naive
    with pytest.raises(ValueError):
        Retention("FOREVER", later())


def test_missing_objects_are_not_found(store):
    with pytest.raises(NotFound):
        store.head("nope")
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.open_stream("nope")
    with pytest.raises(NotFound):
        store.set_legal_hold("nope", True)
    with pytest.raises(NotFound):
        store.set_retention("nope", Retention("COMPLIANCE", later()))
    r = store.put("there", b"x", sha256=sha(b"x"))
    other = store.put("other", b"y", sha256=sha(b"y"))
    with pytest.raises(NotFound):
        store.get("there", other.version_id)
    with pytest.raises(NotFound):
        store.head("there", "no-such-version")
    store.delete("nope")
    assert store.get("there", r.version_id) == b"x"


def test_list_by_prefix(store):
    keys = ["a/1", "a/2", "a/b/3", "ab", "b/1", "a-c"]
    for k in keys:
        store.put(k, k.encode(), sha256=sha(k.encode()))
    assert list(store.list("a/")) == ["a/1", "a/2", "a/b/3"]
    assert list(store.list("a")) == sorted(["a/1", "a/2", "a/b/3", "ab", "a-c"])
    assert list(store.list("a/b")) == ["a/b/3"]
    assert list(store.list("")) == sorted(keys)
    assert list(store.list("zzz")) == []
    store.delete("a/2")
    assert list(store.list("a/")) == ["a/1", "a/b/3"]
    with pytest.raises(ValueError):
        list(store.list("../"))
