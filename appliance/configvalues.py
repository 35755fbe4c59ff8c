"""Values in a config file: the secret type that never prints itself, the conversion of
TOML and environment values to each key's type, and the checks on paths and identities
that :mod:`appliance.config` reports with the key's name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, get_args, get_origin


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def coerce(section: str, key: str, typ: Any, value: Any, from_text: bool) -> Any:
    """Convert ``value`` to ``typ`` or raise ValueError with a message for people."""
    origin = get_origin(typ)
    if origin is not None and type(None) in get_args(typ):  # Optional[T]
        typ = next(a for a in get_args(typ) if a is not type(None))
        origin = get_origin(typ)
    if typ is Secret:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return Secret(value)
    if typ is bool:
        if from_text and isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if typ is int:
        if from_text and isinstance(value, str) and value.strip().lstrip("-").isascii() \
                and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        return value
    if typ is float:
        if from_text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError("expected a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ValueError("expected a string in quotes")
        if "\0" in value:  # no file, socket or URL may hold one: refused here, not at start
            raise ValueError("expected text without NUL characters")
        return value
    if typ is Path:
        if not isinstance(value, str) or not value or "\0" in value:
            raise ValueError("expected a path in quotes")
        return Path(value)
    if origin is tuple:
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
            raise ValueError("expected a list of strings, e.g. [\"a\", \"b\"]")
        return tuple(value)
    raise TypeError(f"unsupported config type {typ!r} for {section}.{key}")


def read_secret(path: Any) -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise TypeError("not a path")
    return Path(path).read_text().strip()


AGE_SECRET = re.compile(r"AGE-SECRET-KEY-[0-9A-Za-z]+", re.IGNORECASE)


def is_identity(value: str) -> bool:
    return value.strip().upper().startswith("AGE-SECRET-KEY-")


def unwritable(path: Path) -> str | None:
    """Why ``path`` (a directory, maybe not yet created) cannot be written, or None."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a directory; choose a directory path"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"not writable by this user ({probe}); fix permissions or choose another path"
    return None
