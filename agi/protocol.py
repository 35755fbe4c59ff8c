"""AGI, sans I/O: bytes in, typed events out; commands out as bytes (h11's shape).

    conn = AgiConnection()
    conn.receive_data(chunk)          # b"" means end of stream
    event = conn.next_event()         # Environment | Response | Hangup | Closed | NEED_DATA
    wire = conn.send_command("GET DATA beep 4000 1")

The quirks of Asterisk 22 live here and nowhere else:
- ``100 Trying`` interim lines precede some final replies and are skipped;
- ``520-`` opens a multi-line usage block ending with a ``520 `` line;
- ``HANGUP`` arrives unsolicited (FastAGI) when the channel hangs up, possibly
  while a command is outstanding; it becomes a :class:`Hangup` event and the
  command's own reply still follows;
- an environment value may be empty (``agi_accountcode: ``);
- lines end in ``\\n`` (``\\r\\n`` tolerated). Lines and the environment block are
  capped so a peer cannot make us buffer without bound.
"""

from __future__ import annotations

import enum
import re

from .errors import LocalProtocolError, ProtocolError
from .events import NEED_DATA, Closed, Environment, Hangup, Response

MAX_LINE = 8192
MAX_ENV_BYTES = 64 * 1024
MAX_ENV_LINES = 256
MAX_USAGE_LINES = 200

_RESULT = re.compile(r"^200 result=(\S*)(.*)$")
_KV = re.compile(r"(\w+)=(\S*)")


class State(enum.Enum):
    ENV = "env"
    IDLE = "idle"
    WAITING = "waiting"
    CLOSED = "closed"


def quote(arg: str) -> str:
    """Quote one command argument the way res_agi's parser unquotes it."""
    if "\n" in arg or "\r" in arg or "\0" in arg:
        raise LocalProtocolError("AGI arguments cannot contain line breaks or NUL")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_response(line: str, usage: list[str] | None = None) -> Response:
    code_text = line[:3]
    if not code_text.isdigit():
        raise ProtocolError(f"unexpected reply {line[:80]!r}")
    code = int(code_text)
    if code == 200:
        m = _RESULT.match(line)
        if m is None:
            raise ProtocolError(f"malformed 200 reply {line[:80]!r}")
        result, rest = m.group(1), m.group(2).strip()
        data = None
        if rest.startswith("("):
            close = rest.rfind(")")
            if close < 0:
                raise ProtocolError(f"unbalanced parenthesis in {line[:80]!r}")
            data, rest = rest[1:close], rest[close + 1:]
        return Response(200, result, data, dict(_KV.findall(rest)), line)
    if code in (510, 511, 520):
        text = "\n".join(usage) if usage else line
        return Response(code, "", None, {}, text)
    raise ProtocolError(f"unknown AGI reply code {code}: {line[:80]!r}")


class AgiConnection:
    def __init__(self) -> None:
        self.state = State.ENV
        self._buf = bytearray()
        self._eof = False
        self._env: dict[str, str] = {}
        self._env_bytes = 0
        self._usage: list[str] | None = None

    # -- input -------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self._eof:
            raise LocalProtocolError("data received after end of stream")
        if not data:
            self._eof = True
            return
        self._buf += data

    def _line(self) -> str | None:
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > MAX_LINE:
                raise ProtocolError(f"line longer than {MAX_LINE} bytes")
            return None
        if nl > MAX_LINE:
            raise ProtocolError(f"line longer than {MAX_LINE} bytes")
        raw = bytes(self._buf[:nl])
        del self._buf[:nl + 1]
        if self.state is State.ENV:
            self._env_bytes += nl + 1
            if self._env_bytes > MAX_ENV_BYTES:
                raise ProtocolError(f"environment block larger than {MAX_ENV_BYTES} bytes")
        try:
            return raw.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("line is not UTF-8 text") from None

    def next_event(self) -> Environment | Response | Hangup | Closed | object:
        while True:
            if self.state is State.CLOSED:
                return Closed()
            line = self._line()
            if line is None:
                if self._eof:
                    if self._buf or self.state is State.ENV or self._usage is not None:
                        raise ProtocolError(f"connection closed mid-message in state {self.state.value}")
                    self.state = State.CLOSED
                    return Closed()
                return NEED_DATA
            if self.state is State.ENV:
                if line == "":
                    if not self._env:
                        raise ProtocolError("empty environment block")
                    self.state = State.IDLE
                    return Environment(dict(self._env))
                key, sep, value = line.partition(":")
                if not sep or not key.startswith("agi_"):
                    raise ProtocolError(f"not an AGI environment line: {line[:80]!r}")
                if len(self._env) >= MAX_ENV_LINES:
                    raise ProtocolError(f"more than {MAX_ENV_LINES} environment lines")
                self._env[key] = value[1:] if value.startswith(" ") else value
                continue
            if line == "HANGUP":
                return Hangup()
            if self._usage is not None:
                if line.startswith("520 "):
                    usage, self._usage = self._usage, None
                    self.state = State.IDLE
                    return parse_response("520", usage + [line])
                if len(self._usage) >= MAX_USAGE_LINES:
                    raise ProtocolError("520 usage block too long")
                self._usage.append(line)
                continue
            if self.state is not State.WAITING:
                raise ProtocolError(f"unsolicited line {line[:80]!r}")
            if line.startswith("100"):
                continue  # "100 result=0 Trying..."
            if line.startswith("520-"):
                self._usage = [line]
                continue
            response = parse_response(line)
            self.state = State.IDLE
            return response

    # -- output --------------------------------------------------------------
    def send_command(self, command: str) -> bytes:
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"cannot send a command in state {self.state.value}")
        if "\n" in command or "\r" in command:
            raise LocalProtocolError("an AGI command is one line")
        self.state = State.WAITING
        return command.encode("utf-8") + b"\n"
