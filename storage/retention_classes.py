"""Retention classes: a recording's ``retention_class`` -> Object Lock mode and period.

A class is a rule ``MODE:AMOUNTunit``, counted from the end of the call. Built in:
``default = COMPLIANCE:90d`` and ``legal = COMPLIANCE:5y``; configured entries
(``[archive] retention``, ``"class=MODE:AMOUNT[smhdy]"``) override or add. Years are
calendar years. The archiver (``archiver.retention``) applies them; the config check
parses them, so this module stays apart from the archiver's imports.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PermanentError

if TYPE_CHECKING:  # the config check parses classes in every classic AGI process
    from .blobstore import Retention

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RULE_RE = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)=(?P<mode>COMPLIANCE|GOVERNANCE):(?P<n>[1-9][0-9]*)(?P<unit>[smhdy])")


@dataclass(frozen=True)
class RetentionRule:
    """One retention class: its Object Lock mode and how long from the end of the call."""

    mode: str
    amount: int
    unit: str  # s m h d y

    def until(self, anchor: float) -> datetime.datetime:
        start = datetime.datetime.fromtimestamp(anchor, datetime.UTC)
        if self.unit != "y":
            return start + datetime.timedelta(seconds=self.amount * _UNITS[self.unit])
        try:
            return start.replace(year=start.year + self.amount)
        except ValueError:  # 29 February into a common year: the day after 28 February
            return start.replace(year=start.year + self.amount, day=28) + datetime.timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.mode}:{self.amount}{self.unit}"


DEFAULT_RULES = {"default": RetentionRule("COMPLIANCE", 90, "d"),
                 "legal": RetentionRule("COMPLIANCE", 5, "y")}


class RetentionPolicy:
    """Retention class -> (Object Lock mode, period)."""

    def __init__(self, rules: Mapping[str, RetentionRule] | None = None):
        self.rules = dict(DEFAULT_RULES if rules is None else rules)

    @classmethod
    def parse(cls, items: Iterable[str]) -> RetentionPolicy:
        """``["legal=COMPLIANCE:7y", "short=GOVERNANCE:30d"]`` over the built-in classes."""
        rules = dict(DEFAULT_RULES)
        for item in items:
            m = _RULE_RE.fullmatch(item.strip())
            if not m:
                raise ValueError(f"retention class {item!r}: expected NAME=COMPLIANCE|GOVERNANCE:N[smhdy], "
                                 "e.g. \"legal=COMPLIANCE:5y\"")
            rules[m["name"]] = RetentionRule(m["mode"], int(m["n"]), m["unit"])
        return cls(rules)

    def __contains__(self, name: str) -> bool:
        return name in self.rules

    def rule(self, name: str) -> RetentionRule:
        try:
            return self.rules[name]
        except KeyError:
            raise PermanentError(f"retention class {name!r} is not configured (known: "
                                 f"{', '.join(sorted(self.rules))}); add it to [archive] retention") from None

    def retention(self, name: str, anchor: float) -> Retention:
        from .blobstore import Retention

        rule = self.rule(name)
        return Retention(rule.mode, rule.until(anchor))  # type: ignore[arg-type]
