"""The config loader under random input: random text, random TOML documents built from
the real section and key names, random environment values. Each either loads into a
Config that keeps the documented invariants or raises ConfigError, one line per
problem naming where it is, and a secret's value never appears in a message.
Bounded: a fixed number of examples, derandomized (the same ones in every run)."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import config as cfg
from appliance.configsection import key_types

MARKER = "S3CRET-ZZQ"  # stands for any secret: must never be echoed
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SECTIONS = {name: list(key_types(cls)) for name, cls in cfg.SECTIONS.items()}
KEYS = sorted({k for keys in SECTIONS.values() for k in keys} | {"secret_file", "metrics_token_file"})

scalars = st.one_of(
    st.text(max_size=12), st.sampled_from(["", "0", "-1", "1e999", "nan", "127.0.0.1:0", "::1", "age1x",
                                           "/", "/dev/null", "a\x00b", "../..", "json", "s3"]),
    st.integers(min_value=-2**63, max_value=2**63 - 1), st.sampled_from([0, -1, 65536, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)),
    st.dates(), st.times())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                      max_leaves=6)
tables = st.dictionaries(st.sampled_from(KEYS) | st.text(min_size=1, max_size=8), values, max_size=6)
documents = st.dictionaries(st.sampled_from([*SECTIONS, "consent", "Log", "wbe"]),
                            tables | values | st.fixed_dictionaries({"rules": values}), max_size=5)


def toml_key(key: str) -> str:
    return json.dumps(key)  # a quoted key is valid for any text


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(doc: dict) -> str:
    lines = []
    for section, body in doc.items():
        lines.append(f"{toml_key(section)} = {toml_value(body)}")
    return "\n".join(lines) + "\n"


def outcome(path: Path, **kwargs) -> cfg.Config | cfg.ConfigError:
    try:
        return cfg.load(path, check_paths=kwargs.pop("check_paths", False), **kwargs)
    except cfg.ConfigError as e:
        return e


def check(result: cfg.Config | cfg.ConfigError, path: Path) -> None:
    if isinstance(result, cfg.ConfigError):
        assert result.problems, "a ConfigError without a problem"
        for line in result.problems:
            assert line.startswith((f"{path}: ", "CALLVAULT_")) and "\n" not in line, line
            assert MARKER not in line, f"a secret was echoed: {line}"
        return
    c = result
    assert c.ami.secret and 1 <= c.ami.port <= 65535 and c.archive.workers >= 1 and c.archive.max_attempts >= 1
    assert c.storage.backend in ("local", "s3") and c.log.format in ("text", "json")
    for section in SECTIONS:
        for key, value in vars(getattr(c, section)).items():
            if isinstance(value, float):
                assert math.isfinite(value) and value > 0, (section, key, value)
    c.agi.address, c.web.address  # parse


@FUZZ
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_random_text_is_refused_cleanly(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "callvault.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    check(outcome(path, env={}), path)


@FUZZ
@given(doc=documents)
def test_random_documents_load_or_name_every_problem(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "callvault.toml"
    path.write_text(to_toml(doc))
    check(outcome(path, env={}), path)


# Near-valid documents: a good config with a few of its real keys given random values,
# so that many load and the invariants of a loaded Config are checked too.
REAL_KEYS = [(s, k) for s, keys in SECTIONS.items() for k in keys] + \
    [(s, k + "_file") for s, k in sorted(cfg.SECRET_KEYS)] + [("consent", "rules")] * 4
paths = st.sampled_from(["", ".", "/", "a\x00b", "/dev/null", "/nonexistent/deep/x", "/proc/1/x", "sqlite:///",
                         "sqlite:////a\x00b", "relative/x"])
rule_tables = st.lists(st.dictionaries(st.sampled_from(["name", "did", "mode", "timeout", "repeats", "retention",
                                                        "invalid"]), values, max_size=3), max_size=2)


def value_for(key: str) -> st.SearchStrategy:
    if key.endswith(("_file", "dir", "path", "library", "url")):
        return paths | scalars
    return st.one_of(scalars, st.lists(scalars, max_size=2), values, rule_tables)


changes = st.lists(st.sampled_from(REAL_KEYS).flatmap(lambda sk: st.tuples(st.just(sk), value_for(sk[1]))),
                   max_size=3)


@FUZZ
@given(changes=changes)
def test_random_values_for_real_keys_load_or_name_every_problem(tmp_path_factory, changes):
    root = tmp_path_factory.mktemp("cfg")
    path = root / "callvault.toml"
    doc: dict = {"ami": {"secret": MARKER}, "database": {"url": f"sqlite:///{root}/db"}}
    for (section, key), value in changes:
        if (section, key) in cfg.SECRET_KEYS and isinstance(value, str):
            value = MARKER + value
        doc.setdefault(section, {})[key] = value
    path.write_text(to_toml(doc))
    check(outcome(path, env={}, check_paths=True), path)


@FUZZ
@given(env=st.dictionaries(st.sampled_from([f"CALLVAULT_{s}_{k}".upper() for s, keys in SECTIONS.items()
                                            for k in keys]),
                           st.text(max_size=10) | st.sampled_from(["nan", "-inf", "0", "²", "1e3", "yes", "a,b"]),
                           max_size=4))
def test_random_environment_loads_or_names_every_problem(tmp_path_factory, env):
    root = tmp_path_factory.mktemp("cfg")
    path = root / "callvault.toml"
    # A good file whose secrets hold the marker: whatever the environment breaks, no
    # message may show them.
    path.write_text(f'[ami]\nsecret = "{MARKER}"\n[web]\nmetrics_token = "{MARKER}"\n'
                    f'identity_passphrase = "{MARKER}"\n[database]\nurl = "sqlite:///{root}/db"\n')
    check(outcome(path, env=env), path)


@FUZZ
@given(value=values)
def test_a_random_secret_value_is_never_echoed(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("cfg") / "callvault.toml"
    wrapped = [MARKER, value] if not isinstance(value, dict) else {**value, "k": MARKER}
    path.write_text(f"[ami]\nsecret = {toml_value(wrapped)}\n[storage]\nsecret_access_key = {toml_value(wrapped)}\n")
    result = outcome(path, env={})
    assert isinstance(result, cfg.ConfigError)
    check(result, path)
