"""Node names and durations as the config writes them (``"15m"``, ``"7y"``).

Apart from :mod:`storage.anchors` so that the config check, which runs in every
classic AGI process, does not build the anchor and blob store types to read them.
"""

from __future__ import annotations

import re

NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}\Z")
_DURATION_RE = re.compile(r"([1-9][0-9]*)([smhdy])\Z")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> tuple[int, str]:
    """``"15m"`` -> ``(15, "m")``; units s, m, h, d, y. ``ValueError`` otherwise."""
    m = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError("expected a whole number and a unit (s, m, h, d, y), e.g. \"15m\" or \"7y\"")
    return int(m.group(1)), m.group(2)


def duration_seconds(text: str) -> float:
    n, unit = parse_duration(text)
    return float(n * (365 * 86400 if unit == "y" else SECONDS[unit]))
