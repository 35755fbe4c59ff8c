"""Consent policy: which rule applies to a call, and what that rule asks for.

Rules are tried in order; the first whose every given matcher matches wins. A rule
with no matchers matches every call, so a catch-all goes last. With no rule at all
the built-in default applies: South Africa, English, explicit opt-in.

```toml
[[consent.rules]]
name = "za-afrikaans-line"
did = ["27215550199"]          # exact DIDs, or prefixes ending in "*"
caller_prefix = ["+2782"]      # E.164 caller prefixes ("+" optional)
language = ["af"]              # the channel's language
jurisdiction = "ZA"
prompt_language = "af"
mode = "opt-in"                # opt-in | opt-out | implied
timeout = 5.0                  # seconds to wait for a key after the notice
repeats = 1                    # times the notice is played again on no answer / bad key
invalid = "repeat"             # repeat | refuse: what a key other than 1 or 2 does
retention = "default"          # retention class for the archive
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("opt-in", "opt-out", "implied")
INVALID = ("repeat", "refuse")
ALLOW_DIGIT = "1"
REFUSE_DIGIT = "2"


@dataclass(frozen=True)
class Rule:
    name: str
    jurisdiction: str = "ZA"
    prompt_language: str = "en"
    mode: str = "opt-in"
    timeout: float = 5.0
    repeats: int = 1
    invalid: str = "repeat"
    retention: str = "default"
    did: tuple[str, ...] = ()
    caller_prefix: tuple[str, ...] = ()
    language: tuple[str, ...] = ()

    def matches(self, *, did: str, caller: str, language: str) -> bool:
        if self.did and not any(_did_match(p, did) for p in self.did):
            return False
        if self.caller_prefix:
            digits = caller.lstrip("+")
            if not any(digits.startswith(p.lstrip("+")) for p in self.caller_prefix):
                return False
        if self.language and language not in self.language:
            return False
        return True


def _did_match(pattern: str, did: str) -> bool:
    if pattern.endswith("*"):
        return did.startswith(pattern[:-1])
    return did == pattern


DEFAULT_RULE = Rule(name="default")


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def resolve(self, *, did: str, caller: str, language: str) -> Rule:
        for rule in self.rules:
            if rule.matches(did=did, caller=caller, language=language):
                return rule
        return DEFAULT_RULE


_STR = ("name", "jurisdiction", "prompt_language", "mode", "invalid", "retention")
_LIST = ("did", "caller_prefix", "language")


def parse_policy(raw: Any, where: str) -> tuple[Policy, list[str]]:
    """Build a Policy from the ``[consent]`` table; return it and the problems found."""
    problems: list[str] = []
    if raw is None:
        return Policy(), problems
    if not isinstance(raw, dict):
        return Policy(), [f"{where}: consent: expected a [consent] table"]
    unknown = set(raw) - {"rules"}
    for key in sorted(unknown):
        problems.append(f"{where}: [consent] {key}: unknown key; rules go in [[consent.rules]]")
    rules, names = [], set()
    listed = raw.get("rules", [])
    if not isinstance(listed, list):
        problems.append(f"{where}: [consent] rules = {listed!r}: expected [[consent.rules]] tables")
        listed = []
    for i, body in enumerate(listed):
        at = f"{where}: [[consent.rules]] #{i + 1}"
        if not isinstance(body, dict):
            problems.append(f"{at}: expected a table")
            continue
        kwargs: dict[str, Any] = {}
        for key, value in body.items():
            if key in _STR:
                if not isinstance(value, str) or not value:
                    problems.append(f"{at} {key} = {value!r}: expected a non-empty string")
                    continue
                kwargs[key] = value
            elif key in _LIST:
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    problems.append(f"{at} {key} = {value!r}: expected a list of strings")
                    continue
                kwargs[key] = tuple(value)
            elif key == "timeout":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.5 <= value <= 60:
                    problems.append(f"{at} timeout = {value!r}: expected seconds between 0.5 and 60")
                    continue
                kwargs[key] = float(value)
            elif key == "repeats":
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
                    problems.append(f"{at} repeats = {value!r}: expected 0 to 3")
                    continue
                kwargs[key] = value
            else:
                problems.append(f"{at} {key}: unknown key; known: {', '.join(_STR + _LIST + ('timeout', 'repeats'))}")
        name = kwargs.get("name") or f"rule-{i + 1}"
        kwargs["name"] = name
        if name in names:
            problems.append(f"{at} name = {name!r}: duplicate rule name; names identify rules in the ledger")
        names.add(name)
        if kwargs.get("mode", "opt-in") not in MODES:
            problems.append(f"{at} mode = {kwargs['mode']!r}: expected one of {', '.join(MODES)}")
        if kwargs.get("invalid", "repeat") not in INVALID:
            problems.append(f"{at} invalid = {kwargs['invalid']!r}: expected one of {', '.join(INVALID)}")
        rules.append(Rule(**kwargs))
    return Policy(tuple(rules)), problems
