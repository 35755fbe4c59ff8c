"""AGI, sans I/O: bytes in, typed events out; commands out as bytes (h11's shape).

    conn = AgiConnection()
    conn.receive_data(chunk)          # b"" means end of stream
    event = conn.next_event()         # Environment | Response | Hangup | Closed | NEED_DATA
    wire = conn.send_command(build_command("GET DATA", "beep", 4000, 1))

The quirks of Asterisk 22 live here and nowhere else:

- the environment block (``agi_key: value`` lines, values may be empty) ends with
  a blank line; anything that cannot be the start of ``agi_`` is refused at once;
- ``100 result=0 Trying...`` interim lines (EXEC Gosub) are skipped;
- ``520-Invalid command syntax.  Proper usage follows:`` opens a usage block that
  ends with a line starting ``520 `` (``520 End of proper usage.``);
- ``HANGUP`` arrives unsolicited when the channel hangs up, before a reply or while
  idle; it becomes a :class:`Hangup` event and a command's own reply still follows;
- lines end in ``\\n`` (``\\r\\n`` tolerated); lines, the environment block and the
  usage block are capped so a peer cannot make us buffer without bound;
- codes other than 100, 200, 503, 510, 511 and 520 are a :class:`ProtocolError`.

End of stream at a message boundary is a :class:`Closed` event (before any byte,
or between replies); inside a line, the environment block or a usage block it is
a :class:`ProtocolError`. Error messages never quote received bytes (caller data).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType

from .errors import LocalProtocolError, ProtocolError
from .events import NEED_DATA, Closed, Environment, Event, Hangup, NeedData, Response

MAX_LINE = 8 * 1024
MAX_ENV_BYTES = 64 * 1024
MAX_ENV_LINES = 200
MAX_USAGE_LINES = 200
# res_agi reads a command with fgets() into char[AGI_BUF_LEN = 2048]: a longer line
# would be cut and its tail run as a second command.
MAX_COMMAND_BYTES = 2046

FINAL_CODES = frozenset({200, 503, 510, 511, 520})
_ENV_KEY = re.compile(r"agi_[a-z0-9_]+")
# One environment line: the key, then the value without the one blank after the colon.
_ENV_LINE = re.compile(r"^(agi_[a-z0-9_]+): ?(.*)$", re.MULTILINE)
_STATUS = re.compile(r"([0-9]{3})([ -])(.*)")
_KEY_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_VERB = re.compile(r"[A-Z]+(?: [A-Z]+)*")
_INT = re.compile(r"-?[0-9]+")


class State(enum.Enum):
    ENV = "reading environment"
    IDLE = "idle"
    AWAITING = "awaiting response"
    CLOSED = "closed"
    ERROR = "error"


# --- commands ----------------------------------------------------------------


def quote(arg: str) -> str:
    """Double-quote one argument so res_agi's parse_args() yields it unchanged.

    parse_args() treats ``\\`` as an escape for the next character (inside quotes
    too) and ``"`` as a quote toggle, so both are backslash-escaped.
    """
    if not isinstance(arg, str):
        raise LocalProtocolError(f"AGI arguments are str, not {type(arg).__name__}")
    if "\n" in arg or "\r" in arg or "\0" in arg:
        raise LocalProtocolError("AGI arguments cannot contain CR, LF or NUL")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


_VERBS: set[str] = set()  # verbs already checked (a handful in practice)


def build_command(verb: str, *args: str | int) -> str:
    """``build_command("SET VARIABLE", "X", 'a "b"')`` -> ``SET VARIABLE "X" "a \\"b\\""``.

    The verb is upper-case words; ``str`` arguments are quoted, ``int`` ones bare.
    """
    if verb not in _VERBS:
        if not isinstance(verb, str) or not _VERB.fullmatch(verb):
            raise LocalProtocolError("AGI verb must be upper-case words")
        _VERBS.add(verb)
    parts = [verb]
    for arg in args:
        kind = type(arg)
        if kind is str:
            parts.append(quote(arg))
        elif kind is int:
            parts.append(str(arg))
        elif isinstance(arg, bool) or not isinstance(arg, (str, int)):
            raise LocalProtocolError(f"AGI arguments are str or int, not {type(arg).__name__}")
        else:  # subclasses of str and int
            parts.append(str(arg) if isinstance(arg, int) else quote(arg))
    return " ".join(parts)


def verb_of(command: str) -> str:
    """The leading upper-case words of a command: safe to log, unlike its arguments."""
    words = []
    for word in command.split(" "):
        if not word.isalpha() or not word.isupper():
            break
        words.append(word)
    return " ".join(words) or "?"


# --- replies -----------------------------------------------------------------

# Replies are frozen records: a plain "200 result=N" is the same object every time.
_PLAIN: dict[str, Response] = {}
_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


def parse_final(code: int, rest: str, usage: tuple[str, ...] = ()) -> Response:
    """One final reply line, without its status code and separator."""
    if code != 200:
        return Response(code=code, text=rest, usage=usage)
    if not rest.startswith("result="):
        raise ProtocolError("200 reply without result=")
    raw_result, _, tail = rest[7:].partition(" ")
    if not tail:  # "200 result=1": most replies, a few distinct ones, each made once
        plain = _PLAIN.get(raw_result)
        if plain is None:
            result = int(raw_result) if _INT.fullmatch(raw_result) else None
            plain = Response(code=200, result=result, raw_result=raw_result, fields=_NO_FIELDS)
            if len(_PLAIN) < 256:
                _PLAIN[raw_result] = plain
        return plain
    result = int(raw_result) if _INT.fullmatch(raw_result) else None
    tail = tail.strip()
    data = None
    if tail.startswith("("):
        # GET VARIABLE values may hold ")" themselves: when the line ends in ")"
        # the data runs to the end, otherwise it ends before " key=value ...".
        if tail.endswith(")"):
            data, tail = tail[1:-1], ""
        else:
            close = tail.rfind(") ")
            if close < 0:
                raise ProtocolError("unbalanced parenthesis in 200 reply")
            data, tail = tail[1:close], tail[close + 2:].strip()
    fields: dict[str, str] = {}
    words = tail.split()
    while words and (m := _KEY_VALUE.fullmatch(words[0])):
        fields[m.group(1)] = m.group(2)
        words.pop(0)
    return Response(code=200, result=result, raw_result=raw_result, data=data,
                    fields=fields, text=" ".join(words))


# --- the connection ------------------------------------------------------------


class AgiConnection:
    """The state of one AGI conversation, Asterisk's side parsed, ours checked."""

    def __init__(self, *, max_line: int = MAX_LINE, max_env_bytes: int = MAX_ENV_BYTES,
                 max_env_lines: int = MAX_ENV_LINES) -> None:
        self.max_line = max_line
        self.max_env_bytes = max_env_bytes
        self.max_env_lines = max_env_lines
        self.state = State.ENV
        self.hangup_seen = False
        self._buf = bytearray()
        self._eof = False
        self._env: dict[str, str] = {}
        self._env_bytes = 0
        self._usage: list[str] | None = None
        self._usage_bytes = 0

    # -- input ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from Asterisk; ``b""`` marks the end of the stream."""
        if self._eof:
            if data:
                raise LocalProtocolError("data received after end of stream")
            return
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData:
        if self.state is State.ERROR:
            raise ProtocolError("the AGI connection already failed")
        try:
            return self._next_event()
        except ProtocolError:
            self.state = State.ERROR
            raise

    def _next_event(self) -> Event | NeedData:
        if self.state is State.ENV and not self._env_bytes:
            env = self._whole_environment()
            if env is not None:
                return env
        while True:
            if self.state is State.CLOSED:
                return Closed()
            line = self._read_line()
            if line is None:
                if not self._eof:
                    return NEED_DATA
                return self._end_of_stream()
            event = self._on_line(line)
            if event is not None:
                return event

    def _read_line(self) -> str | None:
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > self.max_line:
                raise ProtocolError(f"line longer than {self.max_line} bytes")
            if self.state is State.ENV:
                self._check_env_prefix()
            if self._eof and self._buf:
                raise ProtocolError("end of stream in the middle of a line")
            return None
        if nl > self.max_line:
            raise ProtocolError(f"line longer than {self.max_line} bytes")
        raw = bytes(self._buf[:nl])
        del self._buf[:nl + 1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if b"\0" in raw:
            raise ProtocolError("NUL byte in a line")
        if self.state is State.ENV:
            self._env_bytes += nl + 1
            if self._env_bytes > self.max_env_bytes:
                raise ProtocolError(f"environment block larger than {self.max_env_bytes} bytes")
        # Caller names are not always UTF-8; they must not cost the call.
        return raw.decode("utf-8", errors="replace")

    def _whole_environment(self) -> Environment | None:
        """The environment block in one pass when all of it has arrived and it is
        plainly well formed (what Asterisk sends); None leaves anything else, errors
        included, to the line-by-line path, which reports them as before."""
        buf = self._buf
        end = buf.find(b"\n\n")
        if end <= 0 or end + 2 > self.max_env_bytes:
            return None
        raw = bytes(buf[:end])
        if b"\r" in raw or b"\0" in raw:
            return None
        lines = raw.count(b"\n") + 1
        if lines > self.max_env_lines:
            return None
        if end > self.max_line and max(map(len, raw.split(b"\n"))) > self.max_line:
            return None  # (no line can be longer than a block shorter than the cap)
        text = raw.decode("utf-8", errors="replace")
        pairs = _ENV_LINE.findall(text)
        if len(pairs) != lines:
            return None  # a line that is not ``agi_key: value``
        env = dict(pairs)
        if len(env) != len(pairs):
            return None  # a key twice
        del buf[:end + 2]
        self._env_bytes = end + 2
        self.state = State.IDLE
        return Environment(env)

    def _check_env_prefix(self) -> None:
        # Refuse junk (a TLS hello, an HTTP request) before waiting for a newline.
        head = bytes(self._buf[:4])
        if head and not (b"agi_".startswith(head) or (self._env and head in (b"\r",))):
            raise ProtocolError("not an AGI environment line")

    def _end_of_stream(self) -> Closed:
        if self.state is State.ENV and (self._env or self._env_bytes):
            raise ProtocolError("end of stream inside the environment block")
        if self._usage is not None:
            raise ProtocolError("end of stream inside a 520 usage block")
        self.state = State.CLOSED
        return Closed()

    def _on_line(self, line: str) -> Event | None:
        if line[:4] == "200 " and self.state is State.AWAITING and self._usage is None:
            response = parse_final(200, line[4:])  # the common reply, as below
            self.state = State.IDLE
            return response
        if self.state is State.ENV:
            return self._on_env_line(line)
        if self._usage is not None:
            return self._on_usage_line(line)
        if line == "HANGUP":
            self.hangup_seen = True
            return Hangup()
        if self.state is not State.AWAITING:
            raise ProtocolError("unsolicited line while no command is outstanding")
        m = _STATUS.fullmatch(line)
        if m is None:
            raise ProtocolError("malformed reply line")
        code, separator, rest = int(m.group(1)), m.group(2), m.group(3)
        if separator == "-":
            if code != 520:
                raise ProtocolError(f"continuation line for code {code}")
            self._usage, self._usage_bytes = [], 0
            return None
        if code == 100:
            return None  # "100 result=0 Trying...": the final reply follows
        if code not in FINAL_CODES:
            raise ProtocolError(f"unknown reply code {code}")
        response = parse_final(code, rest)
        self.state = State.IDLE
        return response

    def _on_env_line(self, line: str) -> Environment | None:
        if line == "":
            if not self._env:
                raise ProtocolError("empty environment block")
            self.state = State.IDLE
            return Environment(dict(self._env))
        if len(self._env) >= self.max_env_lines:
            raise ProtocolError(f"more than {self.max_env_lines} environment lines")
        key, sep, value = line.partition(":")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise ProtocolError(f"malformed environment line {len(self._env) + 1}")
        if key in self._env:
            raise ProtocolError(f"duplicate environment key {key}")
        self._env[key] = value.removeprefix(" ")
        return None

    def _on_usage_line(self, line: str) -> Response | None:
        assert self._usage is not None
        if line.startswith("520 "):
            usage, self._usage = tuple(self._usage), None
            self.state = State.IDLE
            return parse_final(520, line[4:], usage)
        self._usage_bytes += len(line) + 1
        if len(self._usage) >= MAX_USAGE_LINES or self._usage_bytes > self.max_env_bytes:
            raise ProtocolError("520 usage block too long")
        self._usage.append(line)
        return None

    # -- output -----------------------------------------------------------------

    def send_command(self, command: str) -> bytes:
        """Check one command line and return its bytes; a reply is then awaited."""
        if self.state is State.ENV:
            raise LocalProtocolError("the environment block has not ended yet")
        if self.state is State.AWAITING:
            raise LocalProtocolError("a command is already awaiting its reply")
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"cannot send a command: connection is {self.state.value}")
        if not command or command != command.strip():
            raise LocalProtocolError("an AGI command is a non-empty line without edge blanks")
        if "\n" in command or "\r" in command or "\0" in command:
            raise LocalProtocolError("an AGI command cannot contain CR, LF or NUL")
        wire = command.encode("utf-8")
        if len(wire) > MAX_COMMAND_BYTES:
            raise LocalProtocolError(f"AGI command longer than {MAX_COMMAND_BYTES} bytes")
        self.state = State.AWAITING
        return wire + b"\n"

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed."""
        return len(self._buf)

    @property
    def eof(self) -> bool:
        """Whether the end of the stream has been fed."""
        return self._eof

    @property
    def can_send(self) -> bool:
        return self.state is State.IDLE
