"""What the AGI protocol machine hands out: frozen, typed events.

``AgiConnection.next_event()`` returns one of :class:`Environment`,
:class:`Response`, :class:`Hangup`, :class:`Closed`, or the :data:`NEED_DATA`
sentinel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from storage.record import Default, Record

_ARG_KEY = re.compile(r"agi_arg_([1-9][0-9]*)")


class Environment(Record):
    """The ``agi_*`` block Asterisk sends first, plus parsed helpers.

    ``vars`` keeps every key as sent (``agi_`` prefix included). For FastAGI the
    script comes from ``agi_network_script`` (``consent?lang=en``), which keeps the
    query string; ``route`` is that path without query string or leading slash.
    """

    vars: Mapping[str, str]

    def get(self, key: str, default: str = "") -> str:
        """A variable by its name with or without the ``agi_`` prefix."""
        if not key.startswith("agi_"):
            key = "agi_" + key
        return self.vars.get(key, default)

    @property
    def _script_and_query(self) -> tuple[str, str]:
        script = self.vars.get("agi_network_script")
        if script is None:  # not FastAGI: take the path of agi_request
            request = self.vars.get("agi_request", "")
            parts = urlsplit(request) if "://" in request else None
            script = (parts.path + ("?" + parts.query if parts.query else "")) if parts else request
        path, _, query = script.partition("?")
        return path, query

    @property
    def script(self) -> str:
        return self._script_and_query[0]

    @property
    def route(self) -> str:
        return self.script.lstrip("/")

    @property
    def query(self) -> Mapping[str, str]:
        """Query-string parameters, percent-decoded; the last of repeated keys wins.
        Worked out once, read-only."""
        query = self.__dict__.get("_query")
        if query is None:
            query = self.__dict__["_query"] = MappingProxyType(
                dict(parse_qsl(self._script_and_query[1], keep_blank_values=True)))
        return query

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1`` .. ``agi_arg_N`` in numeric order (``agi_arg_10`` after 9)."""
        # Worked out once (not functools.cached_property: in 3.11 it takes a lock per get).
        args = self.__dict__.get("_args")
        if args is None:
            args = self.__dict__["_args"] = self._numbered_args()
        return args

    def _numbered_args(self) -> tuple[str, ...]:
        vars_ = self.vars
        found = []
        while (value := vars_.get(f"agi_arg_{len(found) + 1}")) is not None:
            found.append(value)
        # What Asterisk sends: agi_arg_1 .. agi_arg_N and no other agi_arg_ key.
        if ("\n" + "\n".join(vars_)).count("\nagi_arg_") == len(found):
            return tuple(found)
        numbered = []
        for key, value in self.vars.items():
            m = _ARG_KEY.fullmatch(key) if key.startswith("agi_arg_") else None  # 3 of ~27 keys
            if m:
                numbered.append((int(m.group(1)), value))
        return tuple(value for _, value in sorted(numbered))

    request = property(lambda self: self.vars.get("agi_request", ""))
    uniqueid = property(lambda self: self.vars.get("agi_uniqueid", ""))
    channel = property(lambda self: self.vars.get("agi_channel", ""))
    callerid = property(lambda self: self.vars.get("agi_callerid", ""))
    calleridname = property(lambda self: self.vars.get("agi_calleridname", ""))
    dnid = property(lambda self: self.vars.get("agi_dnid", ""))
    rdnis = property(lambda self: self.vars.get("agi_rdnis", ""))
    language = property(lambda self: self.vars.get("agi_language", ""))
    context = property(lambda self: self.vars.get("agi_context", ""))
    extension = property(lambda self: self.vars.get("agi_extension", ""))
    priority = property(lambda self: self.vars.get("agi_priority", ""))
    version = property(lambda self: self.vars.get("agi_version", ""))
    accountcode = property(lambda self: self.vars.get("agi_accountcode", ""))


class Response(Record):
    """A final reply to one command.

    ``200 result=1 (en) endpos=3404 Gosub complete`` gives ``result=1``,
    ``raw_result="1"``, ``data="en"``, ``fields={"endpos": "3404"}``,
    ``text="Gosub complete"``. ``result`` is None when the text after ``result=``
    is not an integer (``GET DATA`` digits such as ``""`` or ``"*1"``; digit
    strings with a leading zero keep it in ``raw_result``). For codes other than
    200 the message is in ``text`` and a ``520`` usage block in ``usage``.
    """

    code: int
    result: int | None = None
    raw_result: str = ""
    data: str | None = None
    fields: Mapping[str, str] = Default(dict)
    text: str = ""
    usage: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def endpos(self) -> int | None:
        value = self.fields.get("endpos")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None


class Hangup(Record):
    """Asterisk wrote ``HANGUP``: the channel is gone. Replies still follow."""


class Closed(Record):
    """The stream ended at a message boundary."""


class NeedData:
    """Sentinel type: feed more bytes with ``receive_data``."""

    _instance: NeedData | None = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

Event = Environment | Response | Hangup | Closed
