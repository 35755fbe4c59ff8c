"""Users of the web app, their roles, password hashes and login sessions.

Passwords are hashed with scrypt (``hashlib.scrypt``; N=2**17, r=8, p=1, 32-byte
output, 16-byte random salt: OWASP's recommended minimum, ~0.4 s and 128 MiB per
hash). The stored form names its parameters, ``scrypt$17$8$1$<salt>$<hash>``
(log2 N, base64 without padding), so a later cost increase rehashes on the next login.

A user has one role (``agent``, ``supervisor``, ``officer``, ``admin``), can be
disabled (login refused, sessions ended) and, for agents, owns *agent identifiers*
that attribute calls to them (see ``appliance/web/live.py``):

- ``did:<digits>``: calls to this DID (a direct line) are the user's;
- ``TECH/resource`` (e.g. ``PJSIP/1001``): the user's phone; a call bridged with a
  channel named ``PJSIP/1001-...`` (or ``PJSIP/1001`` itself) is the user's.

Sessions are random 256-bit tokens held by the browser; only their SHA-256 is stored,
so a copy of the database does not yield usable cookies. Each session carries its
own CSRF token. Blocking throughout: call from a thread in async code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterable

from .db import Database
from .errors import NotFound, PermanentError

ROLES = ("agent", "supervisor", "officer", "admin")
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}\Z")
_DID_RE = re.compile(r"did:\+?[0-9]{2,20}\Z")
_CHANNEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}/[A-Za-z0-9@._+#-]{1,80}\Z")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024

# ``user`` is a reserved word in PostgreSQL: statements quote the column, "user".
MIGRATIONS = {
    "sqlite": ["""
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        role        TEXT NOT NULL,
        password    TEXT NOT NULL,
        agent_ids   TEXT NOT NULL DEFAULT '[]',
        disabled    INTEGER NOT NULL DEFAULT 0,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  TEXT PRIMARY KEY,
        user        TEXT NOT NULL REFERENCES users(name),
        csrf        TEXT NOT NULL,
        created_at  REAL NOT NULL,
        last_seen   REAL NOT NULL,
        expires_at  REAL NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user);
    """],
    "postgresql": ["""
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        role        TEXT NOT NULL,
        password    TEXT NOT NULL,
        agent_ids   TEXT NOT NULL DEFAULT '[]',
        disabled    INTEGER NOT NULL DEFAULT 0,
        created_at  DOUBLE PRECISION NOT NULL,
        updated_at  DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  TEXT PRIMARY KEY,
        "user"      TEXT NOT NULL REFERENCES users(name),
        csrf        TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        last_seen   DOUBLE PRECISION NOT NULL,
        expires_at  DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX sessions_user ON sessions("user");
    """],
}


class UserError(PermanentError, ValueError):
    """A user name, role, identifier or password that cannot be accepted (local misuse)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    agent_ids: tuple[str, ...]
    disabled: bool
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "agent_ids": list(self.agent_ids),
                "disabled": self.disabled}


@dataclass(frozen=True)
class Session:
    id: str  # the token's hash: safe to log and to put in audit entries
    user: User
    csrf: str
    created_at: float
    expires_at: float


# -- passwords ------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, log_n: int = SCRYPT_LOG_N) -> str:
    check_password(password)
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=1 << log_n, r=SCRYPT_R, p=SCRYPT_P,
                         maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${log_n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_hash(stored: str, password: str) -> bool:
    try:
        kind, log_n, r, p, salt, key = stored.split("$")
        if kind != "scrypt" or not 10 <= int(log_n) <= 20:
            return False
        got = hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=_unb64(salt),
                             n=1 << int(log_n), r=int(r), p=int(p), maxmem=_SCRYPT_MAXMEM, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(key))


def _weaker(stored: str) -> bool:
    try:
        _, log_n, r, p, *_ = stored.split("$")
        return (int(log_n), int(r), int(p)) < (SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
    except ValueError:
        return True


# A hash of nothing in particular: verified against when the user does not exist, so
# that "no such user" costs as much time as "wrong password".
_DUMMY = f"scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'callvault-dummy!')}${_b64(bytes(32))}"


def check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password longer than {MAX_PASSWORD} characters")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UserError(f"user name {name!r}: use 1-64 of a-z 0-9 . _ @ - (lower case), starting with a "
                        "letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def check_agent_id(ident: str) -> str:
    if not isinstance(ident, str) or not (_DID_RE.fullmatch(ident) or _CHANNEL_RE.fullmatch(ident)):
        raise UserError(f"agent identifier {ident!r}: expected a channel such as PJSIP/1001 or "
                        "Local/1001@agents, or did:NUMBER for a direct line")
    return ident


# -- the store -------------------------------------------------------------------------------

_USER_COLS = "name, role, agent_ids, disabled, created_at"


def _user(row: Any) -> User:
    name, role, agent_ids, disabled, created = row
    return User(name, role, tuple(json.loads(agent_ids)), bool(disabled), created)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Users:
    def __init__(self, db: Database):
        self.db = db
        db.migrate("users", MIGRATIONS)

    # -- users ---------------------------------------------------------------------------
    def add(self, name: str, role: str, password: str, agent_ids: Iterable[str] = ()) -> User:
        check_name(name)
        check_role(role)
        ids = [check_agent_id(i) for i in agent_ids]
        stored = hash_password(password)
        now = time.time()
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user {name!r} exists")
            c.execute("INSERT INTO users (name, role, password, agent_ids, disabled, created_at, updated_at) "
                      "VALUES (?, ?, ?, ?, 0, ?, ?)", (name, role, stored, json.dumps(ids), now, now))
        return self.get(name)

    def get(self, name: str) -> User:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"user {name!r}")
        return _user(row)

    def list(self) -> list[User]:
        with self.db.read() as c:
            rows = c.execute(f"SELECT {_USER_COLS} FROM users ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    def disable(self, name: str) -> User:
        """Refuse further logins and end every session of the user."""
        with self.db.write() as c:
            cur = c.execute("UPDATE users SET disabled = 1, updated_at = ? WHERE name = ?", (time.time(), name))
            if cur.rowcount == 0:
                raise NotFound(f"user {name!r}")
            c.execute('DELETE FROM sessions WHERE "user" = ?', (name,))
        return self.get(name)

    def set_password(self, name: str, password: str) -> None:
        stored = hash_password(password)
        with self.db.write() as c:
            cur = c.execute("UPDATE users SET password = ?, updated_at = ? WHERE name = ?",
                            (stored, time.time(), name))
            if cur.rowcount == 0:
                raise NotFound(f"user {name!r}")
            c.execute('DELETE FROM sessions WHERE "user" = ?', (name,))

    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user with this password, or None. Costs one scrypt either way."""
        with self.db.read() as c:
            row = c.execute("SELECT password, disabled FROM users WHERE name = ?", (name,)).fetchone()
        stored = row[0] if row else _DUMMY
        ok = verify_hash(stored, password) and row is not None and not row[1]
        if not ok:
            return None
        if _weaker(stored):
            self.set_password(name, password)
        return self.get(name)

    # -- sessions ------------------------------------------------------------------------
    def create_session(self, user: str, ttl: float) -> tuple[str, Session]:
        """A new session; returns (token for the cookie, session)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        with self.db.write() as c:
            c.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            c.execute('INSERT INTO sessions (token_hash, "user", csrf'
                      ", created_at, last_seen, expires_at) "
                      "VALUES (?, ?, ?, ?, ?, ?)", (token_hash(token), user, csrf, now, now, now + ttl))
        session = self.session(token)
        assert session is not None
        return token, session

    def session(self, token: str, *, idle: float | None = None) -> Session | None:
        """The live session for ``token`` (its user enabled), or None.

        With ``idle``, a session unused for longer is dead; use is recorded at most
        once a minute so that reads do not each cost a durable write."""
        if not token or len(token) > 128:
            return None
        h = token_hash(token)
        now = time.time()
        with self.db.read() as c:
            row = c.execute(f"SELECT s.csrf, s.created_at, s.last_seen, s.expires_at, "
                            f"{', '.join('u.' + x.strip() for x in _USER_COLS.split(','))} "
                            'FROM sessions s JOIN users u ON u.name = s."user" WHERE s.token_hash = ?',
                            (h,)).fetchone()
        if row is None:
            return None
        csrf, created, last_seen, expires = row[:4]
        user = _user(row[4:])
        if user.disabled or expires <= now or (idle is not None and now - last_seen > idle):
            return None
        if now - last_seen > 60:
            with self.db.write() as c:
                c.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, h))
        return Session(h, user, csrf, created, expires)

    def end_session(self, token: str) -> None:
        with self.db.write() as c:
            c.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
