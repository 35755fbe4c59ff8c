"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``.

Written by hand next to the handlers (``api.py``, ``admin.py``); the property-based
test (tests/appliance/web/test_web_api_schemathesis.py) checks the two agree.
"""

from __future__ import annotations

from typing import Any

from agi import variables as v
from storage.catalog import STATES
from storage.reports import NAMES as REPORTS

CONSENT = [*v.CONSENT_VALUES, "unknown"]
RECORDING_ID = {"name": "recording_id", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"}}
CALL_ID = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1,
                                                                         "maxLength": 200}}
CSRF = {"name": "X-CSRF-Token", "in": "header", "required": True, "schema": {"type": "string"},
        "description": "the session's CSRF token (GET /api/me)"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "bad input", 401: "not signed in", 403: "forbidden (says nothing more)", 404: "not found",
            409: "not possible in the current state", 410: "gone (key destroyed)", 416: "range not satisfiable",
            429: "too many tries", 503: "a dependency (Asterisk, storage) is not reachable"}
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


def _op(summary: str, responses: dict[str, Any], *, params: list | None = None, body: dict | None = None,
        tags: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, "tags": list(tags)}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Me": {"type": "object", "required": ["name", "role", "csrf_token"], "properties": {
        "name": {"type": "string"}, "role": {"enum": ["agent", "supervisor", "officer", "admin"]},
        "csrf_token": {"type": "string"}, "agent_ids": {"type": "array", "items": {"type": "string"}},
        "expires_at": {"type": ["string", "null"]}}},
    "Call": {"type": "object", "required": ["call_id", "consent", "recording"], "properties": {
        "call_id": {"type": "string"}, "did": {"type": "string"}, "caller": {"type": "string"},
        "consent": {"type": "string", "description": "pending until the caller decided"},
        "recording": {"enum": ["not-recorded", "recording", "paused", "stopped"]},
        "recording_id": {"type": "string"}, "rule": {"type": "string"},
        "agents": {"type": "array", "items": {"type": "string"}}, "started_at": {"type": "number"},
        "ended": {"type": "boolean"}, "updated_at": {"type": "number"},
        "pauses": {"type": "array", "description": "PCI pauses of this call, oldest first", "items": {
            "type": "object", "required": ["from", "until", "by"], "properties": {
                "from": {"type": "number"}, "until": {"type": ["number", "null"]},
                "by": {"enum": ["web", "dtmf", "ivr", "agi"]}}}}}},
    "Recording": {"type": "object", "required": ["recording_id", "state", "consent_state", "playable"], "properties": {
        "recording_id": {"type": "string"}, "started_at": {"type": ["string", "null"]},
        "ended_at": {"type": ["string", "null"]}, "duration_s": {"type": ["number", "null"]},
        "did": {"type": "string"}, "agent": {"type": "string", "description": "the first agent"},
        "agents": {"type": "array", "description": "every agent who handled the call (transfers), in order",
                   "items": {"type": "object", "properties": {
                       "agent": {"type": "string"}, "joined_at": {"type": "string"},
                       "left_at": {"type": ["string", "null"]}}}},
        "consent_state": {"type": "string"},
        "state": {"enum": list(STATES)}, "legal_hold": {"type": "boolean"}, "rule": {"type": "string"},
        "jurisdiction": {"type": "string"}, "retention_class": {"type": "string"},
        "retain_until": {"type": ["string", "null"]}, "archived_at": {"type": ["string", "null"]},
        "size": {"type": ["integer", "null"]}, "pauses": {"type": "integer"}, "playable": {"type": "boolean"},
        "history": {"type": "array", "items": {"type": "object"}}}},
    "Grant": {"type": "object", "required": ["grant", "url", "expires_at"], "properties": {
        "grant": {"type": "integer", "description": "ledger sequence number of the audit entry"},
        "url": {"type": "string"}, "expires_at": {"type": "number"}}},
}

_REASON = {"type": "string", "minLength": 3, "maxLength": 500}


def _subject_paths() -> dict[str, Any]:
    """Standing objections and legal-hold cases (officers: the ``subjects`` permission)."""
    obj = {"type": "object"}
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}
    number_body = {"type": "object", "required": ["number", "reason"], "additionalProperties": False,
                   "properties": {"number": {"type": "string", "minLength": 1, "maxLength": 40}, "reason": _REASON}}
    reason_body = {"type": "object", "required": ["reason"], "additionalProperties": False,
                   "properties": {"reason": _REASON}}
    text = {"type": ["string", "null"]}
    tags = ("subjects",)
    return {
        "/api/objections": {
            "get": _op("Standing objections (no numbers: they are kept as keyed hashes)",
                       {"200": _json(obj), **_errors(401, 403)}, tags=tags),
            "post": _op("Record a standing objection: calls from the number are never recorded",
                        {"201": _json(obj), **_errors(400, 401, 403)}, params=[CSRF], body=number_body,
                        tags=tags)},
        "/api/objections/lift": {"post": _op(
            "Lift the objections in force for a number", {"200": _json(obj), **_errors(400, 401, 403, 404)},
            params=[CSRF], body=number_body, tags=tags)},
        "/api/cases": {
            "get": _op("Legal-hold cases", {"200": _json(obj), **_errors(401, 403)}, tags=tags),
            "post": _op("Open a legal-hold case", {"201": _json(obj), **_errors(400, 401, 403, 409, 503)},
                        params=[CSRF], body={"type": "object", "required": ["name", "reason"],
                                             "additionalProperties": False,
                                             "properties": {"name": {"type": "string"}, "reason": _REASON}},
                        tags=tags)},
        "/api/cases/{name}": {"get": _op("One case and its recordings", {"200": _json(obj),
                                                                         **_errors(401, 403, 404)},
                                         params=[name], tags=tags)},
        "/api/cases/{name}/recordings": {"post": _op(
            "Hold the recordings a search finds (subject, dates, agent, DID) or one recording under the case",
            {"200": _json(obj), **_errors(400, 401, 403, 404, 409, 503)}, params=[name, CSRF],
            body={"type": "object", "additionalProperties": False, "properties": {
                k: text for k in ("subject", "since", "until", "agent", "did", "recording_id")}}, tags=tags)},
        "/api/cases/{name}/remove": {"post": _op(
            "Take a recording out of the case (its hold is released unless another open case keeps it)",
            {"200": _json(obj), **_errors(400, 401, 403, 404, 409, 503)}, params=[name, CSRF],
            body={"type": "object", "required": ["recording_id", "reason"], "additionalProperties": False,
                  "properties": {"recording_id": {"type": "string"}, "reason": _REASON}}, tags=tags)},
        "/api/cases/{name}/close": {"post": _op(
            "Close the case and release the holds no other open case keeps",
            {"200": _json(obj), **_errors(400, 401, 403, 404, 409, 503)}, params=[name, CSRF],
            body=reason_body, tags=tags)},
    }


def _erasure_paths() -> dict[str, Any]:
    """Erasure: plan, request, approve, certificate (officers: the ``subjects`` permission)."""
    obj, tags = {"type": "object"}, ("subjects",)
    rid = {"name": "request_id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 100}}
    select = {"type": "object", "required": ["reference"], "additionalProperties": False, "properties": {
        "subject": {"type": "string", "description": "a caller number (give this or recording_ids)"},
        "recording_ids": {"type": "array", "minItems": 1, "maxItems": 500, "items": {
            "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"}}, "reference": _REASON}}
    return {
        "/api/erasures": {
            "get": _op("Erasure requests, newest first", {"200": _json(obj), **_errors(401, 403)}, tags=tags),
            "post": _op("Request an erasure: runs at once unless [privacy] erasure_approval is two-person",
                        {"201": _json(obj), **_errors(400, 401, 403, 409, 503)}, params=[CSRF], body=select,
                        tags=tags)},
        "/api/erasures/plan": {"post": _op(
            "Dry run: what would be erased, held (and why) or flagged", {"200": _json(obj),
                                                                       **_errors(400, 401, 403, 409, 503)},
            params=[CSRF], body=select, tags=tags)},
        "/api/erasures/{request_id}/approve": {"post": _op(
            "Approve another officer's pending request (two-person rule); it runs",
            {"200": _json(obj), **_errors(401, 403, 409, 503)}, params=[rid, CSRF], tags=tags)},
        "/api/erasures/{request_id}/certificate": {"get": _op(
            "The certificate of an executed erasure, as JSON or a printable page",
            {"200": {"description": "the certificate", "content": {"application/json": {"schema": obj},
                                                                   "text/html": {}}},
             **_errors(400, 401, 403, 404, 409)},
            params=[rid, _query("format", {"enum": ["json", "html"]}, "json (default) or html")], tags=tags)},
    }


def document() -> dict[str, Any]:
    rec_params = [RECORDING_ID]
    paths: dict[str, Any] = {
        "/api/me": {"get": _op("The signed-in user and the session's CSRF token",
                               {"200": _json(_ref("Me")), **_errors(401)}, tags=("session",))},
        "/api/calls": {"get": _op("Live calls the user may see (agents: their own)",
                                  {"200": _json({"type": "object", "required": ["calls"], "properties": {
                                      "calls": {"type": "array", "items": _ref("Call")}}}), **_errors(401, 403)},
                                  tags=("calls",))},
        "/api/calls/{call_id}": {"get": _op("One live call", {"200": _json(_ref("Call")), **_errors(401, 403, 404)},
                                            params=[CALL_ID], tags=("calls",))},
        "/api/calls/{call_id}/pause": {"post": _op(
            "Pause (PCI) or resume the call's recording (MixMonitorMute)",
            {"200": _json(_ref("Call")), **_errors(400, 401, 403, 404, 409, 503)}, params=[CALL_ID, CSRF],
            body={"type": "object", "required": ["paused"], "additionalProperties": False,
                  "properties": {"paused": {"type": "boolean"}}}, tags=("calls",))},
        "/api/recordings": {"get": _op("Search recordings", {
            "200": _json({"type": "object", "required": ["recordings"], "properties": {
                "recordings": {"type": "array", "items": _ref("Recording")}}}), **_errors(400, 401, 403)},
            params=[_query("since", {"type": "string"}, "from this date (YYYY-MM-DD) or ISO date-time (UTC if none)"),
                    _query("until", {"type": "string"}, "to this date (inclusive) or date-time"),
                    _query("agent", {"type": "string"}, "an agent's user name: calls they handled"),
                    _query("phone", {"type": "string"}, "the caller's number (found through the HMAC index)"),
                    _query("did", {"type": "string"}, "the dialled number"),
                    _query("consent", {"enum": CONSENT}, "consent state"),
                    _query("state", {"enum": list(STATES)}, "archive state"),
                    _query("limit", {"type": "string", "pattern": "^[0-9]{1,3}$"}, "1 to 500 (default 100)")],
            tags=("recordings",))},
        "/api/recordings/{recording_id}": {"get": _op(
            "One recording and its ledger history", {"200": _json(_ref("Recording")), **_errors(400, 401, 403, 404)},
            params=rec_params, tags=("recordings",))},
        "/api/recordings/{recording_id}/access": {"post": _op(
            "Ask to play or download: writes the audit entry (with the reason) that grants it",
            {"201": _json(_ref("Grant")), **_errors(400, 401, 403, 404, 409)}, params=[RECORDING_ID, CSRF],
            body={"type": "object", "required": ["purpose", "reason"], "additionalProperties": False, "properties": {
                "purpose": {"enum": ["play", "download"]}, "format": {"enum": ["wav", "age"]}, "reason": _REASON}},
            tags=("recordings",))},
        "/api/recordings/{recording_id}/audio": {"get": _op(
            "The recording as WAV, with HTTP Range (needs a play grant)",
            {"200": {"description": "the whole recording", "content": {"audio/wav": {}}},
             "206": {"description": "the range asked for", "content": {"audio/wav": {}}},
             **_errors(400, 401, 403, 404, 409, 410, 416)},
            params=[RECORDING_ID, {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}}],
            tags=("recordings",))},
        "/api/recordings/{recording_id}/download": {"get": _op(
            "Download as decrypted WAV or as the original age file (needs a download grant)",
            {"200": {"description": "the file", "content": {"audio/wav": {}, "application/octet-stream": {}}},
             **_errors(400, 401, 403, 404, 409, 410)},
            params=[RECORDING_ID, _query("format", {"enum": ["wav", "age"]}, "wav (default) or age")],
            tags=("recordings",))},
        "/api/recordings/{recording_id}/legal-hold": {"post": _op(
            "Place or release a legal hold (officers)", {"200": _json(_ref("Recording")),
                                                         **_errors(400, 401, 403, 404, 409, 503)},
            params=[RECORDING_ID, CSRF], body={"type": "object", "required": ["on", "reason"],
                                               "additionalProperties": False,
                                               "properties": {"on": {"type": "boolean"}, "reason": _REASON}},
            tags=("recordings",))},
        "/api/subjects": {"get": _op(
            "What is held about a caller number: recordings, consent events, accesses (officers)",
            {"200": _json({"type": "object", "required": ["recordings", "consents", "accesses"]}),
             **_errors(400, 401, 403)},
            params=[{"name": "number", "in": "query", "required": True, "schema": {"type": "string"}}],
            tags=("subjects",))},
        "/api/subjects/export": {"post": _op(
            "The subject access bundle, age-encrypted; the passphrase is in X-Bundle-Passphrase (officers)",
            {"200": {"description": "the bundle (.zip.age), streamed",
                     "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
             **_errors(400, 401, 403, 409)}, params=[CSRF],
            body={"type": "object", "required": ["number", "reference"], "additionalProperties": False,
                  "properties": {"number": {"type": "string"}, "reference": _REASON}}, tags=("subjects",))},
        "/api/reports/{name}": {"get": _op(
            "An information officer's report as JSON or CSV (officers)",
            {"200": {"description": "the report", "content": {
                "application/json": {"schema": {"type": "object", "required": ["report", "columns", "rows"],
                                                "properties": {"report": {"type": "string"},
                                                               "columns": {"type": "array"},
                                                               "rows": {"type": "array"}}}},
                "text/csv": {}}}, **_errors(400, 401, 403, 404)},
            params=[{"name": "name", "in": "path", "required": True, "schema": {"enum": list(REPORTS)}},
                    _query("format", {"enum": ["json", "csv"]}, "json (default) or csv"),
                    _query("since", {"type": "string"}, "from this date (YYYY-MM-DD) or ISO date-time (UTC if none)"),
                    _query("until", {"type": "string"}, "to this date (inclusive) or date-time")],
            tags=("reports",))},
        "/api/admin/health": {"get": _op("Health in detail (admins)", {"200": _json({"type": "object"}),
                                                                        **_errors(401, 403)}, tags=("admin",))},
        "/api/admin/dialplan": {"get": _op("The generated dialplan, features and manager snippets (admins)",
                                           {"200": _json({"type": "object"}), **_errors(401, 403)},
                                           tags=("admin",))},
        "/api/admin/test-call": {"post": _op(
            "Place a test call through the lab Asterisk (admins, lab mode only)",
            {"202": _json({"type": "object", "required": ["call_id"], "properties": {
                "call_id": {"type": "string"}, "did": {"type": "string"}, "seconds": {"type": "integer"}}}),
             **_errors(400, 401, 403, 409, 503)}, params=[CSRF],
            body={"type": "object", "required": ["did"], "additionalProperties": False,
                  "properties": {"did": {"type": "string", "pattern": "^\\+?[0-9]{3,20}$"}}}, tags=("admin",))},
    }
    paths.update(_subject_paths())
    paths.update(_erasure_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "callvault", "version": "1", "description":
                 "Consent-aware call recording beside Asterisk. Sign in at /login (session cookie "
                 "cv_session); state-changing requests carry the session's CSRF token in X-CSRF-Token. "
                 "Unauthenticated requests get 401, requests the role does not allow get 403. "
                 "Metrics (Prometheus text) are at /metrics, health at /healthz."},
        "servers": [{"url": "/"}],
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "cv_session"}}},
        "security": [{"session": []}],
        "paths": paths,
    }
