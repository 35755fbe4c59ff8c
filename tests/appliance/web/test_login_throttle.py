"""The login throttle's bookkeeping (appliance/web/auth.py); over HTTP it is tested in
test_web_auth.py and test_web_hardening.py."""

from __future__ import annotations

import pytest

from appliance.web.auth import LoginThrottle, Throttled


def refused(throttle: LoginThrottle, name: str, addr: str) -> int:
    with pytest.raises(Throttled) as e:
        throttle.attempt(name, addr, now=1000.0)
    assert e.value.retry_after >= 1
    return e.value.status


async def test_tries_in_flight_are_bounded_per_name_per_address_and_in_all():
    t = LoginThrottle(per_name=2, per_addr=8, total=32)
    held = [t.attempt("bob", "10.0.0.1", now=1000.0) for _ in range(2)]
    assert refused(t, "bob", "10.0.0.2") == 429  # per name, whatever the address
    held += [t.attempt(f"u{i}", "10.0.0.1", now=1000.0) for i in range(6)]
    assert refused(t, "someone", "10.0.0.1") == 429  # per address
    held += [t.attempt(f"v{i}", f"10.0.1.{i}", now=1000.0) for i in range(24)]
    assert refused(t, "fresh", "10.0.9.9") == 503  # the whole node
    for a in held:
        a.release()
    assert t._busy_total == 0 and not t._busy
    t.attempt("bob", "10.0.0.1", now=1000.0).release()


async def test_a_try_in_flight_counts_as_a_failure_for_the_backoff():
    t = LoginThrottle(free_per_name=5, per_name=2)
    for i in range(4):
        with t.attempt("bob", "a", now=1000.0 + i) as a:
            a.failed()
    first = t.attempt("bob", "a", now=1010.0)  # the fifth: still free
    assert refused(t, "bob", "a") == 429  # would be the sixth if the fifth fails
    first.succeeded()
    first.release()
    t.attempt("bob", "a", now=1011.0).release()  # success cleared the name's count
