"""Users, password hashes and sessions (storage/users.py), on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import time

import pytest

from storage.errors import NotFound
from storage.users import (SCRYPT_LOG_N, UserError, Users, hash_password, token_hash, verify_hash)


@pytest.fixture
def users(any_db):
    """Both backends: users and sessions are part of the conformance suite."""
    return Users(any_db)


def test_password_hash_is_scrypt_with_its_parameters_and_a_salt():
    a, b = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert a != b  # salted
    kind, log_n, r, p, salt, key = a.split("$")
    assert (kind, int(log_n), int(r), int(p)) == ("scrypt", SCRYPT_LOG_N, 8, 1) and SCRYPT_LOG_N >= 17
    assert verify_hash(a, "correct horse battery") and not verify_hash(a, "correct horse batterY")
    assert not verify_hash("garbage", "x") and not verify_hash("scrypt$99$8$1$AA$AA", "x")
    with pytest.raises(UserError, match="at least 10"):
        hash_password("short")


def test_users_roles_identifiers_and_authentication(users):
    users.add("alice", "agent", "alice-password-1", ["PJSIP/1001", "did:27215550100", "Local/1001@agents"])
    users.add("sam", "supervisor", "sam-password-12")
    assert [u.name for u in users.list()] == ["alice", "sam"]
    assert users.get("alice").agent_ids == ("PJSIP/1001", "did:27215550100", "Local/1001@agents")
    for bad in (dict(name="Alice"), dict(name="a b"), dict(role="root"), dict(agent_ids=["1001"]),
                dict(agent_ids=["did:abc"]), dict(name="alice")):
        args = {"name": "zed", "role": "agent", "password": "zed-password-1", "agent_ids": [], **bad}
        with pytest.raises(UserError):
            users.add(**args)
    assert users.authenticate("alice", "alice-password-1").name == "alice"
    assert users.authenticate("alice", "wrong-password") is None
    assert users.authenticate("nobody", "alice-password-1") is None
    with pytest.raises(NotFound):
        users.disable("nobody")


def test_sessions_store_only_a_hash_and_end_on_disable_expiry_and_idle(users):
    users.add("alice", "agent", "alice-password-1")
    token, session = users.create_session("alice", ttl=3600)
    assert session.id == token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    with users.db.read() as c:
        stored = [row[0] for row in c.execute("SELECT token_hash FROM sessions")]
    assert stored == [session.id] and token not in stored
    assert users.session(token).user.name == "alice" and users.session(token).csrf == session.csrf
    assert users.session("not-a-token") is None and users.session("") is None
    assert users.session(token, idle=-1) is None  # idle too long

    short, _ = users.create_session("alice", ttl=0.01)
    time.sleep(0.02)  # ages the session past its 10 ms lifetime
    assert users.session(short) is None  # expired

    users.end_session(token)
    assert users.session(token) is None
    again, _ = users.create_session("alice", ttl=3600)
    users.disable("alice")
    assert users.session(again) is None
    assert users.authenticate("alice", "alice-password-1") is None
