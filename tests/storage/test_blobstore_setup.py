"""Set-up checks: what each store (LocalStore, S3Store on real RGW) says when it cannot
work, and the header bucket's crypto-shredding requirements.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from blobhelpers import sha
from storage.errors import NotFound, PermanentError
from storage.localstore import LocalStore


# -- set-up checks: what each store says when it cannot work -------------------------------

@pytest.mark.s3
def test_s3_check_setup_wants_object_lock_on_the_payload_bucket(make_s3_store):
    plain = make_s3_store(lock=False)
    plain.check_setup()  # fine as a header bucket
    payload = make_s3_store(lock=True, create=False)
    payload.bucket = plain.bucket
    with pytest.raises(PermanentError, match=rf"{plain.bucket}.*Object Lock") as e:
        payload.check_setup()
    assert payload.endpoint in str(e.value)


@pytest.mark.s3
def test_s3_check_setup_on_a_missing_bucket(make_s3_store):
    store = make_s3_store(create=False)
    with pytest.raises(PermanentError, match=rf"bucket {store.bucket} does not exist at {store.endpoint}"):
        store.check_setup()
    with pytest.raises(PermanentError, match=store.bucket):
        store.put("k", b"x", sha256=sha(b"x"))


@pytest.mark.s3
def test_s3_header_bucket_must_not_have_default_retention(make_s3_store):
    store = make_s3_store(lock=False, create=False)
    store.create_bucket(lock=False)
    locked = make_s3_store(lock=True)
    locked.client.put_object_lock_configuration(Bucket=locked.bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    store.bucket = locked.bucket
    with pytest.raises(PermanentError, match="crypto-shredding"):
        store.check_setup()


def test_local_check_setup_on_a_missing_root(tmp_path):
    with pytest.raises(PermanentError, match="does not exist"):
        LocalStore(tmp_path / "not-mounted").check_setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(PermanentError, match="not initialised"):
        LocalStore(tmp_path / "empty").check_setup()
    with pytest.raises(PermanentError, match="not initialised"):
        LocalStore(tmp_path / "empty").put("k", b"x", sha256=sha(b"x"))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(PermanentError):
        LocalStore(tmp_path / "file").check_setup()


def test_local_check_setup_on_an_unwritable_root(tmp_path):
    store = LocalStore.create(tmp_path / "ro")
    protect, release = _read_only(tmp_path / "ro" / "tmp")
    try:
        with pytest.raises(PermanentError, match="not writable"):
            store.check_setup()
        with pytest.raises(PermanentError, match=str(store.root)):
            store.put("k", b"x", sha256=sha(b"x"))
    finally:
        release()
    store.check_setup()


def _read_only(path):
    """Make ``path`` unwritable, also for root (immutable attribute)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        return None, lambda: os.chmod(path, 0o755)
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return None, lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    pytest.fail("cannot make a directory unwritable for root: chattr +i failed on this filesystem")


@pytest.mark.s3
@pytest.mark.parametrize("versioning", [False, True], ids=["unversioned", "versioned"])
def test_s3_header_bucket_delete_leaves_no_copy(make_s3_store, versioning):
    """Crypto-shredding: deleting a header must leave no version and no marker behind."""
    store = make_s3_store(lock=False)
    if versioning:
        store.client.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    first = store.put("hdr/1", b"header-a", sha256=sha(b"header-a"))
    store.put("hdr/1", b"header-b", sha256=sha(b"header-b"))
    assert (first.version_id is None) is (not versioning)
    assert store.get("hdr/1") == b"header-b"
    store.delete("hdr/1")
    with pytest.raises(NotFound):
        store.head("hdr/1")
    left = store.client.list_object_versions(Bucket=store.bucket, Prefix="hdr/")
    assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []
