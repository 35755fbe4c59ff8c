"""The sans-I/O AGI machine: a bytes -> events table, every case also fed whole, one
byte at a time and split at random points, cut short by end of stream, plus a
replay of a real Asterisk 22 FastAGI session."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi.errors import LocalProtocolError, ProtocolError
from agi.events import NEED_DATA, Closed, Environment, Hangup, Response
from agi.protocol import (
    MAX_COMMAND_BYTES,
    MAX_LINE,
    AgiConnection,
    State,
    build_command,
    quote,
    verb_of,
)

CAPTURE = Path(__file__).parent / "captures" / "agi-fastagi-session.txt"

ENV = b"agi_network_script: consent?lang=en\nagi_uniqueid: 1.1\nagi_accountcode: \n\n"
ENV_EVENT = Environment({"agi_network_script": "consent?lang=en", "agi_uniqueid": "1.1",
                         "agi_accountcode": ""})


def R(code: int, result: int | None = None, raw: str = "", **kw) -> Response:
    return Response(code=code, result=result, raw_result=raw, **kw)


def drive(chunks: list[bytes], commands: list[str], eof: bool = True):
    """Feed chunks, pull events, send the next command after the environment and after
    each reply (as a client would). Returns (events, wire bytes sent, error or None)."""
    conn = AgiConnection()
    events: list[object] = []
    sent: list[bytes] = []
    todo = list(commands)

    def pump() -> None:
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            events.append(event)
            if isinstance(event, Closed):
                return
            if isinstance(event, (Environment, Response)) and todo:
                sent.append(conn.send_command(todo.pop(0)))

    try:
        for chunk in chunks:
            if not chunk:
                continue  # b"" would mean end of stream
            conn.receive_data(chunk)
            pump()
        if eof:
            conn.receive_data(b"")
            pump()
    except ProtocolError as exc:
        return events, sent, exc
    return events, sent, None


# (id, bytes from Asterisk, our commands, expected events, expected error)
CASES = [
    ("eof-before-anything", b"", [], [Closed()], None),
    ("env-only", ENV, [], [ENV_EVENT, Closed()], None),
    ("env-crlf", ENV.replace(b"\n", b"\r\n"), [], [ENV_EVENT, Closed()], None),
    ("simple-200", ENV + b"200 result=1\n", ["ANSWER"], [ENV_EVENT, R(200, 1, "1"), Closed()], None),
    ("data-in-parens", ENV + b"200 result=1 (en)\n", ["GET VARIABLE X"],
     [ENV_EVENT, R(200, 1, "1", data="en"), Closed()], None),
    ("parens-inside-data", ENV + b"200 result=1 (a (b) c) d)\n", ["GET VARIABLE X"],
     [ENV_EVENT, R(200, 1, "1", data="a (b) c) d"), Closed()], None),
    ("endpos", ENV + b"200 result=0 endpos=3404\n", ["STREAM FILE beep \"\""],
     [ENV_EVENT, R(200, 0, "0", fields={"endpos": "3404"}), Closed()], None),
    ("data-then-fields", ENV + b"200 result=1 (digit) digit=1 endpos=1234\n", ["X"],
     [ENV_EVENT, R(200, 1, "1", data="digit", fields={"digit": "1", "endpos": "1234"}), Closed()], None),
    ("get-data-timeout-empty", ENV + b"200 result= (timeout)\n", ["GET DATA beep 4000 1"],
     [ENV_EVENT, R(200, None, "", data="timeout"), Closed()], None),
    ("get-data-star-digits", ENV + b"200 result=*01\n", ["GET DATA beep 4000 3"],
     [ENV_EVENT, R(200, None, "*01"), Closed()], None),
    ("missing-file", ENV + b"200 result=-1 endpos=0\n", ["STREAM FILE nope \"\""],
     [ENV_EVENT, R(200, -1, "-1", fields={"endpos": "0"}), Closed()], None),
    ("trying-then-final", ENV + b"100 result=0 Trying...\n200 result=0 Gosub complete\n",
     ["EXEC Gosub x,s,1"], [ENV_EVENT, R(200, 0, "0", text="Gosub complete"), Closed()], None),
    ("510", ENV + b"510 Invalid or unknown command\n", ["NOSUCHCOMMAND foo"],
     [ENV_EVENT, R(510, text="Invalid or unknown command"), Closed()], None),
    ("511", ENV + b"511 Command Not Permitted on a dead channel or intercept routine\n", ["ANSWER"],
     [ENV_EVENT, R(511, text="Command Not Permitted on a dead channel or intercept routine"), Closed()],
     None),
    ("503", ENV + b"503 result=-2 Memory allocation failure\n", ["X"],
     [ENV_EVENT, R(503, text="result=-2 Memory allocation failure"), Closed()], None),
    ("520-single", ENV + b"520 Invalid command syntax.  Proper usage not available.\n", ["X"],
     [ENV_EVENT, R(520, text="Invalid command syntax.  Proper usage not available."), Closed()], None),
    ("520-usage-block",
     ENV + b"520-Invalid command syntax.  Proper usage follows:\n Usage: DATABASE DEL <family> <key>\n"
     b"\n 200 result=1\n520 End of proper usage.\n200 result=1\n", ["DATABASE DEL", "ANSWER"],
     [ENV_EVENT, R(520, text="End of proper usage.",
                   usage=(" Usage: DATABASE DEL <family> <key>", "", " 200 result=1")),
      R(200, 1, "1"), Closed()], None),
    ("hangup-before-reply", ENV + b"HANGUP\n200 result=-1\n200 result=1\n", ["GET DATA b 1 1", "SET VARIABLE A b"],
     [ENV_EVENT, Hangup(), R(200, -1, "-1"), R(200, 1, "1"), Closed()], None),
    ("hangup-while-idle", ENV + b"200 result=0\nHANGUP\n", ["ANSWER"],
     [ENV_EVENT, R(200, 0, "0"), Hangup(), Closed()], None),
    ("hangup-right-after-env", ENV + b"HANGUP\n511 Command Not Permitted on a dead channel\n",
     ["STREAM FILE a \"\""], [ENV_EVENT, Hangup(), R(511, text="Command Not Permitted on a dead channel"),
                             Closed()], None),
    ("non-utf8-caller-name", b"agi_calleridname: Jos\xe9\n\n", [],
     [Environment({"agi_calleridname": "Jos\ufffd"}), Closed()], None),
    # --- remote misbehaviour ---
    ("unknown-code", ENV + b"299 result=1\n", ["X"], [ENV_EVENT], ProtocolError),
    ("not-a-reply", ENV + b"hello there\n", ["X"], [ENV_EVENT], ProtocolError),
    ("200-without-result", ENV + b"200 ok\n", ["X"], [ENV_EVENT], ProtocolError),
    ("unbalanced-paren", ENV + b"200 result=1 (abc endpos=1\n", ["X"], [ENV_EVENT], ProtocolError),
    ("continuation-not-520", ENV + b"200-result=1\n", ["X"], [ENV_EVENT], ProtocolError),
    ("unsolicited-reply", ENV + b"200 result=1\n", [], [ENV_EVENT], ProtocolError),
    ("binary-junk", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 20, [], [], ProtocolError),
    ("http-request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", [], [], ProtocolError),
    ("junk-mid-env", b"agi_uniqueid: 1.1\nhello: world\n\n", [], [], ProtocolError),
    ("env-line-without-colon", b"agi_uniqueid 1.1\n\n", [], [], ProtocolError),
    ("duplicate-env-key", b"agi_uniqueid: 1\nagi_uniqueid: 2\n\n", [], [], ProtocolError),
    ("empty-env-block", b"\n", [], [], ProtocolError),
    ("nul-in-env", b"agi_uniqueid: 1\x00\n\n", [], [], ProtocolError),
    ("line-too-long", ENV + b"200 result=1 (" + b"x" * MAX_LINE + b")\n", ["X"], [ENV_EVENT], ProtocolError),
    ("env-too-large", b"".join(b"agi_v%d: %s\n" % (i, b"x" * 500) for i in range(150)) + b"\n", [], [],
     ProtocolError),
    ("env-too-many-lines", b"".join(b"agi_v%d: x\n" % i for i in range(201)) + b"\n", [], [], ProtocolError),
    ("usage-block-too-long", ENV + b"520-Invalid\n" + b"x\n" * 300 + b"520 End\n", ["X"], [ENV_EVENT],
     ProtocolError),
    ("eof-mid-line", ENV + b"200 resu", ["X"], [ENV_EVENT], ProtocolError),
    ("eof-in-env", b"agi_uniqueid: 1.1\n", [], [], ProtocolError),
    ("eof-in-usage-block", ENV + b"520-Invalid\n usage\n", ["X"], [ENV_EVENT], ProtocolError),
]
IDS = [c[0] for c in CASES]


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6)))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def check(result, events, error) -> None:
    got_events, _sent, got_error = result
    assert got_events == events
    if error is None:
        assert got_error is None
    else:
        assert isinstance(got_error, error)


@pytest.mark.parametrize("name,data,commands,events,error", CASES, ids=IDS)
def test_table_whole(name, data, commands, events, error):
    check(drive([data], commands), events, error)


@pytest.mark.parametrize("name,data,commands,events,error", CASES, ids=IDS)
def test_table_one_byte_at_a_time(name, data, commands, events, error):
    check(drive([data[i:i + 1] for i in range(len(data))], commands), events, error)


@pytest.mark.parametrize("name,data,commands,events,error", CASES, ids=IDS)
def test_table_random_splits(name, data, commands, events, error):
    rng = random.Random(f"agi-{name}")
    for _ in range(30):
        check(drive(splits(data, rng), commands), events, error)


@pytest.mark.parametrize("name,data,commands,events,error",
                         [c for c in CASES if c[4] is None], ids=[c[0] for c in CASES if c[4] is None])
def test_end_of_stream_anywhere(name, data, commands, events, error):
    """Cut short at every point: a prefix of the events, then Closed at a message
    boundary or ProtocolError; never a wrong event and never a hang."""
    full = events[:-1]
    for cut in range(len(data)):
        got, _sent, exc = drive([data[:cut]], commands)
        if exc is None:
            assert got[-1] == Closed() and got[:-1] == full[:len(got) - 1], cut
        else:
            assert isinstance(exc, ProtocolError)
            assert got == full[:len(got)], cut
        if cut and data[cut - 1:cut] != b"\n":
            assert exc is not None, f"EOF mid-line at {cut} was accepted"


def test_junk_is_refused_before_a_newline_arrives():
    conn = AgiConnection()
    conn.receive_data(b"\x16\x03")
    with pytest.raises(ProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(ProtocolError):
        conn.next_event()


def test_error_messages_do_not_quote_received_bytes():
    secret = b"27215550123"
    for data in (b"agi_x: 1\n" + secret + b"\n\n", ENV + b"200 result=1 (" + secret + b"\n"):
        _events, _sent, exc = drive([data], ["X"])
        assert exc is not None and secret.decode() not in str(exc)


# --- our side -------------------------------------------------------------------

def test_commands_only_after_the_environment_and_one_at_a_time():
    conn = AgiConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_command("ANSWER")
    conn.receive_data(ENV)
    assert conn.next_event() == ENV_EVENT
    assert conn.send_command("ANSWER") == b"ANSWER\n"
    with pytest.raises(LocalProtocolError):
        conn.send_command("ANSWER")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"200 result=0\n")
    assert conn.next_event() == R(200, 0, "0")
    conn.receive_data(b"")
    assert conn.next_event() == Closed()
    assert conn.next_event() == Closed()
    with pytest.raises(LocalProtocolError):
        conn.send_command("ANSWER")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")


@pytest.mark.parametrize("bad", ["", " ANSWER", "ANSWER\n", "SET VARIABLE A \"b\r\"", "A\0",
                                 "VERBOSE " + "x" * MAX_COMMAND_BYTES])
def test_bad_command_lines_are_refused(bad):
    conn = AgiConnection()
    conn.receive_data(ENV)
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_command(bad)
    assert conn.can_send


def test_build_command():
    assert build_command("ANSWER") == "ANSWER"
    assert build_command("STREAM FILE", "beep", "12") == 'STREAM FILE "beep" "12"'
    assert build_command("GET DATA", "beep", 4000, 1) == 'GET DATA "beep" 4000 1'
    assert build_command("SET VARIABLE", "A", 'say "hi" \\o/') == r'SET VARIABLE "A" "say \"hi\" \\o/"'
    for bad in (("get data", "x"), ("ANSWER;", ), ("SET VARIABLE", "a\nANSWER"), ("VERBOSE", True),
                ("VERBOSE", 1.5)):
        with pytest.raises(LocalProtocolError):
            build_command(*bad)
    assert verb_of('SET VARIABLE "CALLVAULT_CONSENT" "x"') == "SET VARIABLE"
    assert verb_of("GET FULL VARIABLE ${CALLERID(num)}") == "GET FULL VARIABLE"


def asterisk_parse_args(line: str) -> list[str]:
    """res_agi.c parse_args(), transcribed: how Asterisk splits a command line."""
    argv: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                argv.append("")
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            argv.append("")
            whitespace = False
        argv[-1] += ch
        escaped = False
    return argv


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n\0",
                                               blacklist_categories=("Cs",))), max_size=5))
def test_quoted_arguments_reach_asterisk_unchanged(args):
    assert asterisk_parse_args(build_command("EXEC", *args)) == ["EXEC", *args]


def test_quote_refuses_line_breaks():
    for bad in ("a\nb", "a\rb", "a\0b"):
        with pytest.raises(LocalProtocolError):
            quote(bad)


# --- the environment --------------------------------------------------------------

def test_environment_helpers():
    env = Environment({
        "agi_network_script": "/consent/?lang=en&did=%2B2721&lang=af",
        **{f"agi_arg_{i}": f"a{i}" for i in (2, 10, 1, 3, 4, 5, 6, 7, 8, 9, 11)},
        "agi_uniqueid": "9.9", "agi_extension": "100",
    })
    assert env.script == "/consent/"
    assert env.route == "consent/"
    assert env.query == {"lang": "af", "did": "+2721"}
    assert env.args == tuple(f"a{i}" for i in range(1, 12))
    assert (env.uniqueid, env.extension, env.get("extension"), env.get("agi_dnid")) == ("9.9", "100", "100", "")
    classic = Environment({"agi_request": "agi://10.0.0.1:4573/status?x=1"})
    assert (classic.route, classic.query) == ("status", {"x": "1"})


@pytest.mark.parametrize(("args", "expected"), [
    ({}, ()),
    ({"agi_arg_1": "a", "agi_arg_2": ""}, ("a", "")),
    ({"agi_arg_1": "a", "agi_arg_3": "c"}, ("a", "c")),  # a gap: numeric order all the same
    ({"agi_arg_2": "b"}, ("b",)),
    ({"agi_arg_1": "a", "agi_arg_01": "x", "agi_arg_0": "y", "agi_arg_x": "z"}, ("a",)),  # not arguments
])
def test_environment_arguments_in_numeric_order_whatever_the_keys(args, expected):
    assert Environment({"agi_uniqueid": "1.1", **args}).args == expected


# --- a real session ----------------------------------------------------------------

def load_capture() -> tuple[bytes, list[str], list[str]]:
    """(bytes Asterisk sent, our command lines, Asterisk's reply lines) from the capture."""
    from_asterisk, ours, replies = bytearray(), [], []
    in_env = True
    for line in CAPTURE.read_text().splitlines():
        direction, text = line[:3], line[3:]
        if direction == "<< ":
            from_asterisk += text.encode() + b"\n"
            if not in_env:
                replies.append(text)
            in_env = in_env and text != ""
        elif direction == ">> ":
            ours.append(text)
        else:
            raise AssertionError(f"unexpected capture line {line!r}")
    return bytes(from_asterisk), ours, replies


def test_replay_real_asterisk_session():
    data, ours, replies = load_capture()
    assert len(ours) == len(replies) == 10
    rng = random.Random("capture")
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))], splits(data, rng)):
        events, sent, exc = drive(chunks, ours)
        assert exc is None
        assert sent == [c.encode() + b"\n" for c in ours]
        env, *responses, closed = events
        assert closed == Closed()
        assert isinstance(env, Environment)
        assert (env.script, env.route, env.query) == ("consent", "consent", {"lang": "en"})
        assert (env.uniqueid, env.channel, env.callerid, env.calleridname, env.language) == (
            "1795329357.1", "Local/100@consent-test-00000000;2", "27215550123", "Test Caller", "en")
        assert (env.dnid, env.extension, env.context, env.args) == ("unknown", "100", "consent-test", ())
        assert env.accountcode == "" and len(env.vars) == 22
        assert responses == [
            R(200, 6, "6"),
            R(200, 1, "1", data="en"),
            R(200, 1, "1", data="27215550123"),
            R(200, 0, "0", fields={"endpos": "3404"}),
            R(200, 1, "1"),
            R(200, 1, "1"),
            R(200, 0, "0"),
            R(200, 1, "1"),
            R(510, text="Invalid or unknown command"),
            R(200, -1, "-1", fields={"endpos": "0"}),
        ]
        assert responses[3].endpos == 3404 and responses[9].endpos == 0
