"""Retention classes, the sweeper (delete / crypto-shred), legal holds."""

from __future__ import annotations

import datetime
import time

import pytest

from archiver.retention import RetentionPolicy, RetentionRule, RetentionSweeper
from storage.errors import PermanentError, RetentionError

FAR = time.time() + 400 * 86400


def archived(env, **kw) -> str:
    rid = env.recording(**kw)
    assert env.process(rid).kind == "archived"
    return rid


def sweeper(env) -> RetentionSweeper:
    return RetentionSweeper(env.catalog, env.ledger, env.archive())


def test_policy_defaults_and_overrides():
    p = RetentionPolicy.parse(["legal=COMPLIANCE:7y", "short-term=GOVERNANCE:30d"])
    assert str(p.rule("default")) == "COMPLIANCE:90d"
    assert str(p.rule("legal")) == "COMPLIANCE:7y"
    assert p.rule("short-term").mode == "GOVERNANCE"
    with pytest.raises(PermanentError, match="retention class 'x' is not configured"):
        p.rule("x")
    for bad in ("legal", "legal=LOCKED:5y", "legal=COMPLIANCE:0d", "legal=COMPLIANCE:5w"):
        with pytest.raises(ValueError, match="expected NAME="):
            RetentionPolicy.parse([bad])


def test_years_are_calendar_years():
    leap = datetime.datetime(2024, 2, 29, 12, tzinfo=datetime.UTC).timestamp()
    assert RetentionRule("COMPLIANCE", 5, "y").until(leap) == datetime.datetime(2029, 3, 1, 12, tzinfo=datetime.UTC)
    assert RetentionRule("COMPLIANCE", 4, "y").until(leap).date() == datetime.date(2028, 2, 29)
    assert RetentionRule("COMPLIANCE", 90, "d").until(0).date() == datetime.date(1970, 4, 1)


def test_expired_recordings_are_deleted_payload_manifest_and_header(archive_env):
    env = archive_env
    rid = archived(env, retention_class="short")
    keep = archived(env)
    rec = env.catalog.get(rid)
    assert sweeper(env).sweep().deleted == []  # not yet
    time.sleep(max(0.0, rec.retain_until - time.time()) + 0.2)  # the 3 s retention running out
    result = sweeper(env).sweep()
    assert result.deleted == [rid] and result.shredded == []
    # The manifest object goes with its payload (locked alike).
    assert list(env.payload.list()) == [f"manifests/{keep}.json", env.payload_key(keep)]
    assert list(env.headers.list()) == [env.header_key(keep)]
    rec = env.catalog.get(rid)
    assert rec.state == "erased" and rec.object_key == ""
    [entry] = env.ledger.find(recording_id=rid, kind="retention.delete")
    assert entry.data["payload"] == "deleted" and entry.data["header"] == "deleted"
    assert sweeper(env).sweep().deleted == []  # idempotent


def test_still_locked_payload_is_crypto_shredded_then_deleted_when_the_lock_ends(archive_env):
    env = archive_env
    rid = archived(env, retention_class="short")
    # The catalog's clock says "expired" but the store's lock still holds: shred.
    result = sweeper(env).sweep(now=FAR)
    assert result.shredded == [rid]
    assert list(env.headers.list()) == []
    assert list(env.payload.list()) == [f"manifests/{rid}.json", env.payload_key(rid)]
    assert env.ledger.find(recording_id=rid, kind="retention.shred")[0].data["payload"] == "locked"
    rec = env.catalog.get(rid)
    assert rec.state == "erased" and rec.object_key == env.payload_key(rid)
    time.sleep(max(0.0, rec.retain_until - time.time()) + 0.2)  # the store's lock running out
    assert sweeper(env).sweep().deleted == [rid]
    assert list(env.payload.list()) == []
    assert env.catalog.get(rid).object_key == ""
    assert [e.kind for e in env.ledger.find(recording_id=rid)][-2:] == ["retention.shred", "retention.delete"]


def test_legal_hold_blocks_until_released(archive_env):
    env = archive_env
    rid = archived(env)
    s = sweeper(env)
    rec = s.set_legal_hold(rid, True, actor="information-officer")
    assert rec.legal_hold == 1 and env.payload.head(rec.object_key).legal_hold
    with pytest.raises(RetentionError):
        env.payload.delete(rec.object_key)
    env.catalog.update(rid, erase_requested=1)  # an erasure request does not beat a hold
    assert s.sweep(now=FAR).shredded == []
    assert list(env.headers.list()) == [env.header_key(rid)]
    s.set_legal_hold(rid, False, actor="information-officer")
    assert s.sweep(now=FAR).shredded == [rid]
    kinds = [e.kind for e in env.ledger.find(recording_id=rid)]
    assert kinds[-3:] == ["legal_hold.set", "legal_hold.release", "erase"]
    assert env.ledger.find(recording_id=rid, kind="legal_hold.set")[0].data["actor"] == "information-officer"
    with pytest.raises(ValueError):
        s.set_legal_hold(rid, True, actor="")


def test_a_hold_placed_on_the_store_directly_is_honoured(archive_env):
    env = archive_env
    rid = archived(env)
    rec = env.catalog.get(rid)
    env.payload.set_legal_hold(rec.object_key, True, rec.version_id)
    result = sweeper(env).sweep(now=FAR)
    assert result.held == [rid] and result.shredded == []
    assert list(env.headers.list()) == [env.header_key(rid)]


def test_hold_placed_before_archiving_is_applied_to_the_stored_version(archive_env):
    env = archive_env
    rid = env.recording()
    sweeper(env).set_legal_hold(rid, True, actor="legal")
    assert env.process(rid).kind == "archived"
    rec = env.catalog.get(rid)
    assert env.payload.head(rec.object_key, rec.version_id).legal_hold


def test_erase_request_after_archiving_shreds(archive_env):
    env = archive_env
    rid = archived(env)
    env.catalog.update(rid, erase_requested=1, consent_state="revoked")
    result = sweeper(env).sweep()
    assert result.shredded == [rid]
    [entry] = env.ledger.find(recording_id=rid, kind="erase")
    assert entry.data == {**entry.data, "payload": "locked", "header": "deleted", "reason": "erasure requested"}
    assert list(env.headers.list()) == []


def test_erase_request_on_a_held_recording_archives_it_held_until_release(archive_env):
    env = archive_env
    rid = env.recording(erase=True)
    sweeper(env).set_legal_hold(rid, True, actor="legal")
    assert env.process(rid).kind == "archived"
    rec = env.catalog.get(rid)
    assert env.payload.head(rec.object_key).legal_hold
    assert sweeper(env).sweep(now=FAR).shredded == []
    sweeper(env).set_legal_hold(rid, False, actor="legal")
    assert sweeper(env).sweep().shredded == [rid]
    assert env.ledger.find(recording_id=rid, kind="erase")[0].data["reason"] == "erasure requested"
