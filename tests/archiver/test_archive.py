"""The Archive: reading an archived recording back, checking it, holding and shredding it."""

from __future__ import annotations

import io

import pytest

from archiver.archive import Archive, ManifestMismatch, Shredded
from storage.age import CHUNK_SIZE, Identity, NoMatchingIdentity
from storage.errors import RetentionError


def archived(env, audio_bytes: int = 3 * CHUNK_SIZE + 1234) -> tuple[Archive, object]:
    rid = env.recording(audio_bytes)
    assert env.process(rid).kind == "archived"
    return env.archive(), env.catalog.get(rid)


def test_keys_name_the_payload_and_the_header():
    assert Archive.payload_key("r1") == "rec/r1.age.payload"
    assert Archive.header_key("r1") == "hdr/r1.age.header"


def test_decrypt_to_gives_the_recorded_audio(archive_env):
    archive, rec = archived(archive_env)
    out = io.BytesIO()
    assert archive.decrypt_to(rec, [archive_env.identity], out) == len(archive_env.wavs[rec.recording_id])
    assert out.getvalue() == archive_env.wavs[rec.recording_id]


@pytest.mark.parametrize("start,stop", [(0, 44), (0, CHUNK_SIZE), (CHUNK_SIZE - 3, CHUNK_SIZE + 5),
                                        (2 * CHUNK_SIZE + 7, 3 * CHUNK_SIZE + 1234)])
def test_read_gives_any_plaintext_range_fetching_only_its_chunks(archive_env, start, stop):
    archive, rec = archived(archive_env)
    opened = archive.open(rec, [archive_env.identity])
    before = archive.ranged_read_bytes
    assert archive.read(opened, start, stop) == archive_env.wavs[rec.recording_id][start:stop]
    chunks = (stop - 1) // CHUNK_SIZE - start // CHUNK_SIZE + 1
    assert archive.ranged_read_bytes - before <= chunks * (CHUNK_SIZE + 16)


def test_ciphertext_is_the_whole_age_file(archive_env):
    archive, rec = archived(archive_env)
    size, pieces = archive.ciphertext(rec, window=CHUNK_SIZE)
    data = b"".join(pieces)
    assert len(data) == size
    assert data[:len(archive.headers.get(rec.header_key))] == archive.headers.get(rec.header_key)


def test_verify_passes_then_names_what_changed(archive_env):
    archive, rec = archived(archive_env)
    assert archive.verify(rec) is None
    archive.headers.delete(rec.header_key)
    assert archive.verify(rec).startswith("MISSING: ")


def test_a_key_that_is_not_a_recipient_is_refused(archive_env):
    archive, rec = archived(archive_env)
    with pytest.raises(NoMatchingIdentity):
        archive.open(rec, [Identity.generate()])


def test_a_header_that_differs_from_the_manifest_is_refused(archive_env):
    archive, rec = archived(archive_env)
    other = archive_env.recording(1000)
    assert archive_env.process(other).kind == "archived"
    rec = rec.replace(header_key=archive_env.catalog.get(other).header_key)
    with pytest.raises(ManifestMismatch, match="does not match the manifest"):
        archive.open(rec, [archive_env.identity])
    assert archive.verify(rec) == f"MISMATCH: header {rec.header_key} does not match the manifest"


def test_shred_makes_the_recording_unreadable_for_good(archive_env):
    archive, rec = archived(archive_env)
    archive.shred(rec.recording_id)
    with pytest.raises(Shredded, match="crypto-shredded"):
        archive.open(rec, [archive_env.identity])
    with pytest.raises(Shredded):
        archive.ciphertext(rec, window=CHUNK_SIZE)


def test_legal_hold_is_on_the_stored_version(archive_env):
    archive, rec = archived(archive_env)
    assert not archive.held(rec)
    archive.set_legal_hold(rec, True)
    assert archive.held(rec)
    with pytest.raises(RetentionError, match="under legal hold"):
        archive.payload.delete(rec.object_key, rec.version_id)
    archive.set_legal_hold(rec, False)
    assert not archive.held(rec)
