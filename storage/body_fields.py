"""Reading an entry body's values leniently: a missing key reads as an empty value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _str(d: Mapping[str, Any], key: str) -> str:
    return str(d.get(key) or "")


def _float(d: Mapping[str, Any], key: str) -> float:
    return float(d.get(key) or 0.0)


def _strs(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return tuple(str(x) for x in d.get(key) or ())
