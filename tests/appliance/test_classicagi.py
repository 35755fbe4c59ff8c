"""Classic AGI (`callvault-agi ROUTE [ARGS]` over pyst2): the session's outcome rules
over pipes, the entry point as a process, and whole calls through the real Asterisk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from callhelpers import (
    OPT_IN,
    after_agi,
    after_revoke,
    mixmonitor_started,
    mixmonitor_stopped,
    wait_path,
)

from agi.classic import PystSession, classic_environment
from agi.errors import (
    AgiHangup,
    AgiTimeout,
    CommandFailed,
    LocalProtocolError,
    ProtocolError,
)
from agi.server import new_event_loop
from announcements.linkwatch import watch
from announcements.manifest import MANIFEST_NAME, file_record, manifest_bytes
from appliance.classicagi import UsageError, parse_argv
from appliance.compose import prompt_resolver
from appliance.lab.asterisk import AsteriskPaths
from appliance.lab.calls import CallDriver
from appliance.lab.classic import ClassicAgiError, _plan, classic_agi
from storage.catalog import Catalog
from storage.dburl import open_database
from storage.hmac_index import load_hmac_key
from storage.ledger import Ledger

ENV = (b"agi_request: /usr/share/asterisk/agi-bin/callvault-agi\n"
       b"agi_channel: Local/100@consent-test-00000000;2\n"
       b"agi_language: en\n"
       b"agi_uniqueid: 1795329357.1\n"
       b"agi_version: 22.10.1\n"
       b"agi_callerid: 27215550123\n"
       b"agi_calleridname: Test Caller\n"
       b"agi_context: consent-test\n"
       b"agi_extension: 100\n"
       b"agi_accountcode: \n"
       b"agi_arg_1: consent\n"
       b"agi_arg_2: 27215550100\n"
       b"\n")
SCRIPT = Path(sys.prefix) / "bin" / "callvault-agi"


# -- the session over pipes ----------------------------------------------------------


class Pipes:
    """Asterisk's side: everything it will say is written up front, then EOF (or not)."""

    def __init__(self, replies: list[str], *, eof: bool = True, env: bytes = ENV):
        self.stdin_r, self.stdin_w = os.pipe()
        self.stdout_r, self.stdout_w = os.pipe()
        self._open = {self.stdin_r, self.stdin_w, self.stdout_r, self.stdout_w}
        self.session: PystSession | None = None
        os.write(self.stdin_w, env + "".join(r + "\n" for r in replies).encode())
        if eof:
            self._close(self.stdin_w)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def open(self, args=("27215550100",), **options) -> PystSession:
        self.session = PystSession.open(args, stdin=self.stdin_r, stdout=self.stdout_w, **options)
        return self.session

    def sent(self) -> list[str]:
        self._close(self.stdout_w)
        data = b""
        while chunk := os.read(self.stdout_r, 65536):
            data += chunk
        return data.decode().splitlines()

    def close(self) -> None:
        for fd in list(self._open):
            self._close(fd)
        if self.session is not None:
            self.session.close()


@pytest.fixture
def pipes():
    made: list[Pipes] = []

    def make(replies: list[str], **kw) -> Pipes:
        made.append(Pipes(replies, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_environment_takes_args_from_argv_not_agi_arg():
    env = classic_environment({"agi_request": "/x/callvault-agi", "agi_arg_1": "consent",
                               "agi_arg_2": "27215550100", "agi_uniqueid": "1.2"}, ["27215550100"])
    assert env.args == ("27215550100",) and env.uniqueid == "1.2"
    assert env.request == "/x/callvault-agi"


async def test_variables_quoting_and_replies(pipes):
    p = pipes(["200 result=1 (1795329357.0)", "200 result=0", "200 result=1 (hangup)",
               "200 result=1", "200 result=0 endpos=3404", "200 result=1", "200 result=1 (timeout)",
               "200 result= (timeout)"])
    s = p.open()
    assert s.env.args == ("27215550100",) and s.env.callerid == "27215550123"
    assert await s.get_variable("CHANNEL(linkedid)") == "1795329357.0"
    assert await s.get_variable("UNSET") is None
    assert await s.get_full_variable("${X}") == "hangup"  # a value, as pyst2 reads it
    await s.set_variable("X", 'a "b" \\c')
    assert await s.stream_file("beep", "12") == (None, 3404)
    assert await s.get_data("beep", 4000, 1) == ("1", False)
    assert await s.get_data("beep", 4000, 1) == ("1", True)
    assert await s.get_data("beep", 4000, 1) == ("", True)
    assert p.sent() == ['GET VARIABLE "CHANNEL(linkedid)"', 'GET VARIABLE "UNSET"',
                        'GET FULL VARIABLE "${X}"', 'SET VARIABLE "X" "a \\"b\\" \\\\c"',
                        'STREAM FILE "beep" "12"', 'GET DATA "beep" 4000 1',
                        'GET DATA "beep" 4000 1', 'GET DATA "beep" 4000 1']


async def test_missing_sound_is_a_failure_not_a_hangup(pipes):
    p = pipes(["200 result=-1 endpos=0", "200 result=6"])
    s = p.open()
    with pytest.raises(CommandFailed):
        await s.stream_file("no-such-file")
    assert p.sent() == ['STREAM FILE "no-such-file" ""', "CHANNEL STATUS"]


@pytest.mark.parametrize("probe", ["511 Command Not Permitted on a dead channel or intercept routine",
                                   "200 result=-1"])
async def test_hangup_during_playback_is_told_apart_by_the_probe(pipes, probe):
    p = pipes(["200 result=-1", probe, "200 result=1"])
    s = p.open()
    with pytest.raises(AgiHangup):
        await s.get_data("beep", 4000, 1)
    assert s.hung_up
    await s.set_variable("CALLVAULT_RECORD", "no")  # allowed on a dead channel


async def test_sighup_is_remembered_and_commands_still_go_out(pipes):
    p = pipes(["200 result=1", "200 result=-1"])
    s = p.open()
    os.kill(os.getpid(), signal.SIGHUP)
    assert s.hung_up
    await s.set_variable("CALLVAULT_RECORD", "no")
    with pytest.raises(AgiHangup):
        await s.exec("MixMonitor", "x.wav")
    assert p.sent() == ['SET VARIABLE "CALLVAULT_RECORD" "no"', 'EXEC "MixMonitor" "x.wav"']


async def test_session_gives_sighup_back_on_close(pipes):
    before = signal.getsignal(signal.SIGHUP)
    p = pipes([])
    s = p.open()
    assert signal.getsignal(signal.SIGHUP) != before
    s.close()
    assert signal.getsignal(signal.SIGHUP) == before


async def test_rejections_and_interim_lines(pipes):
    p = pipes(["510 Invalid or unknown command",
               "520-Invalid command syntax.  Proper usage follows:", "Usage: GET DATA", "520 End of proper usage.",
               "100 result=0 Trying...", "200 result=0 Gosub complete",
               "200 result=-2", "503 result=-2 Memory allocation failure",
               "HANGUP", "200 result=1"])
    s = p.open()
    with pytest.raises(CommandFailed, match="510"):
        await s.verbose("x")
    with pytest.raises(CommandFailed, match="520"):
        await s.get_data("beep", 1, 1)
    assert await s.exec("Gosub", "x,s,1") == 0
    with pytest.raises(CommandFailed, match="no such application"):
        await s.exec("NoSuchApp")
    with pytest.raises(CommandFailed, match="503"):
        await s.answer()
    await s.set_variable("A", "b")
    assert s.hung_up


async def test_end_of_stdin_is_a_hangup(pipes):
    s = pipes([]).open()
    with pytest.raises(AgiHangup):
        await s.get_variable("X")


async def test_timeout_and_garbage_leave_the_session_broken(pipes):
    s = pipes([], eof=False).open(read_timeout=0.05)
    with pytest.raises(AgiTimeout):
        await s.get_variable("X")
    assert s.broken and not s.usable
    with pytest.raises(LocalProtocolError):
        await s.set_variable("X", "y")
    s2 = pipes(["garbage"]).open()
    with pytest.raises(ProtocolError):
        await s2.get_variable("X")
    assert s2.broken


def test_no_environment_block(pipes):
    with pytest.raises(AgiHangup):
        pipes([], env=b"").open()


def test_argv():
    os.environ.pop("CALLVAULT_CONFIG", None)
    assert parse_argv(["consent", "27215550100"]) == ("/etc/callvault/callvault.toml", "consent",
                                                      ["27215550100"])
    assert parse_argv(["-c", "/x.toml", "consent", "-"]) == ("/x.toml", "consent", ["-"])
    assert parse_argv(["--config=/y.toml", "status"]) == ("/y.toml", "status", [])
    for bad in ([], ["-c"], ["-c", "/x.toml"], [""]):
        with pytest.raises(UsageError):
            parse_argv(bad)


def test_hmac_key_is_created_once(tmp_path):
    key = load_hmac_key(tmp_path / "k" / "hmac.key")
    assert len(key) == 32 and load_hmac_key(tmp_path / "k" / "hmac.key") == key
    assert (tmp_path / "k" / "hmac.key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["hmac.key"]


def _stage(sounds: Path, stage: str, names: list[str]) -> None:
    """An installed set as `prompts install` leaves it: files and their manifest."""
    (sounds / stage / "en").mkdir(parents=True)
    records = []
    for n in names:
        (sounds / stage / "en" / f"{n}.wav").write_bytes(b"RIFF" + n.encode())
        records.append(file_record("en", n, "wav", b"RIFF" + n.encode(), "generated", "text-sha256:00"))
    (sounds / stage / MANIFEST_NAME).write_bytes(manifest_bytes(records, "2025-01-01T00:00:00+00:00"))


def test_prompt_resolver_follows_installs(tmp_path):
    sounds = tmp_path / "sounds"
    _stage(sounds, "stage1", ["notice-opt-in"])
    _stage(sounds, "stage2", [])
    prompt = prompt_resolver(sounds)
    assert prompt("en", "notice-opt-in") is None  # nothing installed yet: no stand-in
    (sounds / "callvault").symlink_to("stage1")
    found = prompt("af", "notice-opt-in")
    assert (found.sound, found.language) == ("callvault/en/notice-opt-in", "en")
    assert found.sha256 == {"wav": hashlib.sha256(b"RIFFnotice-opt-in").hexdigest()}
    (sounds / "link").symlink_to("stage2")
    os.replace(sounds / "link", sounds / "callvault")  # how an install swaps
    assert prompt("en", "notice-opt-in") is None
    (sounds / "callvault").unlink()
    (sounds / "callvault" / "en").mkdir(parents=True)  # made by hand, no manifest: not installed
    (sounds / "callvault" / "en" / "notice-opt-in.wav").write_bytes(b"RIFF")
    assert prompt("en", "notice-opt-in") is None


def test_prompt_resolver_on_an_event_loop_reads_the_link_only_after_the_directory_changed(tmp_path, monkeypatch):
    sounds = tmp_path / "sounds"
    _stage(sounds, "stage1", ["notice-opt-in"])
    _stage(sounds, "stage2", [])
    (sounds / "callvault").symlink_to("stage1")
    reads = []
    readlink = os.readlink
    monkeypatch.setattr(os, "readlink", lambda p: reads.append(p) or readlink(p))

    async def turns() -> None:
        link_watch = watch(sounds, asyncio.get_running_loop())
        prompt = prompt_resolver(sounds, link_watch=link_watch)
        assert prompt("en", "notice-opt-in").sound == "callvault/en/notice-opt-in"
        await asyncio.sleep(0)
        for _ in range(3):
            assert prompt("en", "notice-opt-in") is not None
            await asyncio.sleep(0)
        assert len(reads) == 1  # the first lookup only
        (sounds / "link").symlink_to("stage2")
        os.replace(sounds / "link", sounds / "callvault")  # how an install swaps
        await asyncio.sleep(0.01)  # the loop reads the watch before the next turn's tasks
        assert prompt("en", "notice-opt-in") is None and len(reads) == 2
        (sounds / "callvault").unlink()  # removed by hand
        await asyncio.sleep(0.01)
        assert prompt("en", "notice-opt-in") is None and len(reads) == 3
        (sounds / "callvault").symlink_to("stage1")
        await asyncio.sleep(0.01)
        assert prompt("en", "notice-opt-in") is not None and len(reads) == 4
        assert prompt("en", "notice-opt-in") is not None and len(reads) == 4
        assert await asyncio.to_thread(prompt, "en", "notice-opt-in") is not None
        assert len(reads) == 5  # another thread: read every time
        # The directory itself moved away and a new one in its place: the watch would
        # follow the old one, so it gives up and every lookup reads the link.
        os.rename(sounds, tmp_path / "sounds-old")
        _stage(sounds, "stage3", [])
        (sounds / "callvault").symlink_to("stage3")
        await asyncio.sleep(0.01)
        assert link_watch.broken
        assert prompt("en", "notice-opt-in") is None and len(reads) == 6
        assert prompt("en", "notice-opt-in") is None and len(reads) == 7
        link_watch.close()  # closing twice is harmless

    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # serve's loop
        runner.run(turns())


# -- the entry point as a process -----------------------------------------------------


def answer(command: str) -> str:
    """What Asterisk 22 answers (captures/agi-fastagi-session.txt) on a live channel."""
    if command.startswith('GET VARIABLE "CHANNEL(linkedid)"'):
        return "200 result=1 (1795329357.0)"
    for prefix, reply in (("GET DATA", "200 result=1"), ("STREAM FILE", "200 result=0 endpos=3404"),
                          ("EXEC", "200 result=0"), ("SET VARIABLE", "200 result=1"),
                          ("CHANNEL STATUS", "200 result=6")):
        if command.startswith(prefix):
            return reply
    return "510 Invalid or unknown command"


def converse(argv: list[str], env: dict[str, str], *,
             python_options: tuple[str, ...] = ()) -> tuple[list[str], int, str]:
    # PYTHONPATH passes on, so the script runs the code under test.
    inherited = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
    cmd = [sys.executable, *python_options, str(SCRIPT)] if python_options else [str(SCRIPT)]
    proc = subprocess.Popen([*cmd, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**inherited, **env})
    proc.stdin.write(ENV)
    proc.stdin.flush()
    sent = []
    for line in proc.stdout:
        sent.append(line.decode().rstrip("\n"))
        proc.stdin.write(answer(sent[-1]).encode() + b"\n")
        proc.stdin.flush()
    proc.stdin.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.stdout.close()
    return sent, proc.wait(), err


def write_config(d: Path, *, spool_dir: str, spool_inside: str = "", sounds: str,
                 rules: list[dict] = ()) -> Path:
    lines = [f'[ami]\nsecret = "unused"\n[database]\nurl = "sqlite:///{d / "callvault.db"}"\n'
             f'[spool]\ndir = "{spool_dir}"\nasterisk_dir = "{spool_inside}"\n'
             f'[privacy]\nhmac_key_file = "{d / "hmac.key"}"\n'
             f'[prompts]\nsounds_dir = "{sounds}"\nlibrary = "{d / "prompts"}"\n']
    for rule in rules:
        lines.append("[[consent.rules]]\n" + "".join(
            f"{k} = {v!r}\n".replace("'", '"') for k, v in rule.items()))
    path = d / "callvault.toml"
    path.write_text("".join(lines))
    return path


def test_entry_point_runs_the_consent_flow_and_writes_the_ledger(tmp_path):
    _stage(tmp_path / "sounds", ".callvault-1", ["notice-opt-in", "will-record"])
    (tmp_path / "sounds" / "callvault").symlink_to(".callvault-1")
    config = write_config(tmp_path, spool_dir=str(tmp_path / "spool"), sounds=str(tmp_path / "sounds"))
    sent, rc, err = converse(["consent", "27215550100"], {"CALLVAULT_CONFIG": str(config)})
    assert rc == 0 and err == ""
    assert sent[:2] == ['GET VARIABLE "CHANNEL(linkedid)"', 'GET DATA "callvault/en/notice-opt-in" 5000 1']
    assert sent[2].startswith('EXEC "MixMonitor"')
    assert sent[3].startswith('EXEC "MSet" "CALLVAULT_RECORDING_ID=r') and sent[3].endswith(',CALLVAULT_RECORD=yes"')
    db = open_database(f"sqlite:///{tmp_path / 'callvault.db'}")
    try:
        [entry] = Ledger(db).find(kind="consent")
        assert entry.data["outcome"] == "granted" and entry.data["did"] == "27215550100"
        assert entry.data["notice_sha256"] == {"wav": hashlib.sha256(b"RIFFnotice-opt-in").hexdigest()}
        assert entry.call_id == "1795329357.0"
        assert Catalog(db).get(entry.recording_id).spool_path.startswith(str(tmp_path / "spool"))
    finally:
        db.close()


# One process per call: none of these may load on the consent path (asyncio alone was
# a third of a call's CPU; the rest belong to FastAGI, AMI, the archiver, prompt
# building, the other routes, anchors, and mistakes in a config file). Packages by
# their top-level name, modules by their full name.
NOT_ON_THE_CLASSIC_PATH = ("asyncio", "concurrent.futures", "ssl", "socket", "logging.handlers",
                           "importlib.resources", "panoramisk", "cryptography", "boto3", "botocore",
                           "aiohttp", "pydub", "archiver", "storage.age", "storage.groupcommit",
                           "agi.controls", "agi.dialplan", "agi.handlers.callee", "agi.handlers.pci",
                           "agi.handlers.revoke", "agi.handlers.status", "storage.anchors",
                           "storage.blobstore", "storage.control_entries", "difflib", "secrets", "random")


def test_entry_point_imports_only_what_the_classic_path_needs(tmp_path):
    _stage(tmp_path / "sounds", ".callvault-1", ["notice-opt-in", "will-record"])
    (tmp_path / "sounds" / "callvault").symlink_to(".callvault-1")
    config = write_config(tmp_path, spool_dir=str(tmp_path / "spool"), sounds=str(tmp_path / "sounds"))
    load_hmac_key(tmp_path / "hmac.key")  # made once, at the first call (secrets): not every call's cost
    sent, rc, err = converse(["consent", "27215550100"], {"CALLVAULT_CONFIG": str(config)},
                             python_options=("-X", "importtime"))
    assert rc == 0 and sent[3].endswith(",CALLVAULT_RECORD=yes\"")  # the whole flow ran (EXEC MSet)
    imported = {line.rsplit("|", 1)[1].strip() for line in err.splitlines() if line.startswith("import time:")}
    assert {"storage.ledger", "storage.catalog", "agi.handlers.consent"} <= imported
    loaded = sorted(m for m in imported
                    if any(m == name or m.startswith(name + ".") for name in NOT_ON_THE_CLASSIC_PATH))
    assert loaded == []
    # A dataclass costs 0.3-1.6 ms of CPU to create: callvault's modules on the path
    # define none (their value types are storage.record.Record classes).
    ours = sorted(m for m in imported if m.split(".")[0] in ("agi", "storage", "appliance", "announcements"))
    made = [f"{m}.{name}" for m in ours for name, v in vars(importlib.import_module(m)).items()
            if isinstance(v, type) and v.__module__ == m and dataclasses.is_dataclass(v)]
    assert len(ours) > 20 and made == []


@pytest.mark.parametrize("argv", [["-c", "/nonexistent/callvault.toml", "consent"], ["nosuch"], []])
def test_entry_point_fails_closed_and_exits_0(tmp_path, argv):
    config = write_config(tmp_path, spool_dir=str(tmp_path), sounds=str(tmp_path))
    sent, rc, err = converse(argv, {"CALLVAULT_CONFIG": str(config)})
    assert rc == 0
    assert sent == ['SET VARIABLE "CALLVAULT_RECORD" "no"', 'SET VARIABLE "CALLVAULT_CONSENT" "error"']
    assert len(err.splitlines()) == 1 and "failed closed" in err
    assert "27215550123" not in err and "Test Caller" not in err


def test_lab_mounts_refuse_system_directories(tmp_path):
    with pytest.raises(ClassicAgiError):
        _plan(tmp_path / "root", [Path("/tmp")])
    with pytest.raises(ClassicAgiError):
        _plan(tmp_path, [tmp_path / "inside"])


# -- through the real Asterisk --------------------------------------------------------


async def add_dialplan(ami, context: str, extensions: dict[str, list[tuple[str, str]]]) -> None:
    """Add a context at run time (AMI DialplanExtensionAdd): no lab file is edited."""
    for exten, steps in extensions.items():
        for priority, (app, data) in enumerate(steps, 1):
            await ami.action("DialplanExtensionAdd", Context=context, Extension=exten,
                             Priority=str(priority), Application=app, ApplicationData=data)


async def remove_dialplan(ami, context: str, extensions) -> None:
    for exten in extensions:
        await ami.action("DialplanExtensionRemove", Context=context, Extension=exten)


BAD_CONFIG_DID = "9999"


@pytest.fixture
async def classic_lab(lab_state, ami, tmp_path):
    """The classic entry point inside the lab root, and a context that runs it."""
    # The script runs where Asterisk runs: the prompts as the chroot sees them.
    sounds = AsteriskPaths(Path(lab_state.root), lab_state.name).data_inside + "/sounds"
    config = write_config(tmp_path, spool_dir=lab_state.spool_host,
                          spool_inside=lab_state.spool_inside, sounds=sounds, rules=[OPT_IN])
    with classic_agi(Path(lab_state.root), config=config, data_dirs=[tmp_path]) as agi:
        context = agi.script
        talk = f"{context}-talk"

        def inbound(agi_args: str) -> list[tuple[str, str]]:
            return [("Answer", ""), ("Set", "CALLVAULT_CONSENT=error"), ("Set", "CALLVAULT_RECORD=no"),
                    ("AGI", f"{agi.script},{agi_args}"),
                    ("UserEvent", "CallvaultLabAfterAgi,Consent: ${CALLVAULT_CONSENT},"
                                  "Record: ${CALLVAULT_RECORD}"),
                    ("Goto", f"{talk},s,1")]

        dialplan = {
            (context, "_X."): inbound("consent,${EXTEN}"),
            (context, BAD_CONFIG_DID): inbound("-c,/nonexistent/callvault.toml,consent,${EXTEN}"),
            (talk, "s"): [("Playtones", "440"), ("WaitExten", "3600")],
            (talk, "0"): [("AGI", f"{agi.script},revoke"),
                          ("UserEvent", "CallvaultLabAfterRevoke,Consent: ${CALLVAULT_CONSENT},"
                                        "Record: ${CALLVAULT_RECORD}"),
                          ("Goto", "s,1")],
        }
        try:
            for (ctx, exten), steps in dialplan.items():
                await add_dialplan(ami, ctx, {exten: steps})
            yield agi, CallDriver(ami, context=context), tmp_path
        finally:
            for ctx, exten in dialplan:
                await remove_dialplan(ami, ctx, [exten])


def ledger_entries(tmp_path: Path, kind: str, **filters):
    db = open_database(f"sqlite:///{tmp_path / 'callvault.db'}")
    try:
        return Ledger(db).find(kind=kind, **filters), db
    except BaseException:
        db.close()
        raise


async def press_1_and_record(ami, calls):
    """Place a call, press 1 at the notice; return it with its AGI outcome once MixMonitor runs."""
    call = calls.new_call()
    async with after_agi(ami, call) as done, mixmonitor_started(ami, call) as mixmon:
        async with calls.agi_command(call, "GET DATA") as asked:
            await calls.place(call)
            await asyncio.wait_for(asked, 15)
            await calls.send_dtmf(call, "1")
        event = await asyncio.wait_for(done, 20)
        await asyncio.wait_for(mixmon, 5)
    return call, event


@pytest.mark.asterisk
async def test_classic_agi_press_1_grants_and_records(classic_lab, ami, lab_state):
    agi, calls, data = classic_lab
    assert agi.glibc.startswith("glibc ")
    call, event = await press_1_and_record(ami, calls)
    assert (event.get("Consent"), event.get("Record")) == ("granted", "yes")
    entries, db = ledger_entries(data, "consent")
    try:
        [entry] = [e for e in entries if e.data["uniqueid"] == call.callee_uniqueid]
        body = entry.data
        assert body["outcome"] == "granted" and body["digits"] == "1" and body["rule"] == "za-opt-in"
        assert body["did"] == call.did and entry.call_id == call.caller_uniqueid
        assert "27215550123" not in entry.body
        rec = Catalog(db).get(body["recording_id"])
        assert rec.spool_path == f"{lab_state.spool_host}/{body['recording_id']}.wav"
    finally:
        db.close()
    async with calls.hangup_of(call) as gone:
        await calls.hangup(call)
        await asyncio.wait_for(gone, 10)
    wav = Path(lab_state.spool_host) / f"{body['recording_id']}.wav"
    await wait_path(Path(str(wav) + ".done"))
    assert wav.stat().st_size > 44


@pytest.mark.asterisk
async def test_classic_agi_revoke_stops_mixmonitor_on_its_own_channel(classic_lab, ami):
    agi, calls, data = classic_lab
    call, _ = await press_1_and_record(ami, calls)
    async with mixmonitor_stopped(ami, call) as stopped, after_revoke(ami, call) as revoked:
        await calls.send_dtmf(call, "0")
        await asyncio.wait_for(stopped, 15)
        after = await asyncio.wait_for(revoked, 15)
    assert (after.get("Consent"), after.get("Record")) == ("revoked", "no")
    entries, db = ledger_entries(data, "revoke", call_id=call.caller_uniqueid)
    try:
        [entry] = entries
        [rec] = Catalog(db).by_linkedid(call.caller_uniqueid)
        assert entry.data["recording_ids"] == entry.data["stopped"] == [rec.recording_id]
        assert rec.erase_requested == 1 and rec.consent_state == "revoked"
    finally:
        db.close()
    async with calls.hangup_of(call) as gone:
        await calls.hangup(call)
        await asyncio.wait_for(gone, 10)


@pytest.mark.asterisk
async def test_classic_agi_fails_closed_on_a_bad_config(classic_lab, ami):
    agi, calls, data = classic_lab
    call = calls.new_call(did=BAD_CONFIG_DID)
    async with after_agi(ami, call) as done, mixmonitor_started(ami, call) as mixmon:
        await calls.place(call)
        event = await asyncio.wait_for(done, 20)
        await asyncio.sleep(0)  # let a MixMonitorStart raised just before arrive
        assert not mixmon.done()
    assert (event.get("Consent"), event.get("Record")) == ("error", "no")
    async with calls.hangup_of(call) as gone:
        await calls.hangup(call)
        await asyncio.wait_for(gone, 10)
