"""The interface handlers use to drive a channel: :class:`AgiSession`.

Handlers see this interface only: never a socket, a pipe or protocol state. Two
transports implement it: FastAGI's socket (:class:`agi.session.ProtocolSession`) and
classic AGI's stdin/stdout (:class:`agi.classic.PystSession`). Kept apart from both so
that the classic entry point, one process per call, does not import asyncio or the
FastAGI protocol machine to know the interface.
"""

from __future__ import annotations

import abc
import re

from .events import Environment

DEFAULT_READ_TIMEOUT = 30.0
# STREAM FILE and GET DATA last as long as their sound: allowed on top of read_timeout.
DEFAULT_PLAYBACK_TIMEOUT = 120.0

# Values ``MSet`` passes through unchanged: no separator (``,`` ``|`` ``=``), quote,
# backslash, space or ``$``. Ids, outcomes and ordinary rule names are such values.
_PLAIN = re.compile(r"[A-Za-z0-9_.:@+/-]+")


class AgiSession(abc.ABC):
    """One call's channel, as a handler drives it."""

    env: Environment

    @abc.abstractmethod
    async def get_variable(self, name: str) -> str | None:
        """A channel variable or function (``CHANNEL(linkedid)``); None if unset."""

    @abc.abstractmethod
    async def get_full_variable(self, expression: str) -> str | None:
        """Evaluate ``${...}`` expressions on the channel; None if unset."""

    @abc.abstractmethod
    async def set_variable(self, name: str, value: str) -> None: ...

    async def set_variables(self, *pairs: tuple[str, str]) -> None:
        """Set several variables, left to right, in ONE command (``EXEC MSet``) when
        every value is plain; otherwise one ``SET VARIABLE`` each (MSet would strip
        quotes and split on separators)."""
        if len(pairs) > 1 and all(_PLAIN.fullmatch(value) for _, value in pairs):
            await self.exec("MSet", ",".join(f"{name}={value}" for name, value in pairs))
            return
        for name, value in pairs:
            await self.set_variable(name, value)

    @abc.abstractmethod
    async def stream_file(self, name: str, escape_digits: str = "") -> tuple[str | None, int]:
        """Play a sound; return (escape digit pressed or None, end position in samples)."""

    @abc.abstractmethod
    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``prompt`` and collect DTMF; return (digits, timed out)."""

    @abc.abstractmethod
    async def exec(self, app: str, args: str = "") -> int:
        """Run a dialplan application; return its result."""

    @abc.abstractmethod
    async def verbose(self, message: str, level: int = 1) -> None: ...

    @abc.abstractmethod
    async def answer(self) -> None: ...

    @abc.abstractmethod
    async def hangup(self) -> None: ...
