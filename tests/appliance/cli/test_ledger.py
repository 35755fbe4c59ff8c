"""`callvault ledger verify|export` on real database files, tampered the way an
attacker with write access to the file would (triggers dropped first)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from storage.dburl import open_database
from storage.ledger import Ledger


@pytest.fixture
def ledger_config(tmp_path):
    db_path = tmp_path / "callvault.db"
    db = open_database(f"sqlite:///{db_path}")
    ledger = Ledger(db)
    for i in range(6):
        ledger.append("consent", {"consent_id": f"c{i}", "outcome": "granted"}, call_id=f"call{i}")
    db.close()
    cfg = tmp_path / "callvault.toml"
    cfg.write_text(f'[ami]\nsecret = "x"\n[database]\nurl = "sqlite:///{db_path}"\n'
                   f'[storage]\npath = "{tmp_path / "archive"}"\n[node]\nname = "pbx-1"\n')
    assert run("storage", "init", "-c", str(cfg)).returncode == 0
    return cfg, db_path


def run(*args):
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True)


def tamper(db_path, *statements):
    conn = sqlite3.connect(db_path)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def test_verify_ok_and_export(ledger_config, tmp_path):
    cfg, _ = ledger_config
    ok = run("ledger", "verify", "-c", str(cfg))
    assert ok.returncode == 0 and "ledger ok: 6 entries" in ok.stdout and "0 anchors" in ok.stdout
    assert "no anchors" in ok.stderr
    out = tmp_path / "ledger.jsonl"
    assert run("ledger", "export", "-c", str(cfg), "-o", str(out)).returncode == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5, 6]
    assert all(lines[i]["prev_hash"] == lines[i - 1]["hash"] for i in range(1, 6))


@pytest.mark.parametrize("statements, bad_seq", [
    (["UPDATE ledger SET body = replace(body, 'granted', 'declined') WHERE seq = 3"], 3),
    (["DELETE FROM ledger WHERE seq = 4"], 4),
    (["UPDATE ledger SET seq = 1000 WHERE seq = 2", "UPDATE ledger SET seq = 2 WHERE seq = 5",
      "UPDATE ledger SET seq = 5 WHERE seq = 1000"], 2),
])
def test_verify_names_the_first_bad_entry(ledger_config, statements, bad_seq):
    cfg, db_path = ledger_config
    tamper(db_path, *statements)
    result = run("ledger", "verify", "-c", str(cfg))
    assert result.returncode == 1
    assert f"ledger BROKEN at entry {bad_seq}:" in result.stdout


def test_anchor_then_delete_the_tail_and_check_offline(ledger_config, tmp_path):
    cfg, db_path = ledger_config
    made = run("ledger", "anchor", "-c", str(cfg))
    assert made.returncode == 0 and "anchored seq 6" in made.stdout, made.stderr
    saved = tmp_path / "saved"
    listed = run("ledger", "anchors", "-c", str(cfg), "--save", str(saved))
    [key] = [w for w in listed.stdout.split() if w.startswith("anchors/pbx-1/000000000006-")]
    assert (saved / "pbx-1" / key.rsplit("/", 1)[1]).is_file()
    export = tmp_path / "ledger.jsonl"
    assert run("ledger", "export", "-c", str(cfg), "-o", str(export)).returncode == 0
    offline = run("ledger", "verify", "--export", str(export), "--anchors", str(saved))
    assert offline.returncode == 0 and "1 anchors match" in offline.stdout

    tamper(db_path, "DELETE FROM ledger WHERE seq = 6")
    for extra in ((), ("--from-anchor",)):
        result = run("ledger", "verify", "-c", str(cfg), *extra)
        assert result.returncode == 1 and key in result.stdout and "entry 6" in result.stdout, result.stdout
    refused = run("ledger", "anchor", "-c", str(cfg))
    assert refused.returncode == 1 and "no anchor written" in refused.stdout
    export.write_text("".join(export.read_text().splitlines(keepends=True)[:5]))
    offline = run("ledger", "verify", "--export", str(export), "--anchors", str(saved))
    assert offline.returncode == 1 and key.rsplit("/", 1)[1] in offline.stdout
