"""Property-based run of the JSON API against its own OpenAPI document: never a 5xx.

Schemathesis generates requests for every operation in ``/api/openapi.json`` (valid and
invalid bodies, query strings, headers such as ``Range``) and sends them to the
running appliance, signed in with the role each operation is meant for. Some cases get
the id of a real archived recording that the session holds play and download grants
for, so the range parsing and streaming code is exercised too, not only the 404 path.
The lab test-call operation is left out: it would place real calls.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from appliance.web.openapi import document

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]


@pytest.fixture(scope="module")
def server(threaded_server):
    return threaded_server


def signed_in(url: str, name: str, password: str) -> requests.Session:
    s = requests.Session()
    s.get(f"{url}/login", timeout=10).raise_for_status()
    r = s.post(f"{url}/login", data={"csrf": s.cookies["cv_login"], "name": name, "password": password},
               allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    s.headers["X-CSRF-Token"] = s.get(f"{url}/api/me", timeout=10).json()["csrf_token"]
    return s


@pytest.fixture(scope="module")
def sessions(server, user_password):
    out = {name: signed_in(server.url, name, user_password(name)) for name in ("alice", "olga", "ada")}
    yield out
    for s in out.values():
        s.close()


@pytest.fixture(scope="module")
def real_recording(server, sessions):
    rid, _ = server.harness.recording(30)
    officer = sessions["olga"]
    for purpose, fmt in (("play", "wav"), ("download", "wav"), ("download", "age")):
        r = officer.post(f"{server.url}/api/recordings/{rid}/access",
                         json={"purpose": purpose, "format": fmt, "reason": "property-based test"}, timeout=10)
        assert r.status_code == 201, r.text
    return rid


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/api/openapi.json").exclude(path="/api/admin/test-call")


# One test per documented operation (taken from the product's document at collection time).
OPERATIONS = sorted((method.upper(), path) for path, ops in document()["paths"].items() for method in ops
                    if path != "/api/admin/test-call")


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_never_answers_with_a_server_error(method, path, api_schema, server, sessions, real_recording):
    operation = api_schema[path][method]
    who = "ada" if path.startswith("/api/admin/") else "alice" if path.endswith("/pause") else "olga"

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def property(case):
        params = case.path_parameters or {}
        if "recording_id" in params and int(hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest(),
                                            16) % 2:
            params["recording_id"] = real_recording
        # The session's own cookie and CSRF token are used: the fuzzer's would only ever get 401/403.
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-csrf-token"}
        if case.cookies:
            case.cookies.pop("cv_session", None)
        response = case.call(base_url=server.url, session=sessions[who], headers=headers, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])

    property()


def test_the_document_describes_every_api_route(server):
    doc = requests.get(f"{server.url}/api/openapi.json", timeout=10).json()
    app = server.harness.app
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes - {("GET", "/api/openapi.json")} == documented
    asyncio.run(asyncio.sleep(0))  # nothing pending on this thread's side
