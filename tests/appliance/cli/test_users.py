"""`callvault users add|list|disable`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import build_parser


def run(tmp_path, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    (tmp_path / "callvault.toml").write_text(
        f'[ami]\nsecret = "x"\n[database]\nurl = "sqlite:///{tmp_path / "cv.db"}"\n')
    args = build_parser().parse_args([*argv[:2], "-c", str(tmp_path / "callvault.toml"), *argv[2:]])

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = args.fn(args)
    finally:
        sys.stdin = old
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_cli_add_list_disable(tmp_path, capsys):
    pw = tmp_path / "pw.txt"
    pw.write_text("alice-password-1\n")
    code, out, _ = run(tmp_path, capsys, "users", "add", "alice", "--role", "agent", "--agent-channel",
                       "PJSIP/1001", "--did", "27215550100", "--password-file", str(pw))
    assert code == 0 and out.strip() == "user alice added as agent (PJSIP/1001, did:27215550100)"
    code, out, _ = run(tmp_path, capsys, "users", "add", "sam", "--role", "supervisor", "--password-file", "-",
                       stdin="sam-password-12\n")
    assert code == 0
    code, out, err = run(tmp_path, capsys, "users", "add", "sam", "--role", "supervisor", "--password-file", "-",
                         stdin="sam-password-12\n")
    assert code == 2 and "exists" in err
    code, out, err = run(tmp_path, capsys, "users", "add", "bo", "--role", "admin", "--agent-channel", "PJSIP/1",
                         "--password-file", str(pw))
    assert code == 2 and "agents only" in err
    code, out, err = run(tmp_path, capsys, "users", "add", "bo", "--role", "admin", "--password-file", "-",
                         stdin="short\n")
    assert code == 2 and "at least 10" in err

    code, out, _ = run(tmp_path, capsys, "users", "list", "--json")
    assert [(u["name"], u["role"], u["disabled"]) for u in json.loads(out)] == [("alice", "agent", False),
                                                                                ("sam", "supervisor", False)]
    code, out, _ = run(tmp_path, capsys, "users", "disable", "alice")
    assert code == 0 and "disabled" in out
    code, out, _ = run(tmp_path, capsys, "users", "list")
    assert "alice" in out and "disabled" in out and "PJSIP/1001" in out
    code, _, err = run(tmp_path, capsys, "users", "disable", "nobody")
    assert code == 1 and "nobody" in err


# -- through the installed entry point, as an administrator's shell runs it -----------------

ROOT = Path(__file__).resolve().parents[3]
CALLVAULT = Path(sys.executable).parent / "callvault"


def installed(tmp_path, *argv: str, stdin: str) -> subprocess.CompletedProcess:
    config = tmp_path / "callvault.toml"
    config.write_text(f'[ami]\nsecret = "x"\n[database]\nurl = "sqlite:///{tmp_path / "cv.db"}"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([str(CALLVAULT), *argv, "-c", str(config)], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)


def test_a_password_piped_with_password_stdin_adds_the_user(tmp_path):
    done = installed(tmp_path, "users", "add", "x", "--role", "agent", "--password-stdin",
                     stdin="piped-password-1\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "user x added as agent\n" and "Traceback" not in done.stderr
    users = installed(tmp_path, "users", "list", "--json", stdin="")
    assert [u["name"] for u in json.loads(users.stdout)] == ["x"]


@pytest.mark.parametrize("argv,stdin,says", [
    ((), "piped-password-1\n", "no terminal to ask for the password on; pipe it with --password-stdin "
                                "or name a file with --password-file FILE"),
    (("--password-stdin",), "", "no password on standard input"),
])
def test_no_password_to_read_is_one_line_and_exit_2(tmp_path, argv, stdin, says):
    done = installed(tmp_path, "users", "add", "x", "--role", "agent", *argv, stdin=stdin)
    assert done.returncode == 2
    assert done.stderr == f"callvault: {says}\n"
