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


def test_outbound_rules_match_the_dialled_prefix_and_inbound_ones_do_not():
    policy, problems = parse_policy({"rules": [
        {"name": "za-line", "did": ["27215550199"]},
        {"name": "us-ca-out", "match_dialled": ["+1415", "1415"], "parties": "all", "callee_refuses": "hangup"},
    ]}, "t.toml")
    assert problems == []
    out = policy.resolve(did="", caller="2001", language="en", dialled="14155550100")
    assert (out.name, out.all_parties, out.callee_refuses) == ("us-ca-out", True, "hangup")
    assert policy.resolve(did="", caller="2001", language="en", dialled="+14155550100").name == "us-ca-out"
    assert policy.resolve(did="", caller="2001", language="en", dialled="27215550199") is DEFAULT_RULE
    # an inbound call on the same number is not an outbound call to it
    assert policy.resolve(did="14155550100", caller="2001", language="en") is DEFAULT_RULE
    assert policy.named("us-ca-out") is out and policy.named("default") is DEFAULT_RULE
    assert policy.named("gone") is None


def test_keys_parties_and_dialled_problems_name_rule_key_and_value():
    policy, problems = parse_policy({"rules": [
        {"name": "a", "allow_key": 5, "refuse_key": "5"}, {"name": "b", "allow_key": "#"},
        {"name": "c", "refuse_key": "12", "parties": "both"}, {"name": "d", "callee_refuses": "drop"},
        {"name": "e", "did": ["1"], "match_dialled": ["1"]}, {"name": "f", "allow_key": 7, "refuse_key": 0}]}, "t.toml")
    text = "\n".join(problems)
    assert "#1 allow_key = '5', refuse_key = '5': the two keys must differ" in text
    assert "#2 allow_key = '#': expected one digit 0-9" in text
    assert "#3 refuse_key = '12': expected one digit 0-9" in text
    assert "#3 parties = 'both': expected one of one, all" in text
    assert "#4 callee_refuses = 'drop': expected one of connect, hangup" in text
    assert "#5: did and match_dialled together match no call" in text
    assert len(problems) == 6
    assert (policy.rules[5].allow_key, policy.rules[5].refuse_key) == ("7", "0")
