"""Policy resolution and its config errors."""

from __future__ import annotations

from agi.policy import DEFAULT_RULE, Policy, Rule, parse_policy


def test_first_matching_rule_wins_and_default_applies():
    policy, problems = parse_policy({"rules": [
        {"name": "af-line", "did": ["27215550199"], "prompt_language": "af", "mode": "opt-in"},
        {"name": "us-ca", "caller_prefix": ["+1415"], "jurisdiction": "US-CA", "mode": "opt-in"},
        {"name": "za-mobiles", "did": ["2721555*"], "caller_prefix": ["2782"], "mode": "opt-out"},
        {"name": "fr", "language": ["fr"], "mode": "implied", "prompt_language": "fr"},
    ]}, "t.toml")
    assert problems == []
    assert policy.resolve(did="27215550199", caller="27821234567", language="en").name == "af-line"
    assert policy.resolve(did="1", caller="14155550100", language="en").name == "us-ca"
    assert policy.resolve(did="27215550100", caller="+27821234567", language="en").name == "za-mobiles"
    assert policy.resolve(did="27215550100", caller="27111234567", language="en") is DEFAULT_RULE
    assert policy.resolve(did="x", caller="", language="fr").mode == "implied"


def test_rule_with_no_matchers_is_a_catch_all():
    assert Policy((Rule("all", mode="implied"),)).resolve(did="", caller="", language="").name == "all"


def test_problems_name_rule_key_and_value():
    _, problems = parse_policy({"rules": [
        {"name": "a", "mode": "opt_in"}, {"name": "a", "timeout": 0}, {"nme": "x"},
        {"name": "b", "invalid": "ignore", "repeats": 9}], "extra": 1}, "t.toml")
    text = "\n".join(problems)
    assert "t.toml: [consent] extra: unknown key" in text
    assert "#1 mode = 'opt_in': expected one of opt-in, opt-out, implied" in text
    assert "#2 timeout = 0: expected seconds between 0.5 and 60" in text
    assert "#2 name = 'a': duplicate rule name" in text
    assert "#3 nme: unknown key" in text
    assert "#4 repeats = 9: expected 0 to 3" in text
    assert "#4 invalid = 'ignore': expected one of repeat, refuse" in text
