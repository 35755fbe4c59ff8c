"""The call a piece of work is for, as context variables, so its log lines can name it.

The FastAGI consent handler binds the call's ``linkedid``, ``consent_id`` and
``recording_id`` as it learns them (each FastAGI connection is its own task, so its
own context); an archive job binds its recording's ids in a context of its own. The
appliance's log filter (appliance/logs.py) copies what is bound onto every record.
Only generated ids and Asterisk's linkedid go here, never caller data.
"""

from __future__ import annotations

import contextvars

FIELDS = ("linkedid", "consent_id", "recording_id")

_VARS = {name: contextvars.ContextVar[str | None](f"callvault_{name}", default=None) for name in FIELDS}


_ITEMS = tuple(_VARS.items())


def bind(**ids: str | None) -> None:
    """Set some of ``FIELDS`` for the rest of the current context (None or "" clears one)."""
    for name, value in ids.items():
        var = _VARS.get(name)
        if var is None:
            raise TypeError(f"unknown log context field {name!r}; known: {', '.join(FIELDS)}")
        var.set(value or None)


def current() -> dict[str, str]:
    """The ids bound in the current context."""
    return {name: value for name, var in _ITEMS if (value := var.get()) is not None}
