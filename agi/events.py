"""What the AGI protocol code hands up: frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping
from urllib.parse import parse_qsl


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(frozen=True)
class Environment:
    """The ``agi_*`` block Asterisk sends first, plus what we derive from it."""

    vars: Mapping[str, str]

    def get(self, key: str, default: str = "") -> str:
        return self.vars.get(key, default)

    @property
    def script(self) -> str:
        """``agi_network_script`` without its query string (``consent?lang=en`` -> ``consent``)."""
        return self.get("agi_network_script").partition("?")[0].strip("/")

    @property
    def route(self) -> str:
        return self.script

    @property
    def query(self) -> Mapping[str, str]:
        return MappingProxyType(dict(parse_qsl(self.get("agi_network_script").partition("?")[2])))

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1``, ``agi_arg_2``, ... in order (dialplan ``AGI(url,a,b)``)."""
        out, i = [], 1
        while f"agi_arg_{i}" in self.vars:
            out.append(self.vars[f"agi_arg_{i}"])
            i += 1
        return tuple(out)

    uniqueid = property(lambda self: self.get("agi_uniqueid"))
    channel = property(lambda self: self.get("agi_channel"))
    callerid = property(lambda self: self.get("agi_callerid"))
    calleridname = property(lambda self: self.get("agi_calleridname"))
    dnid = property(lambda self: self.get("agi_dnid"))
    extension = property(lambda self: self.get("agi_extension"))
    context = property(lambda self: self.get("agi_context"))
    language = property(lambda self: self.get("agi_language") or "en")
    version = property(lambda self: self.get("agi_version"))


@dataclass(frozen=True)
class Response:
    """A final reply to one command: ``200 result=1 (en)``, ``510 ...``, ``520 ...``."""

    code: int
    result: str = ""  # raw text after result= (GET DATA digits, or a number)
    data: str | None = None  # the part in parentheses
    extra: Mapping[str, str] = field(default_factory=dict)  # key=value pairs (endpos=...)
    text: str = ""  # the whole reply, for 5xx diagnostics

    @property
    def result_int(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            return 0

    @property
    def endpos(self) -> int:
        return int(self.extra.get("endpos", "0") or 0)


@dataclass(frozen=True)
class Hangup:
    """Asterisk's asynchronous ``HANGUP`` line: the channel has hung up."""


@dataclass(frozen=True)
class Closed:
    """The connection ended cleanly (EOF between messages)."""
