"""Classic AGI (``AGI(script,...)``): the :class:`AgiSession` interface over pyst2.

Asterisk starts one process per call, writes the environment block to its stdin and
reads commands from its stdout. pyst2's ``asterisk.agi.AGI`` speaks that dialogue;
:class:`PystSession` puts it behind the interface the handlers know, with the same
outcome rules as :class:`agi.session.ProtocolSession` (see ``agi.errors``):

* ``511``, a broken pipe or the end of stdin -> :class:`AgiHangup`;
* SIGHUP (Asterisk's hangup notice to a classic AGI, unless ``AGISIGHUP=no``) is
  remembered like FastAGI's ``HANGUP`` line: the next command is still sent, so
  commands Asterisk allows on a dead channel (``SET VARIABLE``) still work;
* ``510``, ``520``, ``503`` and unknown codes -> :class:`CommandFailed`;
* ``result=-1`` from ANSWER, STREAM FILE, GET DATA or EXEC -> ``CHANNEL STATUS`` is
  asked unless a hangup was already seen: :class:`AgiHangup` or :class:`CommandFailed`.

pyst2 0.5.1 is used for what it does well (the environment, sending a line, reading
and classifying a reply); its rough edges are handled here:

* it writes a trace of the whole dialogue, caller number included, to stderr: it
  gets a sink instead (Asterisk copies an AGI's stderr to its console);
* ``execute()`` raises on any command once SIGHUP arrived: we call
  ``send_command()``/``get_result()`` ourselves;
* its ``_quote()`` does not escape ``"`` or ``\\``: lines are built by
  :func:`agi.protocol.build_command`;
* it crashes on end of stream (``int('')``), waits forever, and does not know
  ``100 Trying``: stdin is read through :class:`_Lines`, which has a deadline per
  read, a line-length cap, and turns end of stream into :class:`AgiHangup`;
* it reports ``(hangup)`` in a reply's data as a hangup, even when it is the
  *value* of a variable; like pyst2's own ``get_variable()`` we read it as a value
  for GET VARIABLE and GET FULL VARIABLE.

The methods are coroutines because the interface is, but they block: a classic AGI
process serves one call and runs nothing else on its event loop.
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from asterisk.agi import (
    AGI,
    AGIAppError,
    AGIInvalidCommand,
    AGIResultHangup,
    AGIUnknownError,
    AGIUsageError,
)

from . import variables as v
from .errors import (
    AgiError,
    AgiHangup,
    AgiTimeout,
    CommandFailed,
    LocalProtocolError,
    ProtocolError,
)
from .events import Environment
from .interface import DEFAULT_PLAYBACK_TIMEOUT, DEFAULT_READ_TIMEOUT, AgiSession
from .protocol import MAX_LINE, build_command, verb_of
from .routes import Handler

log = logging.getLogger(__name__)

DEFAULT_ENV_TIMEOUT = 5.0
_READ_SIZE = 64 * 1024
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_UNSET = object()


class _Lines:
    """Asterisk's side of stdin, one line at a time, each read within ``timeout``."""

    def __init__(self, fd: int, timeout: float, max_line: int = MAX_LINE):
        self.fd = fd
        self.timeout = timeout
        self.max_line = max_line
        self.hangup_seen = False
        self._buf = bytearray()

    def readline(self) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                if nl > self.max_line:
                    raise ProtocolError(f"line longer than {self.max_line} bytes")
                raw = bytes(self._buf[:nl]).rstrip(b"\r")
                del self._buf[:nl + 1]
                if raw == b"HANGUP":  # FastAGI's notice; harmless if a proxy relays it
                    self.hangup_seen = True
                    continue
                return raw.decode("utf-8", errors="replace") + "\n"
            if len(self._buf) > self.max_line:
                raise ProtocolError(f"line longer than {self.max_line} bytes")
            remaining = deadline - time.monotonic()
            ready = select.select([self.fd], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise AgiTimeout(f"nothing from Asterisk within {self.timeout:g} s")
            chunk = os.read(self.fd, _READ_SIZE)
            if not chunk:
                raise AgiHangup("Asterisk closed the AGI's stdin")
            self._buf += chunk


class _Out:
    """stdout for pyst2: whole lines, unbuffered, straight to the pipe."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(self.fd, data):]

    def flush(self) -> None:
        pass


class _Discard:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _Reply:
    __slots__ = ("data", "fields", "result")

    def __init__(self, result: str, data: str = "", fields: Mapping[str, str] | None = None):
        self.result = result
        self.data = data
        self.fields = {} if fields is None else fields

    @property
    def number(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


def classic_environment(env: Mapping[str, str], args: Sequence[str]) -> Environment:
    """The environment as a handler expects it: ``agi_arg_N`` are the route's arguments.

    ``AGI(callvault-agi,consent,${EXTEN})`` sends ``agi_arg_1: consent`` and
    ``agi_arg_2: <DID>``; FastAGI's ``AGI(agi://host/consent,${EXTEN})`` sends the
    DID as ``agi_arg_1``. The route is taken from argv, so ``args`` (argv after the
    route) replace the ``agi_arg_N`` keys. ``agi_request`` stays the script's path.
    """
    out = {k: val for k, val in env.items()
           if k.startswith("agi_") and not k.startswith("agi_arg_")}
    out.update({f"agi_arg_{i}": arg for i, arg in enumerate(args, 1)})
    return Environment(out)


class PystSession(AgiSession):
    """An :class:`AgiSession` over a classic AGI's stdin/stdout, spoken by pyst2."""

    def __init__(self, agi: AGI, lines: _Lines, env: Environment, *,
                 read_timeout: float = DEFAULT_READ_TIMEOUT,
                 playback_timeout: float = DEFAULT_PLAYBACK_TIMEOUT,
                 previous_sighup: Any = _UNSET):
        self._agi, self._lines = agi, lines
        self.env = env
        self.read_timeout = read_timeout
        self.playback_timeout = playback_timeout
        self._sighup = False
        self._dead = False
        self._broken = False
        self._previous_sighup = previous_sighup

    @classmethod
    def open(cls, args: Sequence[str] = (), *, stdin: int = 0, stdout: int = 1,
             env_timeout: float = DEFAULT_ENV_TIMEOUT, **options: float) -> PystSession:
        """Read the environment block (within ``env_timeout``) and start the session.

        Must run in the main thread (pyst2 installs a SIGHUP handler; so do we).
        """
        previous = signal.getsignal(signal.SIGHUP)
        restore = signal.SIG_DFL if previous is None else previous
        lines = _Lines(stdin, env_timeout)
        opened = False
        try:
            agi = AGI(stdin=lines, stdout=_Out(stdout), stderr=_Discard())
            if not agi.env:
                raise ProtocolError("empty environment block")
            session = cls(agi, lines, classic_environment(agi.env, args),
                          previous_sighup=previous, **options)
            opened = True
        finally:
            if not opened:  # pyst2 took SIGHUP over: give it back
                signal.signal(signal.SIGHUP, restore)
        signal.signal(signal.SIGHUP, session._on_sighup)
        return session

    def close(self) -> None:
        """Give SIGHUP back to whoever had it before :meth:`open`."""
        if self._previous_sighup is not _UNSET:
            previous = self._previous_sighup
            signal.signal(signal.SIGHUP, signal.SIG_DFL if previous is None else previous)
            self._previous_sighup = _UNSET

    def _on_sighup(self, signum: int, frame: object) -> None:
        self._sighup = True

    @property
    def hung_up(self) -> bool:
        return self._sighup or self._lines.hangup_seen or self._dead

    @property
    def usable(self) -> bool:
        """Whether another command can be sent (false after a timeout or protocol error)."""
        return not self._broken

    @property
    def broken(self) -> bool:
        return self._broken

    # -- the interface --------------------------------------------------------------

    async def get_variable(self, name: str) -> str | None:
        r = self._command(build_command("GET VARIABLE", name), value=True)
        return r.data if r.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        r = self._command(build_command("GET FULL VARIABLE", expression), value=True)
        return r.data if r.result == "1" else None

    async def set_variable(self, name: str, value: str) -> None:
        self._command(build_command("SET VARIABLE", name, value))

    async def stream_file(self, name: str, escape_digits: str = "") -> tuple[str | None, int]:
        command = build_command("STREAM FILE", name, escape_digits)
        r = self._command(command, self.read_timeout + self.playback_timeout)
        if r.number is None or r.number < 0:
            self._failed_or_hung_up(command, "sound could not be played")
        try:
            endpos = int(r.fields.get("endpos", "0"))
        except ValueError:
            endpos = 0
        return (chr(r.number) if r.number else None), endpos

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        command = build_command("GET DATA", prompt, int(timeout_ms), int(max_digits))
        wait = self.read_timeout + self.playback_timeout + max(timeout_ms, 0) / 1000
        r = self._command(command, wait)
        if r.result.startswith("-"):
            self._failed_or_hung_up(command, "prompt failed")
        # pyst2 cannot parse "200 result= (timeout)" (no digits): result stays "".
        return r.result, r.data == "timeout" or r.result == ""

    async def exec(self, app: str, args: str = "") -> int:
        command = build_command("EXEC", app, args)
        r = self._command(command)
        if r.number is None:
            raise CommandFailed("EXEC", "result is not a number")
        if r.number == -2:
            raise CommandFailed("EXEC", "no such application")
        if r.number < 0:
            self._failed_or_hung_up(command, "application failed")
        return r.number

    async def verbose(self, message: str, level: int = 1) -> None:
        self._command(build_command("VERBOSE", message, int(level)))

    async def answer(self) -> None:
        command = build_command("ANSWER")
        r = self._command(command)
        if r.number is None or r.number < 0:
            self._failed_or_hung_up(command, "answer failed")

    async def hangup(self) -> None:
        self._command(build_command("HANGUP"))

    async def channel_status(self) -> int:
        """The channel's state number (6 = up); -1 if Asterisk has no such channel."""
        return self._channel_status()

    # -- the dialogue ---------------------------------------------------------------

    def _command(self, command: str, timeout: float | None = None, *,
                 value: bool = False) -> _Reply:
        verb = verb_of(command)
        if self._broken:
            raise LocalProtocolError(f"{verb}: the AGI link is broken (a reply was lost)")
        self._lines.timeout = timeout or self.read_timeout
        try:
            self._agi.send_command(command)
        except OSError:  # EPIPE: Asterisk is gone
            raise AgiHangup(f"{verb}: Asterisk closed the AGI's stdout") from None
        try:
            return self._reply(verb, value)
        except (AgiTimeout, ProtocolError):
            self._broken = True
            raise

    def _reply(self, verb: str, value: bool) -> _Reply:
        while True:
            try:
                result = self._agi.get_result()
            except AGIResultHangup:
                if value:  # pyst2's get_variable() reads "(hangup)" as the value
                    return _Reply("1", "hangup")
                raise AgiHangup(f"{verb}: channel hung up") from None
            except AGIAppError:  # 200 result=-1 (AGIHangup subclasses are caught above)
                return _Reply("-1")
            except AGIInvalidCommand:
                raise CommandFailed(verb, "unknown command (510)") from None
            except AGIUsageError:
                raise CommandFailed(verb, "invalid syntax (520)") from None
            except AGIUnknownError as e:
                code = e.args[0] if e.args else None
                if code == 100:
                    continue  # "100 result=0 Trying...": the final reply follows
                if code == 511:
                    self._dead = True
                    raise AgiHangup(f"{verb}: channel is dead (511)") from None
                raise CommandFailed(verb, f"failed ({code})") from None
            except ValueError:  # pyst2's int() of a status code that is not one
                raise ProtocolError(f"malformed reply to {verb}") from None
            raw, data = result.get("result", ("", ""))
            fields = {k: val for k, (val, _) in result.items() if k != "result"}
            return _Reply(raw, data, fields)

    def _channel_status(self) -> int:
        r = self._command(build_command("CHANNEL STATUS"))
        return r.number if r.number is not None else -1

    def _failed_or_hung_up(self, command: str, what: str) -> NoReturn:
        verb = verb_of(command)
        if not self.hung_up and self._channel_status() < 0:  # 511 raises AgiHangup
            self._dead = True
        if self.hung_up:
            raise AgiHangup(f"{verb}: channel hung up")
        raise CommandFailed(verb, what)


# -- one call, failed closed like FastAgiServer does ----------------------------------


def describe(exc: Exception) -> str:
    """An exception for the log: our own messages carry no caller data, others might."""
    if isinstance(exc, AgiError):
        return f"{type(exc).__name__}: {exc}"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else "?"
    return f"{type(exc).__name__} at {where}"


async def fail_closed(session: AgiSession, what: str) -> None:
    """Tell the dialplan "error, not recorded" (best effort) and log ONE line."""
    if isinstance(session, PystSession) and not session.usable:
        outcome = "channel unreachable"
    else:
        try:
            await session.set_variable(v.RECORD, v.NO)
            await session.set_variable(v.CONSENT, v.ERROR)
            outcome = "failed closed"
        except Exception as exc:  # best effort: a dialplan preset may still say "no"
            outcome = f"fail-closed variables not set: {describe(exc)}"
    log.error("%s; %s", what, outcome)


def call_label(session: AgiSession, route: str = "") -> str:
    """``call <uniqueid> on <route>`` for the log, without caller data."""
    label = f"call {_safe(session.env.uniqueid)}"
    return f"{label} on {_safe(route)}" if route else label


async def run_call(session: AgiSession, handler: Handler, route: str) -> bool:
    """Run ``handler`` as FastAgiServer would; True if it ended normally or by hangup."""
    where = call_label(session, route)
    try:
        await handler(session)
    except AgiHangup:
        log.debug("%s: hung up", where)
        return True
    except Exception as exc:  # the process boundary: every failure is failed closed
        await fail_closed(session, f"{where}: {describe(exc)}")
        return False
    if isinstance(session, PystSession) and session.broken:
        log.error("%s: ended with a broken AGI link", where)
        return False
    return True


def _safe(value: str) -> str:
    """Ids and route names from the peer, only if they look like ids."""
    return value if _SAFE_ID.fullmatch(value) else "?"
