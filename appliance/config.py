"""The appliance's one configuration: typed, frozen, validated at start.

Layers, later wins: built-in defaults -> TOML file -> environment
(``CALLVAULT_<SECTION>_<KEY>``, e.g. ``CALLVAULT_AMI_SECRET``) -> command-line overrides.
Secrets may also come from ``<key>_file`` (the file's content, stripped). Every
problem is collected and reported as one line naming the key, the value and the fix;
secrets are never echoed.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agi.policy import Policy, parse_policy
from storage.dburl import mask, parse_url
from storage.durations import NODE_RE, duration_seconds, parse_duration
from storage.retention_classes import RetentionPolicy

from .configsection import Default, Section, key_types
from .configvalues import (
    AGE_SECRET,
    Secret,
    coerce,
    is_identity,
    read_secret,
    unwritable,
)
from .netconfig import (
    LOOPBACK_PEERS,
    listen_address,
    network_problems,
    web_problems,
)
from .nodeconfig import ROLES, role_problems
from .pciconfig import PciConfig, pci_problems


class ConfigError(Exception):
    """The configuration has problems; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class AgiConfig(Section):
    listen: str = "127.0.0.1:4573"
    read_timeout: float = 30.0
    # Peers that may connect (addresses or networks). Empty: loopback only, which is
    # allowed only while listen is a loopback address.
    allow: tuple[str, ...] = ()
    # HOST:PORT Asterisk dials (the generated dialplan's agi:// URL); required when
    # listen is a wildcard address such as 0.0.0.0. Empty: listen.
    advertise: str = ""
    # Progress() instead of Answer() before the notice: it plays as early media.
    early_media: bool = False

    @property
    def address(self) -> tuple[str, int]:
        return listen_address(self.listen)

    @property
    def url(self) -> str:
        """The agi:// URL the generated dialplan uses."""
        return f"agi://{self.advertise or self.listen}"

    @property
    def allowed_peers(self) -> tuple[str, ...]:
        """The peers the FastAGI server accepts: allow, or loopback."""
        return self.allow or LOOPBACK_PEERS


class AmiConfig(Section):
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callvault"
    secret: Secret | None = None
    # Networks the generated manager.conf user may log in from (`callvault dialplan`).
    permit: tuple[str, ...] = ("127.0.0.1/32",)
    # A second AMI user, with the `originate` class, for the admin page's lab test
    # calls; empty: no test calls. Never give the product's own user `originate`.
    test_call_username: str = ""
    test_call_secret: Secret | None = None
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0


class DatabaseConfig(Section):
    # sqlite:////path.db (one node, the default) or postgresql://user@host:5432/db (shared).
    url: str = "sqlite:////var/lib/callvault/callvault.db"

    @property
    def sqlite_path(self) -> Path | None:
        try:
            return parse_url(self.url).path
        except ValueError:
            return None


class NodeConfig(Section):
    # This node's name: its recordings' archive jobs are its own (its spool holds the
    # files). Unique among the nodes sharing one PostgreSQL database.
    name: str = Default(lambda: os.uname().nodename)  # the host name
    # "all" (one node does everything), "pbx" (beside Asterisk: FastAGI, AMI, archiver,
    # agent live view; recipients only) or "retrieval" (web apps, identity, retention).
    role: str = "all"


class SpoolConfig(Section):
    dir: Path = Path("/var/spool/asterisk/callvault")
    # The same directory as Asterisk names it in MixMonitor(); differs from
    # ``dir`` only when Asterisk runs in a chroot or container. Empty = ``dir``.
    asterisk_dir: str = ""
    # Seconds between scans for recordings no event told us about.
    scan_interval: float = 60.0

    @property
    def asterisk_path(self) -> str:
        return self.asterisk_dir or str(self.dir)


class ArchiveConfig(Section):
    recipients: tuple[str, ...] = ()
    workers: int = 2
    max_attempts: int = 8
    # Retention classes beyond the built-in ones ("default" 90 days, "legal" 5 years),
    # e.g. ["short=GOVERNANCE:30d"]; consent rules name them in `retention`.
    retention: tuple[str, ...] = ()
    # "mono": both sides mixed; "stereo": caller left, the other side right.
    channels: str = "mono"


class LedgerConfig(Section):
    # The ledger head is anchored (written under Object Lock COMPLIANCE) after this many
    # new entries or this long, whichever comes first, and at a clean shutdown.
    anchor_every: int = 1000
    anchor_interval: str = "15m"
    anchor_retention: str = "7y"

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.anchor_interval)


class StorageConfig(Section):
    backend: str = "local"
    path: Path = Path("/var/lib/callvault/archive")
    endpoint_url: str = ""
    region: str = "us-east-1"
    bucket: str = ""
    header_bucket: str = ""
    # This node's own keys: those of its role (pbx or retrieval); admin keys only
    # for `callvault storage init`.
    access_key_id: str = ""
    secret_access_key: Secret | None = None
    # The storage roles' S3 users (IAM user ARNs) and access key ids: `storage init`
    # writes the bucket policies for them; `config check` compares the keys.
    pbx_principal: str = ""
    pbx_access_key_id: str = ""
    retrieval_principal: str = ""
    retrieval_access_key_id: str = ""


class WebConfig(Section):
    listen: str = "127.0.0.1:8080"
    # The age identity that decrypts recordings for playback and export. Set it only
    # on the retrieval node; without it the web app lists and audits but never decrypts.
    identity_file: Path | None = None
    identity_passphrase: Secret | None = None
    # When set, /metrics answers only requests with "Authorization: Bearer <token>".
    metrics_token: Secret | None = None
    # Native TLS: PEM certificate chain and private key (both or neither).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Reverse proxies (addresses or networks) whose forwarding headers are believed,
    # and which headers they set: "x-forwarded" (X-Forwarded-For/-Proto) or
    # "forwarded" (RFC 7239). From any other peer those headers are ignored.
    trusted_proxies: tuple[str, ...] = ()
    proxy_headers: str = "x-forwarded"

    @property
    def address(self) -> tuple[str, int]:
        return listen_address(self.listen)


class PrivacyConfig(Section):
    # Key for the keyed HMAC of phone numbers; generated on first start if missing.
    hmac_key_file: Path = Path("/var/lib/callvault/hmac.key")
    # Calling code of the country whose national numbers (0...) callers give, e.g. "27"
    # for South Africa: a data-subject search then also tries the E.164 form. Empty:
    # numbers are searched only as given.
    default_country: str = ""
    # Who must agree before an erasure runs: "single" (the requesting officer) or
    # "two-person" (a different officer approves: `callvault erasure approve`).
    erasure_approval: str = "single"


class PromptsConfig(Section):
    # Asterisk's sounds directory (astdatadir/sounds) as this host sees it.
    sounds_dir: Path = Path("/usr/share/asterisk/sounds")
    library: Path = Path("/var/lib/callvault/prompts")


class LogConfig(Section):
    # "text" for people, "json" (one object a line) for log collectors.
    format: str = "text"
    level: str = "info"


class Config(Section):
    agi: AgiConfig = Default(AgiConfig)
    ami: AmiConfig = Default(AmiConfig)
    database: DatabaseConfig = Default(DatabaseConfig)
    node: NodeConfig = Default(NodeConfig)
    spool: SpoolConfig = Default(SpoolConfig)
    archive: ArchiveConfig = Default(ArchiveConfig)
    ledger: LedgerConfig = Default(LedgerConfig)
    storage: StorageConfig = Default(StorageConfig)
    web: WebConfig = Default(WebConfig)
    privacy: PrivacyConfig = Default(PrivacyConfig)
    prompts: PromptsConfig = Default(PromptsConfig)
    log: LogConfig = Default(LogConfig)
    pci: PciConfig = Default(PciConfig)
    # [consent] holds a list of rules; parsed by agi.policy, not field by field.
    consent: Policy = Default(Policy)


SECTIONS: dict[str, type[Section]] = {k: t for k, t in key_types(Config).items() if k != "consent"}
# Keys that were renamed: the error for the old name suggests the new one.
RENAMED = {("storage", "key_bucket"): "header_bucket"}
SECRET_KEYS = {("ami", "secret"), ("ami", "test_call_secret"), ("storage", "secret_access_key"), ("web", "identity_passphrase"),
               ("web", "metrics_token")}
CHOICES = {("storage", "backend"): ("local", "s3"), ("log", "format"): ("text", "json"),
           ("web", "proxy_headers"): ("x-forwarded", "forwarded"), ("node", "role"): ROLES,
           ("archive", "channels"): ("mono", "stereo"),
           ("log", "level"): ("debug", "info", "warning", "error")}
# Paths the process must be able to write to (created if missing).
WRITABLE = (("spool", "dir"), ("storage", "path"), ("privacy", "hmac_key_file"))




def _fmt(section: str, key: str) -> str:
    return f"[{section}] {key}"


def _show(section: str, key: str, value: Any) -> str:
    if (section, key) in SECRET_KEYS:
        return "(hidden)"
    if (section, key) == ("database", "url") and isinstance(value, str):
        return repr(mask(value))
    if AGE_SECRET.search(repr(value)):
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
            import difflib  # only for a mistake: not in every classic AGI process

            known_sections = [*SECTIONS, "consent"]
            hint = difflib.get_close_matches(section, known_sections, n=1)
            fix = f"did you mean [{hint[0]}]?" if hint else f"known sections: {', '.join(known_sections)}"
            problems.append(f"{where}: [{section}]: unknown section; {fix}")
            continue
        if not isinstance(body, dict):
            problems.append(f"{where}: {section} = ({type(body).__name__}): expected a [{section}] table")
            continue
        known = key_types(SECTIONS[section])
        for key, value in body.items():
            base = key[:-5] if key.endswith("_file") else None
            if base and (section, base) in SECRET_KEYS:
                try:
                    secret = read_secret(value)
                except (OSError, TypeError, ValueError) as e:
                    problems.append(f"{where}: {_fmt(section, key)} = {value!r}: cannot read the secret "
                                    f"file ({e.__class__.__name__}); point it at a readable file")
                    continue
                values[section][base] = (secret, True)
                continue
            if key not in known:
                import difflib

                hint = [RENAMED[section, key]] if (section, key) in RENAMED else \
                    difflib.get_close_matches(key, known, n=1)
                fix = f"did you mean {hint[0]!r}?" if hint else f"known keys: {', '.join(known)}"
                problems.append(f"{where}: {_fmt(section, key)}: unknown key; {fix}")
                continue
            values[section].setdefault(key, (value, False))

    for section, cls in SECTIONS.items():
        for key in key_types(cls):
            name = f"CALLVAULT_{section}_{key}".upper()
            if name in env:
                values[section][key] = (env[name], True)
            file_name = name + "_FILE"
            if (section, key) in SECRET_KEYS and file_name in env:
                try:
                    values[section][key] = (read_secret(env[file_name]), True)
                except (OSError, ValueError) as e:
                    problems.append(f"{file_name}={env[file_name]!r}: cannot read the secret file "
                                    f"({e.__class__.__name__}); point it at a readable file")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in SECTIONS or key not in key_types(SECTIONS[section]):
            problems.append(f"override {dotted}: unknown key")
            continue
        values[section][key] = (value, isinstance(value, str))

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        hints = key_types(cls)
        kwargs = {}
        for key, (value, from_text) in values[section].items():
            try:
                kwargs[key] = coerce(section, key, hints[key], value, from_text)
            except ValueError as e:
                problems.append(f"{where}: {_fmt(section, key)} = {_show(section, key, value)}: {e}")
        built[section] = cls(**kwargs)
    config = Config(**built, consent=policy)
    problems += _validate(config, where, check_paths)
    if problems:
        # Whatever slipped through (a rule's value, a list quoted whole): never echo an identity.
        raise ConfigError([AGE_SECRET.sub("AGE-SECRET-KEY-(hidden)", p) for p in problems])
    return config



def _validate(c: Config, where: str, check_paths: bool) -> list[str]:
    out = []

    def bad(section: str, key: str, value: Any, fix: str) -> None:
        out.append(f"{where}: {_fmt(section, key)} = {_show(section, key, value)}: {fix}")

    for section, key in (("agi", "listen"), ("web", "listen")):
        value = getattr(getattr(c, section), key)
        try:
            listen_address(value)
        except ValueError as e:
            bad(section, key, value, str(e))
    out += network_problems(c, where)
    out += pci_problems(c, where)
    if not 1 <= c.ami.port <= 65535:
        bad("ami", "port", c.ami.port, "expected a port between 1 and 65535")
    if (c.ami.secret is None or not c.ami.secret) and c.node.role != "retrieval":  # it never uses AMI
        out.append(f"{where}: [ami] secret: missing; set secret or secret_file in [ami], "
                   "or CALLVAULT_AMI_SECRET in the environment")
    if c.web.metrics_token is not None and not c.web.metrics_token.reveal().strip():
        # An empty token file must not quietly turn the check off.
        out.append(f"{where}: [web] metrics_token: empty; put a random token in it (or remove the key "
                   "to leave /metrics open)")
    try:
        parse_url(c.database.url)
    except ValueError as e:
        bad("database", "url", c.database.url, str(e).removeprefix(mask(c.database.url) + ": "))
    if not NODE_RE.match(c.node.name):
        bad("node", "name", c.node.name, "expected 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit "
            "(unique per node; default the host name)")
    for (section, key), choices in CHOICES.items():
        value = getattr(getattr(c, section), key)
        if value not in choices:
            bad(section, key, value, f"expected one of {', '.join(choices)}")
    for i, r in enumerate(c.archive.recipients):
        if is_identity(r):
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
    if c.ledger.anchor_every < 1:
        bad("ledger", "anchor_every", c.ledger.anchor_every, "expected at least 1 (entries between anchors)")
    for key in ("anchor_interval", "anchor_retention"):
        try:
            parse_duration(getattr(c.ledger, key))
        except ValueError as e:
            bad("ledger", key, getattr(c.ledger, key), str(e))
    if c.privacy.default_country and not (c.privacy.default_country.isascii() and
                                          c.privacy.default_country.isdigit() and
                                          len(c.privacy.default_country) <= 3 and c.privacy.default_country[0] != "0"):
        bad("privacy", "default_country", c.privacy.default_country, "expected a calling code: 1-3 digits "
            "without + or leading 0, e.g. \"27\" for South Africa")
    if c.privacy.erasure_approval not in ("single", "two-person"):
        bad("privacy", "erasure_approval", c.privacy.erasure_approval, 'expected "single" or "two-person"')
    if c.ami.reconnect_min > c.ami.reconnect_max:
        bad("ami", "reconnect_min", c.ami.reconnect_min, f"expected at most reconnect_max ({c.ami.reconnect_max:g})")
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
    out += role_problems(c, where)
    from .storageroles import storage_problems

    out += web_problems(c.web, where, check_paths)
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
        out += storage_problems(c.storage, where)
    if check_paths:
        paths = [(s, k, getattr(getattr(c, s), k)) for s, k in WRITABLE]
        db = c.database.sqlite_path
        if db is not None:
            paths.append(("database", "url", db))
        for section, key, p in paths:
            if (section, key) == ("storage", "path") and c.storage.backend != "local":
                continue
            target = p if key in ("dir", "path") else p.parent
            problem = unwritable(Path(target))
            if problem:
                bad(section, key, str(p), problem)
    return out
