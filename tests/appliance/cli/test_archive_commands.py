"""`callvault keys ...`, `callvault recordings ...` and `callvault storage init`, and the
archive parts of the composition root."""

from __future__ import annotations

import json
import os
import pwd
import stat

import pytest

from appliance import compose
from appliance import config as cfg
from appliance.cli import build_parser
from archiver.errors import SetupError
from storage import keys
from storage.catalog import Catalog
from storage.dburl import open_database
from storage.errors import StorageError
from storage.ledger import Ledger
from storage.localstore import LocalStore


def run(capsys, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = args.fn(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def write_config(tmp_path, recipients: list[str], extra: str = "", root=None) -> os.PathLike:
    root = root or tmp_path
    path = tmp_path / "callvault.toml"
    path.write_text(f"""
[ami]
secret = "x"
[database]
url = "sqlite:///{root / 'callvault.db'}"
[spool]
dir = "{root / 'spool'}"
[archive]
recipients = {json.dumps(recipients)}
[storage]
backend = "local"
path = "{root / 'archive'}"
{extra}
""")
    return path


@pytest.fixture
def site(tmp_path, make_env, capsys):
    """A config whose archive holds two archived recordings; the identity file to read them."""
    code, out, _ = run(capsys, "keys", "generate", "--out", str(tmp_path / "id.txt"))
    assert code == 0
    recipient = next(line.split()[-1] for line in out.splitlines() if line.startswith("public key:"))
    root = tmp_path / "env0"
    path = write_config(tmp_path, [recipient], root=root)
    config = cfg.load(path, env={}, check_paths=False)
    compose.init_archive(config)
    archive = compose.build_archive(config)
    env = make_env(archive.payload, archive.headers)
    assert env.root == root
    archiver = compose.build_archiver(config, env.catalog, env.ledger, archive)
    rids = [env.recording(100_000 + i) for i in range(2)]
    for rid in rids:
        assert archiver.pipeline.process(env.catalog.get(rid)).kind == "archived"
    archive.close()
    yield path, config, rids, env


def test_keys_generate_writes_0600_and_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "k.txt"
    code, out, _ = run(capsys, "keys", "generate", "--out", str(target))
    assert code == 0 and "public key: age1" in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    [identity] = keys.load_identities(target)
    assert str(identity.recipient) in out
    code, _, err = run(capsys, "keys", "generate", "--out", str(target))
    assert code == 2 and "refusing to overwrite" in err
    assert keys.load_identities(target) == [identity]


def test_keys_generate_with_passphrase(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALLVAULT_PASSPHRASE", "correct horse")
    target = tmp_path / "k.age"
    assert run(capsys, "keys", "generate", "--out", str(target), "--passphrase")[0] == 0
    assert target.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert len(keys.load_identities(target, "correct horse")) == 1


def test_keys_generate_to_stdout(capsys):
    code, out, err = run(capsys, "keys", "generate")
    assert code == 0 and out.splitlines()[-1].startswith("AGE-SECRET-KEY-1") and "Public key: age1" in err


def test_keys_list_shows_recipients_and_fingerprints(tmp_path, capsys, identity):
    path = write_config(tmp_path, [str(identity.recipient)])
    code, out, _ = run(capsys, "keys", "list", "-c", str(path))
    assert code == 0 and out.split() == [identity.recipient.fingerprint, str(identity.recipient)]


def test_recordings_list(site, capsys):
    path, _, rids, _ = site
    code, out, _ = run(capsys, "recordings", "list", "--json", "-c", str(path))
    rows = json.loads(out)
    assert code == 0 and sorted(r["recording_id"] for r in rows) == sorted(rids)
    assert all(r["state"] == "archived" and r["retain_until"] for r in rows)
    assert "caller_hmac" not in rows[0]
    code, out, _ = run(capsys, "recordings", "list", "-c", str(path))
    assert code == 0 and all(rid in out for rid in rids)


def test_recordings_get_decrypts_to_the_original_wav(site, capsys, tmp_path):
    path, _, rids, env = site
    out_file = tmp_path / "out.wav"
    code, _, err = run(capsys, "recordings", "get", rids[0], "--identity", str(tmp_path / "id.txt"),
                       "--out", str(out_file), "--reason", "subject access request", "-c", str(path))
    assert code == 0, err
    assert out_file.read_bytes() == env.wavs[rids[0]]
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    [audit] = env.ledger.find(recording_id=rids[0], kind="audit.get")
    assert audit.data["reason"] == "subject access request"
    code, _, err = run(capsys, "recordings", "get", rids[0], "--identity", str(tmp_path / "id.txt"),
                       "--out", str(out_file), "--reason", "again", "-c", str(path))
    assert code == 2 and "refusing to overwrite" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_recordings_get_with_the_wrong_key_fails_cleanly(site, capsys, tmp_path):
    path, _, rids, _ = site
    run(capsys, "keys", "generate", "--out", str(tmp_path / "other.txt"))
    code, _, err = run(capsys, "recordings", "get", rids[0], "--identity", str(tmp_path / "other.txt"),
                       "--out", str(tmp_path / "x.wav"), "--reason", "qa", "-c", str(path))
    assert code == 1 and "identities" in err and not (tmp_path / "x.wav").exists()


def test_recordings_verify_detects_a_corrupted_payload(site, capsys, tmp_path):
    path, config, rids, env = site
    code, out, _ = run(capsys, "recordings", "verify", "--all", "-c", str(path))
    assert code == 0 and out.count(": ok") == 2
    rec = env.catalog.get(rids[1])
    data = config.storage.path / "payload" / "objects" / rec.object_key / "@v" / rec.version_id / "data"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 1
    data.write_bytes(bytes(raw))
    code, out, _ = run(capsys, "recordings", "verify", "--all", "-c", str(path))
    assert code == 1 and f"{rids[1]}: MISMATCH" in out and f"{rids[0]}: ok" in out
    code, out, _ = run(capsys, "recordings", "verify", rids[0], "-c", str(path))
    assert code == 0


def test_recordings_adopt_queues_an_unknown_file(site, capsys):
    path, config, _, env = site
    wav = config.spool.dir / "stray-file.wav"
    env.write_wav(wav, 1000)
    code, out, _ = run(capsys, "recordings", "adopt", str(wav), "--reason", "found after restore", "-c", str(path))
    assert code == 0
    rec = env.catalog.get("stray-file")
    assert rec.state == "pending" and rec.consent_state == "unknown"
    assert env.ledger.find(recording_id="stray-file", kind="archive.adopt")[0].data["reason"] == "found after restore"
    assert run(capsys, "recordings", "adopt", str(wav), "--reason", "again", "-c", str(path))[0] == 1


@pytest.mark.parametrize("reason", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_recordings_get_refuses_without_a_reason(site, capsys, tmp_path, reason):
    path, _, rids, env = site
    argv = ["recordings", "get", rids[0], "--identity", str(tmp_path / "id.txt"), "--out", str(tmp_path / "o.wav"),
            "-c", str(path)] + ([] if reason is None else ["--reason", reason])
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2 and "--reason" in capsys.readouterr().err
    assert env.ledger.find(recording_id=rids[0], kind="audit.get") == []


def test_recordings_get_audits_the_os_account_and_defaults_to_the_web_identity(site, capsys, tmp_path,
                                                                               monkeypatch):
    path, _, rids, env = site
    # The environment names someone else: the ledger must not believe it.
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("CALLVAULT_WEB_IDENTITY_FILE", str(tmp_path / "id.txt"))
    out_file = tmp_path / "o.wav"
    code, _, err = run(capsys, "recordings", "get", rids[0], "--out", str(out_file), "--reason", "DSAR 42",
                       "-c", str(path))
    assert code == 0, err
    assert out_file.read_bytes() == env.wavs[rids[0]]
    [audit] = env.ledger.find(recording_id=rids[0], kind="audit.get")
    assert audit.data["actor"] == pwd.getpwuid(os.getuid()).pw_name != "mallory"
    assert audit.data["uid"] == os.getuid() and audit.data["via"] == "cli"
    monkeypatch.delenv("CALLVAULT_WEB_IDENTITY_FILE")
    code, _, err = run(capsys, "recordings", "get", rids[1], "--out", str(tmp_path / "p.wav"), "--reason", "x",
                       "-c", str(path))
    assert code == 2 and "--identity" in err and "[web] identity_file" in err


def test_storage_init_makes_the_local_stores_that_serve_refuses_without(tmp_path, identity, capsys):
    path = write_config(tmp_path, [str(identity.recipient)])
    config = cfg.load(path, env={}, check_paths=False)
    archive = compose.build_archive(config)
    payload, header_store = archive.payload, archive.headers
    assert isinstance(payload, LocalStore) and payload.root == tmp_path / "archive" / "payload"
    assert header_store.root == tmp_path / "archive" / "keys"
    with pytest.raises(StorageError, match="callvault storage init"):
        payload.check_setup()  # never created behind the administrator's back
    assert not (tmp_path / "archive").exists()
    code, out, _ = run(capsys, "storage", "init", "-c", str(path))
    assert code == 0 and f"payload: {tmp_path / 'archive' / 'payload'}" in out
    payload.check_setup()
    header_store.check_setup()
    assert run(capsys, "storage", "init", "-c", str(path))[0] == 0  # idempotent


def test_missing_recipients_and_unknown_retention_classes_are_refused(tmp_path, identity):
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        catalog, ledger = Catalog(db), Ledger(db)
        config = cfg.load(write_config(tmp_path, []), env={}, check_paths=False)
        with pytest.raises(SetupError, match=r"\[archive\] recipients"):
            compose.build_archiver(config, catalog, ledger, compose.build_archive(config))
        rules = '[[consent.rules]]\nname = "sales"\nretention = "sales-2y"\n'
        with pytest.raises(cfg.ConfigError, match="rule 'sales' retention = 'sales-2y': no such retention class"):
            cfg.load(write_config(tmp_path, [str(identity.recipient)], rules), env={}, check_paths=False)
        config = cfg.load(write_config(tmp_path, [str(identity.recipient)], rules), env={}, check_paths=False,
                          overrides={"archive.retention": ["sales-2y=GOVERNANCE:2y"]})
        archiver = compose.build_archiver(config, catalog, ledger, compose.build_archive(config))
        assert archiver.rule_retention["sales"] == "sales-2y"
    finally:
        db.close()


def test_quarantined_dead_letters_are_retried_or_erased_from_the_cli(site, capsys, tmp_path):
    path, config, rids, env = site
    archiver = compose.build_archiver(config, env.catalog, env.ledger, compose.build_archive(config))
    # A class the config does not know yet: a dead letter at once, its WAV quarantined.
    dead = [env.recording(20_000, retention_class="sales") for _ in range(2)]
    for rid in dead:
        assert archiver.pipeline.process(env.catalog.get(rid)).kind == "failed"
    quarantine = config.spool.dir / ".callvault-quarantine"
    assert sorted(p.name for p in config.spool.dir.glob("*.wav")) == []
    assert sorted(p.name for p in quarantine.glob("*.wav")) == sorted(f"{rid}.wav" for rid in dead)

    code, _, err = run(capsys, "recordings", "retry", rids[0], "--reason", "r", "-c", str(path))
    assert code == 2 and f"recording {rids[0]} is not in quarantine: it is archived" in err

    code, _, err = run(capsys, "recordings", "retry", dead[0], "--reason", "class added", "-c", str(path))
    assert code == 0, err
    assert (config.spool.dir / f"{dead[0]}.wav").read_bytes() == env.wavs[dead[0]]
    rec = env.catalog.get(dead[0])
    assert rec.state == "pending" and rec.quarantined_at is None and rec.last_error == ""
    [entry] = env.ledger.find(recording_id=dead[0], kind="archive.release")
    assert entry.data["action"] == "retry" and entry.data["uid"] == os.getuid()
    # Once the class exists the job goes through.
    fixed = cfg.load(path, env={}, check_paths=False, overrides={"archive.retention": ["sales=GOVERNANCE:1d"]})
    archiver = compose.build_archiver(fixed, env.catalog, env.ledger, compose.build_archive(fixed))
    assert archiver.pipeline.process(env.catalog.get(dead[0])).kind == "archived"
    assert run(capsys, "recordings", "retry", dead[0], "--reason", "r", "-c", str(path))[0] == 2  # archived now

    code, _, err = run(capsys, "recordings", "erase", dead[1], "--reason", "no basis to keep it", "-c", str(path))
    assert code == 0, err
    assert env.catalog.get(dead[1]).erase_requested == 1
    assert archiver.pipeline.process(env.catalog.get(dead[1])).kind == "erased"
    assert list(config.spool.dir.glob("*.wav")) == [] and list(quarantine.iterdir()) == []
    assert env.kinds(dead[1])[-2:] == ["archive.release", "erase"]
