"""Every command the README and docs/*.md name exists in the installed `callvault`.

Commands are read from code spans and fenced blocks that start with ``callvault``
(``callvault recordings get ID ...``, ``callvault ledger verify|export -c FILE``).
The command path is found by walking the real parser through ``--help``: a word is
a sub-command while the current level has sub-commands (its usage shows
``{a,b,c} ...``), and the first argument where it has none. Each documented path
must answer ``--help`` with exit 0 and its own usage line; the cheap ones (no lab,
no running appliance) are also run for real on a throw-away configuration.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
CALLVAULT = BIN / "callvault"
CALLVAULT_AGI = BIN / "callvault-agi"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
COMMAND = re.compile(r"^(?:\$\s+)?callvault\s+(.*)$", re.DOTALL)
WORD = re.compile(r"^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$")  # `verify|export` is two commands
AGI_SCRIPT = re.compile(r"AGI\(callvault-agi,([a-z][a-z0-9-]*)")


def env() -> dict[str, str]:
    """The installed entry points, running this tree's code."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    return e


def snippets(path: Path) -> list[tuple[str, int]]:
    """(code, line) for each line of a fenced block and each code span."""
    text = path.read_text()
    found = []
    for m in FENCE.finditer(text):
        first = text.count("\n", 0, m.start(2)) + 1
        found.extend((line, first + i) for i, line in enumerate(m.group(2).splitlines()))
    masked = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    for m in SPAN.finditer(masked):
        found.append((" ".join(m.group(2).split()), masked.count("\n", 0, m.start()) + 1))
    return found


def documented_commands(paths) -> dict[tuple[str, ...], list[str]]:
    """Leading words of each documented `callvault ...` line -> where it is written."""
    commands: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        for code, line in snippets(path):
            m = COMMAND.match(code.strip())
            if not m:
                continue
            words = list(itertools.takewhile(WORD.match, m.group(1).split()))
            for choice in itertools.product(*(w.split("|") for w in words)):
                if choice:
                    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                    where = f"{name}:{line}"
                    commands.setdefault(choice, []).append(where)
    return commands


def documented_agi_routes(paths) -> dict[str, list[str]]:
    routes: dict[str, list[str]] = {}
    for path in paths:
        for code, line in snippets(path):
            for route in AGI_SCRIPT.findall(code):
                routes.setdefault(route, []).append(f"{path.relative_to(ROOT)}:{line}")
    return routes


@functools.cache
def help_of(path: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run([str(CALLVAULT), *path, "--help"], check=False, capture_output=True, text=True,
                          env=env(), timeout=60)


def subcommands(usage: str) -> set[str]:
    """The sub-command choices in an argparse help text (``{a,b,c} ...``)."""
    return {c for group in re.findall(r"\{([a-z0-9,-]+)\}\s+\.\.\.", usage) for c in group.split(",")}


def resolve(words: tuple[str, ...], help_of=help_of) -> tuple[tuple[str, ...], str | None]:
    """(command path, problem or None) for a documented word sequence."""
    path: tuple[str, ...] = ()
    for word in words:
        shown = help_of(path)
        if shown.returncode != 0:
            return path, f"`{' '.join(('callvault',) + path)} --help` exits {shown.returncode}: {shown.stderr.strip()}"
        choices = subcommands(shown.stdout)
        if not choices:
            break  # `word` is an argument of `path`
        if word not in choices:
            return path + (word,), (f"no sub-command {word!r} in `{' '.join(('callvault',) + path)}` "
                                    f"(it has {', '.join(sorted(choices))})")
        path += (word,)
    return path, None


DOCUMENTED = documented_commands(DOCS)


def test_the_docs_name_commands():
    assert {("config", "check"), ("recordings", "get"), ("ledger", "export"), ("lab", "down")} <= set(DOCUMENTED)


@pytest.mark.parametrize("words", sorted(DOCUMENTED), ids=" ".join)
def test_documented_command_exists(words):
    path, problem = resolve(words)
    assert problem is None, f"`callvault {' '.join(words)}` ({', '.join(DOCUMENTED[words])}): {problem}"
    shown = help_of(path)
    assert shown.returncode == 0, shown.stderr
    usage = " ".join(shown.stdout.split())
    assert f"usage: callvault {' '.join(path)}".rstrip() in usage, shown.stdout


def test_a_made_up_command_is_detected_as_missing(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text("Run `callvault frobnicate --now -c FILE`, then\n\n```\n"
                   "callvault recordings frobnicate ID\ncallvault ledger verify|export -c FILE\n```\n")
    found = documented_commands([doc])
    assert found == {("frobnicate",): ["README.md:1"], ("recordings", "frobnicate"): ["README.md:4"],
                     ("ledger", "verify"): ["README.md:5"], ("ledger", "export"): ["README.md:5"]}
    path, problem = resolve(("frobnicate",))
    assert path == ("frobnicate",) and "frobnicate" in problem
    path, problem = resolve(("recordings", "frobnicate"))
    assert path == ("recordings", "frobnicate") and "no sub-command 'frobnicate'" in problem
    assert resolve(("ledger", "verify")) == (("ledger", "verify"), None)
    assert resolve(("users", "add", "sam")) == (("users", "add"), None)  # `sam` is an argument


# -- the cheap ones, for real ---------------------------------------------------------


@pytest.fixture
def site(tmp_path):
    """A configuration with a local archive, a database and one recipient."""
    identity = tmp_path / "identity.txt"
    out = callvault("keys", "generate", "--out", str(identity))
    [recipient] = re.findall(r"^public key: (age1\w+)$", out.stdout, re.MULTILINE)
    (tmp_path / "db").mkdir()
    config = tmp_path / "callvault.toml"
    config.write_text(f"""
[ami]
secret = "s3cret-value"
[database]
url = "sqlite:///{tmp_path}/db/callvault.db"
[spool]
dir = "{tmp_path}/spool"
[storage]
path = "{tmp_path}/archive"
[privacy]
hmac_key_file = "{tmp_path}/hmac.key"
[archive]
recipients = ["{recipient}"]
""")
    return tmp_path, config, recipient


def callvault(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(CALLVAULT), *args], check=False, capture_output=True, text=True, env=env(),
                          stdin=subprocess.DEVNULL, timeout=60)
    if ok:
        assert done.returncode == 0, f"callvault {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
    return done


# Documented commands only asked for --help here, and why.
NOT_RUN_HERE = {
    ("serve",): "needs the lab (tests/appliance/test_serve.py)",
    ("status",): "needs a running appliance (tests/appliance/test_serve.py)",
    ("call", "pause"): "needs a live call",
    ("call", "resume"): "needs a live call",
    ("lab", "up"): "is the lab (tests/appliance/test_lab.py)",
    ("lab", "down"): "is the lab",
    ("lab", "call"): "needs the lab",
    ("recordings", "get"): "needs an archived recording (tests/appliance/cli/test_archive_commands.py)",
    ("recordings", "adopt"): "needs a spool file and an archiver (tests/appliance/cli/test_archive_commands.py)",
    ("recordings", "retry"): "needs a quarantined dead letter (tests/appliance/cli/test_archive_commands.py, "
                             "tests/appliance/test_private_files.py)",
    ("recordings", "erase"): "needs a quarantined dead letter (tests/appliance/cli/test_archive_commands.py)",
    ("catalog", "rebuild"): "needs archived recordings and a lost database (tests/appliance/cli/test_catalog_rebuild.py)",
    ("prompts", "build"): "speaks every prompt with espeak-ng (tests/announcements/test_prompts_cli.py)",
    ("prompts", "import"): "needs an audio file (tests/announcements/test_prompts_cli.py)",
    ("prompts", "install"): "needs built prompts (tests/announcements/test_prompts_cli.py)",
    ("erasure", "plan"): "needs archived recordings on RGW (tests/archiver/test_erasure_rgw.py)",
    ("erasure", "request"): "needs archived recordings on RGW (tests/archiver/test_erasure_rgw.py)",
    ("erasure", "approve"): "needs an erasure request (tests/archiver/test_erasure_rgw.py)",
    ("erasure", "certificate"): "needs an executed erasure (tests/archiver/test_erasure_rgw.py)",
    ("erasure", "verify"): "needs a certificate (tests/archiver/test_erasure_rgw.py)",
    ("subject", "find"): "needs calls in the ledger and catalog (tests/archiver/test_dsar_calls.py)",
    ("subject", "export"): "needs archived recordings (tests/archiver/test_dsar_calls.py)",
}
RUN_BELOW = {("report",), ("retention", "plan"), ("config", "check"), ("dialplan",), ("systemd-unit",), ("keys", "generate"), ("keys", "list"),
             ("storage", "init"), ("ledger", "verify"), ("ledger", "export"), ("ledger", "anchor"),
             ("ledger", "anchors"), ("users", "add"),
             ("users", "list"), ("users", "disable"), ("recordings", "list"), ("recordings", "verify"),
             ("prompts", "list")}


def test_every_documented_command_is_run_or_said_to_need_the_lab():
    paths = {resolve(words)[0] for words in DOCUMENTED}
    assert paths - set(NOT_RUN_HERE) - RUN_BELOW == set()


def test_config_check(site):
    _, config, _ = site
    assert callvault("config", "check", "-c", str(config)).stdout == f"{config}: ok\n"


def test_dialplan(site):
    _, config, _ = site
    out = callvault("dialplan", "-c", str(config)).stdout
    assert "[callvault-consent]" in out and "exten => s,1,MSet(CALLVAULT_CONSENT=error,CALLVAULT_RECORD=no," in out
    assert "/consent?tail=dialplan," in out and " same => n,Playback(${CALLVAULT_CONFIRM},noanswer)" in out


def test_systemd_unit(site):
    tmp_path, config, _ = site
    out = callvault("systemd-unit", "-c", str(config), "--user", "voice").stdout
    lines = out.splitlines()  # checked with systemd-analyze in tests/appliance/test_systemd.py
    assert "Type=notify" in lines and f"ExecStart={CALLVAULT} serve -c {config}" in lines and "User=voice" in lines
    # The site's own directory, and the prompt library it leaves at its default.
    assert f"ReadWritePaths=-{tmp_path} -/var/lib/callvault/prompts" in lines


def test_keys_generate_writes_0600_and_never_overwrites(tmp_path):
    identity = tmp_path / "id.txt"
    out = callvault("keys", "generate", "--out", str(identity)).stdout
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert re.search(r"^public key: age1\w+$", out, re.MULTILINE)
    before = identity.read_bytes()
    assert b"AGE-SECRET-KEY-1" in before
    again = callvault("keys", "generate", "--out", str(identity), ok=False)
    assert again.returncode != 0 and identity.read_bytes() == before


def test_keys_list(site):
    _, config, recipient = site
    assert recipient in callvault("keys", "list", "-c", str(config)).stdout


def test_storage_init(site):
    tmp_path, config, _ = site
    out = callvault("storage", "init", "-c", str(config)).stdout
    assert out == f"ready: payload: {tmp_path}/archive/payload\nready: headers: {tmp_path}/archive/keys\n"


def test_ledger_verify_export_and_anchors_of_a_new_database(site):
    _, config, _ = site
    callvault("storage", "init", "-c", str(config))
    assert callvault("ledger", "verify", "-c", str(config)).stdout.startswith("ledger ok: 0 entries")
    done = callvault("ledger", "export", "-c", str(config))
    assert done.stdout == "" and done.stderr.startswith("exported 0 entries")
    assert callvault("ledger", "anchor", "-c", str(config)).stdout == "ledger is empty: nothing to anchor\n"
    assert callvault("ledger", "anchors", "-c", str(config)).stdout == ""


def test_users_add_list_disable(site):
    tmp_path, config, _ = site
    password = tmp_path / "password"
    password.write_text("a long enough passphrase\n")
    assert callvault("users", "add", "sam", "--role", "supervisor", "--password-file", str(password),
                     "-c", str(config)).stdout == "user sam added as supervisor\n"
    assert re.search(r"^sam +supervisor +active", callvault("users", "list", "-c", str(config)).stdout, re.MULTILINE)
    callvault("users", "disable", "sam", "-c", str(config))
    assert re.search(r"^sam +supervisor +disabled", callvault("users", "list", "-c", str(config)).stdout, re.MULTILINE)


def test_recordings_list_and_verify_of_an_empty_catalog(site):
    _, config, _ = site
    assert callvault("recordings", "list", "-c", str(config)).stdout.startswith("recording ")
    assert "verified 0 recording(s), 0 bad" in callvault("recordings", "verify", "--all", "-c", str(config)).stderr


def test_report_and_retention_plan_of_a_new_site(site):
    _, config, _ = site
    callvault("storage", "init", "-c", str(config))
    assert callvault("report", "consent", "-c", str(config)).stdout == "day,rule,jurisdiction,outcome,count\n"
    assert callvault("retention", "plan", "-c", str(config)).stdout.endswith("nothing is due\n")


def test_prompts_list(tmp_path):
    out = callvault("prompts", "list", "--library", str(tmp_path / "prompts")).stdout
    assert out.startswith(f"library: {tmp_path / 'prompts'}\n") and "will-record" in out


# -- callvault-agi: the AGI(script) entry point ---------------------------------------

AGI_ENV = (b"agi_request: /usr/share/asterisk/agi-bin/callvault-agi\n"
           b"agi_channel: Local/100@consent-test-00000000;2\n"
           b"agi_uniqueid: 1795329357.1\n"
           b"agi_callerid: 27215550123\n"
           b"\n")


def test_documented_agi_routes_exist(tmp_path):
    """The routes the docs put in ``AGI(callvault-agi,ROUTE,...)`` are ones it serves.

    The script has no --help (its arguments come from the dialplan, and it always
    exits 0); an unknown route fails the call closed naming the known ones, which is
    cheap to ask. The consent flow itself runs through this entry point in
    tests/appliance/test_classicagi.py."""
    routes = documented_agi_routes(DOCS)
    assert "consent" in routes
    (tmp_path / "db").mkdir()
    config = tmp_path / "callvault.toml"
    config.write_text(f'[ami]\nsecret = "unused"\n[database]\nurl = "sqlite:///{tmp_path}/db/cv.db"\n'
                      f'[privacy]\nhmac_key_file = "{tmp_path}/hmac.key"\n')
    done = subprocess.run([str(CALLVAULT_AGI), "-c", str(config), "no-such-route"],
                          check=False, input=AGI_ENV + b"200 result=1\n" * 4, capture_output=True, env=env(),
                          timeout=60)
    assert done.returncode == 0
    assert done.stdout.decode().splitlines() == ['SET VARIABLE "CALLVAULT_RECORD" "no"',
                                                 'SET VARIABLE "CALLVAULT_CONSENT" "error"']
    [known] = re.findall(r"unknown route \(known: ([^)]*)\)", done.stderr.decode())
    assert set(routes) <= set(known.split(", ")), f"documented {routes}, served: {known}"
