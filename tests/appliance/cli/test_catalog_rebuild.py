"""`callvault catalog rebuild`: the catalog lost with its database, restored from the
manifest objects the archiver stored beside the payloads (local store; RGW in
tests/archiver/test_rebuild_rgw.py); then a supervisor plays a recording in the web app."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil

import aiohttp
import pytest
from standalone import standalone_config, start_serve

from appliance import compose
from appliance import config as cfg
from appliance.cli import build_parser
from archiver import manifest_object
from archiver.retention import RetentionSweeper
from storage.catalog import Catalog
from storage.dburl import open_database
from storage.ledger import Ledger

RESTORED = ("recording_id", "consent_id", "uniqueid", "linkedid", "caller_hmac", "did", "agent", "rule",
            "jurisdiction", "retention_class", "consent_state", "started_at", "ended_at", "state", "legal_hold",
            "object_key", "header_key", "version_id", "retain_until", "manifest", "archived_at", "paused", "node")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = args.fn(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def site(tmp_path, make_env, capsys):
    """Four recordings archived through the real pipeline on the local store: one paused
    with an agent, one on legal hold, one crypto-shredded (header gone)."""
    code, out, _ = run(capsys, "keys", "generate", "--out", str(tmp_path / "id.txt"))
    assert code == 0
    recipient = next(line.split()[-1] for line in out.splitlines() if line.startswith("public key:"))
    root = tmp_path / "env0"
    path = tmp_path / "callvault.toml"
    path.write_text(f"""
[ami]
secret = "x"
[node]
name = "pbx-1"
[database]
url = "sqlite:///{root / 'callvault.db'}"
[spool]
dir = "{root / 'spool'}"
[archive]
recipients = {json.dumps([recipient])}
[storage]
backend = "local"
path = "{root / 'archive'}"
""")
    config = cfg.load(path, env={}, check_paths=False)
    compose.init_archive(config)
    archive = compose.build_archive(config)
    env = make_env(archive.payload, archive.headers)
    archiver = compose.build_archiver(config, env.catalog, env.ledger, archive)
    rids = [env.recording(50_000 + i) for i in range(4)]
    env.catalog.update(rids[0], agent="agent-7", paused=json.dumps([[1.5, 4.25]]))
    for rid in rids:
        assert archiver.pipeline.process(env.catalog.get(rid)).kind == "archived"
    RetentionSweeper(env.catalog, env.ledger, archive).set_legal_hold(rids[1], True, actor="information-officer")
    archive.shred(rids[2])  # what an erasure of an archived recording leaves: the payload, no header
    env.catalog.update(rids[2], state="erased")
    archive.close()
    assert run(capsys, "ledger", "anchor", "-c", str(path))[0] == 0
    yield path, rids, env


def lose_database(env) -> dict:
    """The rows as they were; then the database file is gone."""
    rows = {r.recording_id: r for r in env.catalog.search(limit=100)}
    env.db.close()
    (env.root / "callvault.db").unlink()
    return rows


def test_rebuild_restores_every_row_then_recordings_verify_search_and_decrypt(site, capsys, tmp_path):
    path, rids, env = site
    before = lose_database(env)

    code, out, err = run(capsys, "catalog", "rebuild", "-c", str(path))
    assert code == 0, out + err
    assert "restored 4 of 4 recordings (3 archived, 1 erased, 1 on legal hold); 0 problems" in err
    assert "manifest objects read" in err  # progress
    assert "ledger LOST" in out and "1 anchors of node pbx-1" in out

    db = open_database(f"sqlite:///{env.root / 'callvault.db'}")
    try:
        catalog = Catalog(db, node="pbx-1")
        for rid in rids:
            got, want = catalog.get(rid), before[rid]
            assert {k: getattr(got, k) for k in RESTORED} == {k: getattr(want, k) for k in RESTORED}, rid
        assert catalog.get(rids[0]).pause_intervals == [[1.5, 4.25]]
        # Findable: by the caller's HMAC (a phone search), by DID, by agent.
        assert {r.recording_id for r in catalog.search(caller_hmac="ab" * 32)} == set(rids)
        assert {r.recording_id for r in catalog.search(did="27215550100")} == set(rids)
        assert [r.recording_id for r in catalog.search(agent="agent-7")] == [rids[0]]
        assert Ledger(db).head()[0] == 0  # no new chain started where the old one was lost
    finally:
        db.close()

    code, out, _ = run(capsys, "recordings", "verify", "--all", "-c", str(path))
    assert code == 0 and out.count(": ok") == 3
    wav = tmp_path / "out.wav"
    code, _, err = run(capsys, "recordings", "get", rids[0], "--identity", str(tmp_path / "id.txt"),
                       "--out", str(wav), "--reason", "restore drill", "-c", str(path))
    assert code == 0, err
    assert wav.read_bytes() == env.wavs[rids[0]]


def test_rebuild_refuses_a_catalog_that_is_not_empty_and_dry_run_writes_nothing(site, capsys):
    path, rids, env = site
    code, _, err = run(capsys, "catalog", "rebuild", "-c", str(path))
    assert code == 2 and "already holds 4 recordings" in err and "--merge" in err
    code, _, err = run(capsys, "catalog", "rebuild", "--merge", "-c", str(path))
    assert code == 0 and "restored 0 of 4" in err  # every row was there: kept as it is
    with env.db.write() as c:
        c.execute("DELETE FROM recordings WHERE recording_id = ?", (rids[3],))
    code, _, err = run(capsys, "catalog", "rebuild", "--merge", "--dry-run", "-c", str(path))
    assert code == 0 and "would restore 1 of 4" in err
    assert [r.recording_id for r in env.catalog.search(limit=10) if r.recording_id == rids[3]] == []
    code, out, err = run(capsys, "catalog", "rebuild", "--merge", "-c", str(path))
    assert code == 0 and "restored 1 of 4" in err and "ledger ok" in out
    assert env.catalog.get(rids[3]).state == "archived"
    assert env.ledger.find(kind="catalog.rebuild")[-1].data["restored"] == 1


def test_tampered_and_missing_manifest_objects_are_reported_not_skipped(site, capsys):
    path, rids, env = site
    payload = compose.build_archive(cfg.load(path, env={}, check_paths=False)).payload
    # A new version that is not a manifest; one that changes the caller (the ledger's
    # archive entry holds the original's SHA-256); one lost outright; a payload lost.
    bad = b"{not json"
    payload.put(manifest_object.key(rids[0]), bad, sha256=hashlib.sha256(bad).hexdigest())
    body = json.loads(payload.get(manifest_object.key(rids[3])))
    body["caller_hmac"] = "cd" * 32
    forged = (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()
    payload.put(manifest_object.key(rids[3]), forged, sha256=hashlib.sha256(forged).hexdigest())
    shutil.rmtree(payload.root / "objects" / manifest_object.key(rids[1]))
    shutil.rmtree(payload.root / "objects" / f"rec/{rids[2]}.age.payload")  # a payload lost behind the lock
    with env.db.write() as c:  # the catalog lost, the ledger kept
        c.execute("DELETE FROM recordings")

    code, out, err = run(capsys, "catalog", "rebuild", "-c", str(path))
    assert code == 1
    assert f"TAMPERED: {manifest_object.key(rids[0])}: not JSON" in out
    assert f"TAMPERED: {manifest_object.key(rids[3])}: sha256" in out and "differs from the ledger" in out
    assert f"NO MANIFEST: payload rec/{rids[1]}.age.payload" in out
    assert f"MISSING: {manifest_object.key(rids[2])} names payload rec/{rids[2]}.age.payload" in out
    assert "restored 0 of 3 recordings (0 archived, 0 erased, 0 on legal hold); 4 problems" in err
    assert env.catalog.search() == []


def test_rebuild_onto_a_new_postgresql_database(site, capsys, pg_url):
    path, rids, env = site
    before = lose_database(env)
    text = path.read_text()
    path.write_text(text.replace(f'url = "sqlite:///{env.root / "callvault.db"}"', f'url = "{pg_url}"'))
    code, out, err = run(capsys, "catalog", "rebuild", "-c", str(path))
    assert code == 0 and "restored 4 of 4" in err, out + err
    with open_database(pg_url) as db:
        catalog = Catalog(db, node="pbx-1")
        for rid in rids:
            got, want = catalog.get(rid), before[rid]
            assert {k: getattr(got, k) for k in RESTORED} == {k: getattr(want, k) for k in RESTORED}, rid
    code, out, _ = run(capsys, "recordings", "verify", "--all", "-c", str(path))
    assert code == 0 and out.count(": ok") == 3


async def test_a_supervisor_plays_a_recording_in_the_web_app_after_the_rebuild(site, capsys, tmp_path):
    """The database is lost; `catalog rebuild` restores the catalog, an administrator adds
    a supervisor again, `serve` starts on the rebuilt database, and the recording plays
    over HTTP with a reason: the bytes are the WAV that was recorded."""
    path, rids, env = site
    rid, original = rids[3], env.wavs[rids[3]]
    lose_database(env)
    code, out, err = run(capsys, "catalog", "rebuild", "-c", str(path))
    assert code == 0 and "restored 4 of 4" in err, out + err
    (tmp_path / "pw").write_text("correct-horse-sam\n")
    code, out, err = run(capsys, "users", "add", "sam", "--role", "supervisor", "--password-file", str(tmp_path / "pw"),
                         "-c", str(path))
    assert code == 0, out + err

    # `serve` on the same database and archive, the retrieval node holding the identity.
    config = standalone_config(env.root, web=f'identity_file = "{tmp_path / "id.txt"}"')
    node = start_serve(config, tmp_path / "serve.log")
    try:
        url = await asyncio.to_thread(node.wait_ready)
        async with aiohttp.ClientSession(url, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         headers={"Origin": url}) as sam:
            async with sam.get("/login") as r:
                assert r.status == 200
            token = next(c.value for c in sam.cookie_jar if c.key == "cv_login")
            async with sam.post("/login", data={"csrf": token, "name": "sam", "password": "correct-horse-sam"},
                                allow_redirects=False) as r:
                assert r.status == 303, await r.text()
            async with sam.get("/api/me") as r:
                csrf = (await r.json())["csrf_token"]
            async with sam.post(f"/api/recordings/{rid}/access", headers={"X-CSRF-Token": csrf},
                                json={"purpose": "play", "format": "wav", "reason": "restore drill"}) as r:
                assert r.status == 201, await r.text()
                audio = (await r.json())["url"]
            async with sam.get(audio) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
                assert await r.read() == original
    finally:
        assert node.stop() == 0
        node.kill()
    with open_database(f"sqlite:///{env.root / 'callvault.db'}") as db:
        plays = Ledger(db).find(recording_id=rid, kind="audit.play")
    assert [e.data["reason"] for e in plays] == ["restore drill"]
