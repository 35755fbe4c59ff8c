"""Consent policy: which rule applies to a call, and what that rule asks for.

Rules are tried in order; the first whose every given matcher matches wins. A rule
with no matchers matches every call, so a catch-all goes last. With no rule at all
the built-in default applies: South Africa, English, explicit opt-in.

```toml
[[consent.rules]]
name = "za-afrikaans-line"
did = ["27215550199"]          # exact DIDs, or prefixes ending in "*"
caller_prefix = ["+2782"]      # E.164 caller prefixes ("+" optional)
match_dialled = ["+1415"]      # outbound: prefixes of the number dialled, as dialled
language = ["af"]              # the channel's language
jurisdiction = "ZA"
prompt_language = "af"
mode = "opt-in"                # opt-in | opt-out | implied
timeout = 5.0                  # seconds to wait for a key after the notice
repeats = 1                    # times the notice is played again on no answer / bad key
invalid = "repeat"             # repeat | refuse: what a key other than the two does
retention = "default"          # retention class for the archive
allow_key = "1"                # the key that allows recording (one digit 0-9)
refuse_key = "2"               # the key that refuses it (another digit)
parties = "one"                # one: the caller decides | all: the called party too
callee_refuses = "connect"     # all: connect unrecorded | hangup: the called leg is hung up
```

A rule with ``did`` matches inbound calls only, one with ``match_dialled`` outbound
calls only (the dialplan passes the dialled number); a rule with neither matches both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("opt-in", "opt-out", "implied")
INVALID = ("repeat", "refuse")
PARTIES = ("one", "all")
CALLEE_REFUSES = ("connect", "hangup")
ALLOW_DIGIT = "1"
REFUSE_DIGIT = "2"
# "#" ends GET DATA's input and "*" is not on every phone's keypad as a DTMF key
# worth relying on, so keys are the ten digits.
KEYS = "0123456789"


@dataclass(frozen=True)
class Rule:
    """One consent rule: which calls it covers and how the notice asks."""

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
    match_dialled: tuple[str, ...] = ()
    allow_key: str = ALLOW_DIGIT
    refuse_key: str = REFUSE_DIGIT
    parties: str = "one"
    callee_refuses: str = "connect"

    @property
    def all_parties(self) -> bool:
        return self.parties == "all"

    def matches(self, *, did: str, caller: str, language: str, dialled: str = "") -> bool:
        if self.did and not any(_did_match(p, did) for p in self.did):
            return False
        if self.match_dialled and not any(dialled.startswith(p) for p in self.match_dialled if dialled):
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
    """The consent rules in order: the first that matches a call applies."""

    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def resolve(self, *, did: str, caller: str, language: str, dialled: str = "") -> Rule:
        for rule in self.rules:
            if rule.matches(did=did, caller=caller, language=language, dialled=dialled):
                return rule
        return DEFAULT_RULE

    def named(self, name: str) -> Rule | None:
        """The rule a ledger entry names (the default rule included), or None."""
        if name == DEFAULT_RULE.name and not any(r.name == name for r in self.rules):
            return DEFAULT_RULE
        return next((r for r in self.rules if r.name == name), None)


_STR = ("name", "jurisdiction", "prompt_language", "mode", "invalid", "retention", "allow_key", "refuse_key",
        "parties", "callee_refuses")
_LIST = ("did", "caller_prefix", "language", "match_dialled")
_CHOICES = {"mode": MODES, "invalid": INVALID, "parties": PARTIES, "callee_refuses": CALLEE_REFUSES}


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
            if key in ("allow_key", "refuse_key") and type(value) is int:
                value = str(value)  # allow_key = 5 reads as well as "5"
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
        for key, choices in _CHOICES.items():
            if key in kwargs and kwargs[key] not in choices:
                problems.append(f"{at} {key} = {kwargs[key]!r}: expected one of {', '.join(choices)}")
        problems.extend(_key_problems(at, kwargs))
        if kwargs.get("did") and kwargs.get("match_dialled"):
            problems.append(f"{at}: did and match_dialled together match no call (did is for inbound calls, "
                            "match_dialled for outbound ones); split it into two rules")
        rules.append(Rule(**kwargs))
    return Policy(tuple(rules)), problems


def _key_problems(at: str, kwargs: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("allow_key", "refuse_key"):
        value = kwargs.get(key)
        if value is not None and (len(value) != 1 or value not in KEYS):
            problems.append(f"{at} {key} = {value!r}: expected one digit 0-9 ('#' ends the key input, "
                            "so it cannot be one)")
            kwargs.pop(key)
    allow, refuse = kwargs.get("allow_key", ALLOW_DIGIT), kwargs.get("refuse_key", REFUSE_DIGIT)
    if allow == refuse:
        problems.append(f"{at} allow_key = {allow!r}, refuse_key = {refuse!r}: the two keys must differ")
    return problems
