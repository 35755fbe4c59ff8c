"""The appliance's one configuration: typed, frozen, validated at start.

Layers, later wins: built-in defaults -> TOML file -> environment
(``CALLVAULT_<SECTION>_<KEY>``, e.g. ``CALLVAULT_AMI_SECRET``) -> command-line overrides.
Secrets may also come from ``<key>_file`` (the file's content, stripped). Every
problem is collected and reported as one line naming the key, the value and the fix;
secrets are never echoed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, get_args, get_origin, get_type_hints

from agi.policy import Policy, parse_policy


class ConfigError(Exception):
    """The configuration has problems; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


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


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. \"127.0.0.1:4573\"")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class AgiConfig:
    listen: str = "127.0.0.1:4573"
    read_timeout: float = 30.0

    @property
    def address(self) -> tuple[str, int]:
        return _listen(self.listen)


@dataclass(frozen=True)
class AmiConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callvault"
    secret: Secret | None = None
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:////var/lib/callvault/callvault.db"

    @property
    def sqlite_path(self) -> Path | None:
        if self.url.startswith("sqlite:///"):
            return Path(self.url[len("sqlite:///"):])
        return None


@dataclass(frozen=True)
class SpoolConfig:
    dir: Path = Path("/var/spool/asterisk/callvault")
    # The same directory as Asterisk names it in MixMonitor(); differs from
    # ``dir`` only when Asterisk runs in a chroot or container. Empty = ``dir``.
    asterisk_dir: str = ""
    # Seconds between scans for recordings no event told us about.
    scan_interval: float = 60.0

    @property
    def asterisk_path(self) -> str:
        return self.asterisk_dir or str(self.dir)


@dataclass(frozen=True)
class ArchiveConfig:
    recipients: tuple[str, ...] = ()
    workers: int = 2
    max_attempts: int = 8
    # Retention classes beyond the built-in ones ("default" 90 days, "legal" 5 years),
    # e.g. ["short=GOVERNANCE:30d"]; consent rules name them in `retention`.
    retention: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorageConfig:
    backend: str = "local"
    path: Path = Path("/var/lib/callvault/archive")
    endpoint_url: str = ""
    region: str = "us-east-1"
    bucket: str = ""
    header_bucket: str = ""
    access_key_id: str = ""
    secret_access_key: Secret | None = None


@dataclass(frozen=True)
class WebConfig:
    listen: str = "127.0.0.1:8080"
    # The age identity that decrypts recordings for playback and export. Set it only
    # on the retrieval node; without it the web app lists and audits but never decrypts.
    identity_file: Path | None = None
    identity_passphrase: Secret | None = None
    # When set, /metrics answers only requests with "Authorization: Bearer <token>".
    metrics_token: Secret | None = None

    @property
    def address(self) -> tuple[str, int]:
        return _listen(self.listen)


@dataclass(frozen=True)
class PrivacyConfig:
    # Key for the keyed HMAC of phone numbers; generated on first start if missing.
    hmac_key_file: Path = Path("/var/lib/callvault/hmac.key")


@dataclass(frozen=True)
class PromptsConfig:
    # Asterisk's sounds directory (astdatadir/sounds) as this host sees it.
    sounds_dir: Path = Path("/usr/share/asterisk/sounds")
    library: Path = Path("/var/lib/callvault/prompts")


@dataclass(frozen=True)
class LogConfig:
    # "text" for people, "json" (one object a line) for log collectors.
    format: str = "text"
    level: str = "info"


@dataclass(frozen=True)
class Config:
    agi: AgiConfig = field(default_factory=AgiConfig)
    ami: AmiConfig = field(default_factory=AmiConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    web: WebConfig = field(default_factory=WebConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # [consent] holds a list of rules; parsed by agi.policy, not field by field.
    consent: Policy = field(default_factory=Policy)


SECTIONS: dict[str, type] = {f.name: get_type_hints(Config)[f.name]
                             for f in dataclasses.fields(Config) if f.name != "consent"}
# Keys that were renamed: the error for the old name suggests the new one.
RENAMED = {("storage", "key_bucket"): "header_bucket"}
SECRET_KEYS = {("ami", "secret"), ("storage", "secret_access_key"), ("web", "identity_passphrase"),
               ("web", "metrics_token")}
CHOICES = {("storage", "backend"): ("local", "s3"), ("log", "format"): ("text", "json"),
           ("log", "level"): ("debug", "info", "warning", "error")}
# Paths the process must be able to write to (created if missing).
WRITABLE = (("spool", "dir"), ("storage", "path"), ("privacy", "hmac_key_file"))


def _fields(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _fmt(section: str, key: str) -> str:
    return f"[{section}] {key}"


def _coerce(section: str, key: str, typ: Any, value: Any, from_text: bool) -> Any:
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


def _read_secret(path: Any) -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise TypeError("not a path")
    return Path(path).read_text().strip()


_AGE_SECRET = re.compile(r"AGE-SECRET-KEY-[0-9A-Za-z]+", re.IGNORECASE)


def _is_identity(value: str) -> bool:
    return value.strip().upper().startswith("AGE-SECRET-KEY-")


def _show(section: str, key: str, value: Any) -> str:
    if (section, key) in SECRET_KEYS:
        return "(hidden)"
    if _AGE_SECRET.search(repr(value)):
        return "(hidden: holds a private age identity)"
    return repr(value)


def load(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None, check_paths: bool = True) -> Config:
    """Build the config from defaults, the file, the environment and overrides.

    ``overrides`` maps ``"section.key"`` to a value (from the command line).
    Raises ConfigError listing every problem at once.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError([f"{path}: file not found; pass an existing file with -c"]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    where = str(path) if path else "config"

    policy, policy_problems = parse_policy(raw.pop("consent", None), where)
    problems += policy_problems
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for section, body in raw.items():
        if section not in SECTIONS:
            known_sections = [*SECTIONS, "consent"]
            hint = difflib.get_close_matches(section, known_sections, n=1)
            fix = f"did you mean [{hint[0]}]?" if hint else f"known sections: {', '.join(known_sections)}"
            problems.append(f"{where}: [{section}]: unknown section; {fix}")
            continue
        if not isinstance(body, dict):
            problems.append(f"{where}: {section} = ({type(body).__name__}): expected a [{section}] table")
            continue
        known = _fields(SECTIONS[section])
        for key, value in body.items():
            base = key[:-5] if key.endswith("_file") else None
            if base and (section, base) in SECRET_KEYS:
                try:
                    secret = _read_secret(value)
                except (OSError, TypeError, ValueError) as e:
                    problems.append(f"{where}: {_fmt(section, key)} = {value!r}: cannot read the secret "
                                    f"file ({e.__class__.__name__}); point it at a readable file")
                    continue
                values[section][base] = (secret, True)
                continue
            if key not in known:
                hint = [RENAMED[section, key]] if (section, key) in RENAMED else \
                    difflib.get_close_matches(key, known, n=1)
                fix = f"did you mean {hint[0]!r}?" if hint else f"known keys: {', '.join(known)}"
                problems.append(f"{where}: {_fmt(section, key)}: unknown key; {fix}")
                continue
            values[section].setdefault(key, (value, False))

    for section, cls in SECTIONS.items():
        for key in _fields(cls):
            name = f"CALLVAULT_{section}_{key}".upper()
            if name in env:
                values[section][key] = (env[name], True)
            file_name = name + "_FILE"
            if (section, key) in SECRET_KEYS and file_name in env:
                try:
                    values[section][key] = (_read_secret(env[file_name]), True)
                except (OSError, ValueError) as e:
                    problems.append(f"{file_name}={env[file_name]!r}: cannot read the secret file "
                                    f"({e.__class__.__name__}); point it at a readable file")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in SECTIONS or key not in _fields(SECTIONS[section]):
            problems.append(f"override {dotted}: unknown key")
            continue
        values[section][key] = (value, isinstance(value, str))

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        hints = _fields(cls)
        kwargs = {}
        for key, (value, from_text) in values[section].items():
            try:
                kwargs[key] = _coerce(section, key, hints[key], value, from_text)
            except ValueError as e:
                problems.append(f"{where}: {_fmt(section, key)} = {_show(section, key, value)}: {e}")
        built[section] = cls(**kwargs)
    config = Config(**built, consent=policy)
    problems += _validate(config, where, check_paths)
    if problems:
        # Whatever slipped through (a rule's value, a list quoted whole): never echo an identity.
        raise ConfigError([_AGE_SECRET.sub("AGE-SECRET-KEY-(hidden)", p) for p in problems])
    return config


def file_warnings(c: Config) -> list[str]:
    """Secret key files that others than their owner may read (``config check`` and ``serve``
    say so; they still run: the mode may be the administrator's deliberate choice)."""
    from storage.private import exposure

    out = []
    for section, key in (("web", "identity_file"), ("privacy", "hmac_key_file")):
        path = getattr(getattr(c, section), key)
        why = exposure(path) if path is not None else None
        if why:
            out.append(f"{_fmt(section, key)} = {str(path)!r}: {why}, and it is a secret key; "
                       f"run `chmod 600 {path}`")
    return out


def _validate(c: Config, where: str, check_paths: bool) -> list[str]:
    out = []

    def bad(section: str, key: str, value: Any, fix: str) -> None:
        out.append(f"{where}: {_fmt(section, key)} = {_show(section, key, value)}: {fix}")

    for section, key in (("agi", "listen"), ("web", "listen")):
        value = getattr(getattr(c, section), key)
        try:
            _listen(value)
        except ValueError as e:
            bad(section, key, value, str(e))
    if not 1 <= c.ami.port <= 65535:
        bad("ami", "port", c.ami.port, "expected a port between 1 and 65535")
    if c.ami.secret is None or not c.ami.secret:
        out.append(f"{where}: [ami] secret: missing; set secret or secret_file in [ami], "
                   "or CALLVAULT_AMI_SECRET in the environment")
    if c.web.metrics_token is not None and not c.web.metrics_token.reveal().strip():
        # An empty token file must not quietly turn the check off.
        out.append(f"{where}: [web] metrics_token: empty; put a random token in it (or remove the key "
                   "to leave /metrics open)")
    if c.database.sqlite_path is None:
        bad("database", "url", c.database.url, "expected sqlite:////absolute/path.db")
    for (section, key), choices in CHOICES.items():
        value = getattr(getattr(c, section), key)
        if value not in choices:
            bad(section, key, value, f"expected one of {', '.join(choices)}")
    for i, r in enumerate(c.archive.recipients):
        if _is_identity(r):
            out.append(f"{where}: [archive] recipients[{i}]: this is a private identity (AGE-SECRET-KEY-...), "
                       "not a recipient; put its public key (age1..., `age-keygen -y FILE` prints it) here and "
                       "keep the identity on the retrieval node only")
        elif not r.startswith("age1"):
            bad("archive", "recipients", r, "expected an age public key (age1...); "
                "never put a private AGE-SECRET-KEY here: run `callvault keys generate`")
    for section, key in (("archive", "workers"), ("archive", "max_attempts")):
        if getattr(getattr(c, section), key) < 1:
            bad(section, key, getattr(getattr(c, section), key), "expected at least 1")
    for section in SECTIONS:  # timeouts and intervals: nan, inf, 0 or less would hang or spin
        for key, value in vars(getattr(c, section)).items():
            if isinstance(value, float) and not (math.isfinite(value) and value > 0):
                bad(section, key, value, "expected a number of seconds above 0")
    if c.ami.reconnect_min > c.ami.reconnect_max:
        bad("ami", "reconnect_min", c.ami.reconnect_min, f"expected at most reconnect_max ({c.ami.reconnect_max:g})")
    from archiver.retention import RetentionPolicy

    try:
        classes = RetentionPolicy.parse(c.archive.retention)
    except ValueError as e:
        bad("archive", "retention", list(c.archive.retention), str(e))
    else:
        for rule in c.consent.rules:
            if rule.retention not in classes:
                out.append(f"{where}: [consent] rule {rule.name!r} retention = {rule.retention!r}: no such "
                           f"retention class (known: {', '.join(sorted(classes.rules))}); define it in "
                           "[archive] retention, e.g. \"%s=COMPLIANCE:1y\"" % rule.retention)
    if check_paths and c.web.identity_file is not None and not c.web.identity_file.is_file():
        bad("web", "identity_file", str(c.web.identity_file), "no such file; point it at the age identity "
            "written by `callvault keys generate`, or remove the key on nodes that never decrypt")
    if c.storage.backend == "s3":
        for key in ("endpoint_url", "bucket", "header_bucket", "access_key_id"):
            if not getattr(c.storage, key):
                bad("storage", key, "", "required when backend = \"s3\"")
        if not c.storage.secret_access_key:
            out.append(f"{where}: [storage] secret_access_key: missing; set it, secret_access_key_file, "
                       "or CALLVAULT_STORAGE_SECRET_ACCESS_KEY")
        if c.storage.bucket and c.storage.bucket == c.storage.header_bucket:
            bad("storage", "header_bucket", c.storage.header_bucket, "must differ from bucket: headers must "
                "stay deletable while payloads are locked")
    if check_paths:
        paths = [(s, k, getattr(getattr(c, s), k)) for s, k in WRITABLE]
        db = c.database.sqlite_path
        if db is not None:
            paths.append(("database", "url", db))
        for section, key, p in paths:
            if (section, key) == ("storage", "path") and c.storage.backend != "local":
                continue
            target = p if key in ("dir", "path") else p.parent
            problem = _unwritable(Path(target))
            if problem:
                bad(section, key, str(p), problem)
    return out


def _unwritable(path: Path) -> str | None:
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
