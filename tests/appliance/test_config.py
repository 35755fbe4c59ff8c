"""Config: typed, layered, and every problem named with its key, value and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from configtext import config_check, good_config

from appliance import config as cfg


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "callvault.toml"
    p.write_text(text)
    return p


def test_good_config_loads_typed_and_frozen(tmp_path):
    c = cfg.load(write(tmp_path, good_config(tmp_path, "[agi]\nlisten = \"0.0.0.0:4600\"\nallow = [\"10.0.0.5\"]\n"
                                                "advertise = \"10.0.0.2:4600\"\n")), env={})
    assert c.agi.address == ("0.0.0.0", 4600) and c.agi.url == "agi://10.0.0.2:4600"
    assert c.agi.allowed_peers == ("10.0.0.5",) and c.ami.permit == ("127.0.0.1/32",)
    assert c.ami.port == 5038 and c.ami.secret.reveal() == "s3cret-value"
    with pytest.raises(AttributeError):
        c.ami.port = 1  # frozen
    assert config_check(write(tmp_path, good_config(tmp_path))).returncode == 0


def test_secret_never_in_repr(tmp_path):
    c = cfg.load(write(tmp_path, good_config(tmp_path)), env={})
    assert "s3cret-value" not in repr(c) and "s3cret-value" not in str(c.ami)


def test_layers_env_over_file_and_secret_file(tmp_path):
    secret = tmp_path / "ami.secret"
    secret.write_text("from-file\n")
    text = good_config(tmp_path).replace('secret = "s3cret-value"', f'secret_file = "{secret}"')
    c = cfg.load(write(tmp_path, text), env={"CALLVAULT_AMI_PORT": "5039"})
    assert c.ami.secret.reveal() == "from-file" and c.ami.port == 5039
    c = cfg.load(write(tmp_path, text), env={"CALLVAULT_AMI_SECRET": "from-env"},
                 overrides={"ami.port": 6000})
    assert c.ami.secret.reveal() == "from-env" and c.ami.port == 6000


def test_each_problem_is_one_clear_line_and_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    text = good_config(tmp_path).replace('secret = "s3cret-value"', "").replace(
        "[spool]", "[spool]\nscan_intervall = 5\n").replace(
        f'path = "{tmp_path}/archive"', f'path = "{blocker}/archive"') + '\n[web]\nlisten = 8080\n'
    result = config_check(write(tmp_path, text))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    joined = "\n".join(lines)
    assert "[spool] scan_intervall: unknown key; did you mean 'scan_interval'?" in joined
    assert "[web] listen = 8080: expected a string in quotes" in joined
    assert "[ami] secret: missing; set secret or secret_file" in joined
    assert f"[storage] path = '{blocker}/archive': {blocker} is a file, not a directory" in joined


def test_unknown_section_and_bad_toml(tmp_path):
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, good_config(tmp_path, "[storag]\nbackend='s3'\n")), env={})
    assert e.value.problems == [f"{tmp_path}/callvault.toml: [storag]: unknown section; did you mean [storage]?"]
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, "[ami\n"), env={})
    assert "not valid TOML" in e.value.problems[0]


def test_s3_backend_requires_its_keys_and_hides_secret(tmp_path):
    text = good_config(tmp_path).replace(
        "[storage]\npath", "[storage]\nbackend = \"s3\"\nbucket = \"rec\"\nheader_bucket = \"rec\"\npath")
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, text), env={"CALLVAULT_STORAGE_SECRET_ACCESS_KEY": "topsecret"})
    text_all = "\n".join(e.value.problems)
    assert "[storage] endpoint_url = '': required when backend = \"s3\"" in text_all
    assert "[storage] header_bucket = 'rec': must differ from bucket" in text_all
    assert "topsecret" not in text_all


def test_private_key_in_recipients_is_refused(tmp_path):
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, good_config(tmp_path, '[archive]\nrecipients = ["AGE-SECRET-KEY-1XYZ"]\n')), env={})
    assert "this is a private identity (AGE-SECRET-KEY-...), not a recipient" in e.value.problems[0]
    assert "1XYZ" not in str(e.value)


def test_retention_classes_and_identity_file_are_checked(tmp_path):
    text = good_config(tmp_path, f"""[archive]
retention = ["short=GOVERNANCE:30d", "forever"]
[web]
identity_file = "{tmp_path}/nowhere/identity.txt"
identity_passphrase = "hunter2-hunter2"
""")
    r = config_check(write(tmp_path, text))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert any("[archive] retention" in ln and "'forever'" in ln and "NAME=COMPLIANCE|GOVERNANCE" in ln
               for ln in lines), lines
    assert any("[web] identity_file" in ln and "no such file" in ln for ln in lines), lines
    assert "hunter2" not in r.stderr + r.stdout
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "identity.txt").write_text("AGE-SECRET-KEY-1...\n")
    config = cfg.load(write(tmp_path, text.replace(', "forever"', "")), env={})
    assert config.archive.retention == ("short=GOVERNANCE:30d",)
    assert config.web.identity_passphrase.reveal() == "hunter2-hunter2"
    assert "hunter2" not in repr(config)


def test_the_renamed_key_bucket_names_its_new_name(tmp_path):
    text = good_config(tmp_path).replace("[storage]\npath", "[storage]\nkey_bucket = \"hdr\"\npath")
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, text), env={})
    assert any("[storage] key_bucket: unknown key; did you mean 'header_bucket'?" in p for p in e.value.problems)


def test_log_format_and_level_are_checked(tmp_path):
    c = cfg.load(write(tmp_path, good_config(tmp_path, '[log]\nformat = "json"\nlevel = "warning"\n')), env={})
    assert (c.log.format, c.log.level) == ("json", "warning")
    assert (cfg.load(write(tmp_path, good_config(tmp_path)), env={}).log.format) == "text"
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, good_config(tmp_path, '[log]\nformat = "xml"\nlevel = "loud"\n')), env={})
    assert e.value.problems == [
        f"{tmp_path}/callvault.toml: [log] format = 'xml': expected one of text, json",
        f"{tmp_path}/callvault.toml: [log] level = 'loud': expected one of debug, info, warning, error"]


def test_metrics_token_is_a_secret_and_never_empty(tmp_path):
    token = tmp_path / "metrics.token"
    token.write_text("tok-9f2c\n")
    c = cfg.load(write(tmp_path, good_config(tmp_path, f'[web]\nmetrics_token_file = "{token}"\n')), env={})
    assert c.web.metrics_token.reveal() == "tok-9f2c" and "tok-9f2c" not in repr(c)
    token.write_text("\n")  # an empty file must not quietly open /metrics
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, good_config(tmp_path, f'[web]\nmetrics_token_file = "{token}"\n')), env={})
    assert e.value.problems == [f"{tmp_path}/callvault.toml: [web] metrics_token: empty; put a random token "
                                "in it (or remove the key to leave /metrics open)"]
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, good_config(tmp_path, '[web]\nmetrics_token = 42\n')), env={})
    assert e.value.problems == [f"{tmp_path}/callvault.toml: [web] metrics_token = (hidden): expected a string"]


def test_found_by_fuzzing_bad_shapes_are_problems_not_crashes(tmp_path):
    """Each of these raised TypeError or ValueError out of load() (tests/appliance/test_config_fuzz.py)."""
    base = good_config(tmp_path)
    cases = {
        good_config(tmp_path, '[consent]\nrules = 5\n'): "[consent] rules = 5: expected [[consent.rules]] tables",
        base.replace('secret = "s3cret-value"', 'secret_file = "a\\u0000b"'):
            "[ami] secret_file = 'a\\x00b': cannot read the secret file (TypeError); point it at a readable file",
        base.replace(f'dir = "{tmp_path}/spool"', 'dir = "/tmp/a\\u0000b"'):
            "[spool] dir = '/tmp/a\\x00b': expected a path in quotes",
        base.replace("[spool]\n", "[spool]\nscan_interval = 0\n"):
            "[spool] scan_interval = 0.0: expected a number of seconds above 0",
        good_config(tmp_path, '[agi]\nread_timeout = nan\n'): "[agi] read_timeout = nan: expected a number of seconds above 0",
        good_config(tmp_path, '[archive]\nmax_attempts = 0\n'): "[archive] max_attempts = 0: expected at least 1",
    }
    for text, problem in cases.items():
        path = write(tmp_path, text)
        with pytest.raises(cfg.ConfigError) as e:
            cfg.load(path, env={})
        assert f"{path}: {problem}" in e.value.problems, (text, e.value.problems)


def test_ledger_anchor_keys_are_checked(tmp_path):
    c = cfg.load(write(tmp_path, good_config(tmp_path)), env={}, check_paths=False)
    assert (c.ledger.anchor_every, c.ledger.anchor_interval, c.ledger.anchor_retention) == (1000, "15m", "7y")
    assert c.ledger.interval_seconds == 900 and c.node.name
    bad = '[node]\nname = "a/b"\n[ledger]\nanchor_every = 0\nanchor_interval = "15 minutes"\nanchor_retention = "0y"\n'
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, good_config(tmp_path, bad)), env={}, check_paths=False)
    where = f"{tmp_path}/callvault.toml"
    duration = 'expected a whole number and a unit (s, m, h, d, y), e.g. "15m" or "7y"'
    assert e.value.problems == [
        (f"{where}: [node] name = 'a/b': expected 1-63 letters, digits, '_', '.' or '-', starting with a "
         "letter or digit (unique per node; default the host name)"),
        f"{where}: [ledger] anchor_every = 0: expected at least 1 (entries between anchors)",
        f"{where}: [ledger] anchor_interval = '15 minutes': {duration}",
        f"{where}: [ledger] anchor_retention = '0y': {duration}",
    ]


@pytest.mark.parametrize("agi, problems", [
    ('listen = "127.0.0.1:4573"', []),  # loopback: only loopback peers, no allow needed
    ('listen = "10.0.0.2:4573"', ["[agi] allow: missing while [agi] listen = '10.0.0.2:4573'"]),
    ('listen = "10.0.0.2:4573"\nallow = ["10.0.0.5", "10.1.0.0/16"]', []),
    ('listen = "0.0.0.0:4573"\nallow = ["10.0.0.5"]',
     ["[agi] advertise: missing while [agi] listen = '0.0.0.0:4573' listens on all addresses"]),
    ('listen = "[::]:4573"\nallow = ["fd00::5"]\nadvertise = "[fd00::2]:4573"', []),
    ('listen = "0.0.0.0:4573"\nallow = ["10.0.0.5"]\nadvertise = "pbx-agi"',
     ["[agi] advertise = 'pbx-agi': expected HOST:PORT"]),
    ('allow = ["10.0.0.300"]', ["[agi] allow = ['10.0.0.300']: '10.0.0.300' is not an address or network"]),
])
def test_agi_allow_and_advertise_are_required_beyond_loopback(tmp_path, agi, problems):
    path = write(tmp_path, good_config(tmp_path, f"[agi]\n{agi}\n"))
    if not problems:
        cfg.load(path, env={})
        return
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(path, env={})
    assert [p.split(": ", 1)[1][:len(want)] for p, want in zip(e.value.problems, problems)] == problems
    assert len(e.value.problems) == len(problems)
    result = config_check(path)
    assert result.returncode == 2 and problems[0] in result.stdout + result.stderr


@pytest.mark.parametrize("ami, problem", [
    ('permit = ["10.0.0.0/33"]', "[ami] permit = ['10.0.0.0/33']: '10.0.0.0/33' is not an address or network"),
    ("permit = []", "[ami] permit = []: empty"),
    ('test_call_username = "lab"', "[ami] test_call_username = 'lab': set it together with test_call_secret"),
])
def test_ami_permit_and_test_call_user_are_checked(tmp_path, ami, problem):
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(write(tmp_path, good_config(tmp_path).replace("[ami]\n", f"[ami]\n{ami}\n")), env={})
    assert [p.split(": ", 1)[1][:len(problem)] for p in e.value.problems] == [problem]


def test_an_implied_or_opt_out_rule_needs_its_notice_installed(tmp_path, english_prompts):
    import shutil

    from announcements.library import PromptLibrary

    sounds = tmp_path / "sounds"
    sounds.mkdir()
    rules = "".join(f'[[consent.rules]]\nname = "{name}"\nmode = "{mode}"\nprompt_language = "af"\n'
                    for name, mode in (("za-opt-in", "opt-in"), ("us-implied", "implied")))
    path = write(tmp_path, good_config(tmp_path, f'[prompts]\nsounds_dir = "{sounds}"\n{rules}'))
    result = config_check(path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'za-opt-in'" not in result.stderr
    assert (f"[[consent.rules]] 'us-implied' (mode = 'implied', prompt_language = 'af'): notice-implied is not "
            f"installed under {sounds}/callvault (nothing is installed (no manifest))") in result.stderr
    library = PromptLibrary(tmp_path / "library")
    shutil.copytree(english_prompts.root, library.root)
    library.install(sounds)
    assert config_check(path).returncode == 0, config_check(path).stderr  # af falls back to en
    # The English notice removed from the library, the rest installed again.
    library.master_path("en", "notice-implied").unlink()
    library.install(sounds)
    result = config_check(path)
    assert result.returncode == 2 and "'us-implied'" in result.stderr and "(tried af, en)" in result.stderr
    assert "`callvault prompts install --sounds-dir" in result.stderr
    # Installed, then changed by hand: what was installed is no longer what plays.
    shutil.copytree(english_prompts.root, library.root, dirs_exist_ok=True)
    library.install(sounds)
    (sounds / "callvault" / "en" / "notice-implied.ulaw").write_bytes(b"\xff" * 800)
    result = config_check(path)
    assert result.returncode == 2
    assert f"notice-implied for 'en': {sounds}/callvault/en/notice-implied.ulaw changed since it was installed" \
        in result.stderr


def test_pci_codes_default_and_reach_the_generated_features_conf(tmp_path):
    from agi.dialplan import snippets

    c = cfg.load(write(tmp_path, good_config(tmp_path, '[pci]\npause_code = "#7"\nresume_code = "#8"\n')),
                 env={}, check_paths=False)
    assert (c.pci.pause_code, c.pci.resume_code) == ("#7", "#8")
    features = snippets(c, "x")["features.conf"]
    assert "callvault-pause => #7,self,AGI(agi://127.0.0.1:4573/pause,dtmf)" in features
    assert "callvault-resume => #8,self,AGI(agi://127.0.0.1:4573/resume,dtmf)" in features
    default = cfg.load(write(tmp_path, good_config(tmp_path)), env={}, check_paths=False)
    assert (default.pci.pause_code, default.pci.resume_code) == ("*1", "*2")


@pytest.mark.parametrize("pci, message", [
    ('pause_code = "*x"', "[pci] pause_code = '*x': expected 1 to 8 of 0-9, *, #, A-D"),
    ('pause_code = ""', "[pci] pause_code = '': expected 1 to 8"),
    ('resume_code = "*1"', "[pci] pause_code = '*1': is the same as [pci] resume_code ('*1')"),
    ('pause_code = "*"', "[pci] pause_code = '*': is a prefix of [pci] resume_code ('*2')"),
    ('resume_code = "*0"', "[pci] resume_code = '*0': is the same as the revoke code ('*0')"),
])
def test_bad_pci_codes_are_named_and_config_check_exits_2(tmp_path, pci, message):
    path = write(tmp_path, good_config(tmp_path, f"[pci]\n{pci}\n"))
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(path, env={}, check_paths=False)
    assert any(message in p for p in e.value.problems), e.value.problems
    out = config_check(path)
    assert out.returncode == 2 and message in out.stdout + out.stderr


@pytest.mark.parametrize("value, ok", [("27", True), ("1", True), ("358", True), ("+27", False), ("027", False),
                                       ("2771", False), ("ZA", False)])
def test_default_country_is_a_calling_code(tmp_path, value, ok):
    path = write(tmp_path, good_config(tmp_path).replace("[privacy]\n", f'[privacy]\ndefault_country = "{value}"\n'))
    if ok:
        assert cfg.load(path, env={}, check_paths=False).privacy.default_country == value
        return
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(path, env={}, check_paths=False)
    assert e.value.problems == [f"{path}: [privacy] default_country = {value!r}: expected a calling code: 1-3 "
                                "digits without + or leading 0, e.g. \"27\" for South Africa"]


@pytest.mark.parametrize("value, ok", [("single", True), ("two-person", True), ("two", False), ("", False)])
def test_erasure_approval_is_single_or_two_person(tmp_path, value, ok):
    path = write(tmp_path, good_config(tmp_path).replace("[privacy]\n", f'[privacy]\nerasure_approval = "{value}"\n'))
    if ok:
        assert cfg.load(path, env={}, check_paths=False).privacy.erasure_approval == value
        return
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load(path, env={}, check_paths=False)
    assert e.value.problems == [f"{path}: [privacy] erasure_approval = {value!r}: expected \"single\" or \"two-person\""]
