"""JSON request and response helpers for the API: bad input is a 400, never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,100}\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def valid_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class BadRequest(Exception):
    pass


async def json_body(request: web.Request, spec: dict[str, type]) -> dict[str, Any]:
    """The request's JSON object, with exactly the keys of ``spec`` of the given types
    (keys whose type is a tuple including ``type(None)`` are optional)."""
    if request.content_type != "application/json":
        raise BadRequest("expected a JSON body (Content-Type: application/json)")
    try:
        body = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    unknown = set(body) - set(spec)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    for key, typ in spec.items():
        optional = isinstance(typ, tuple) and type(None) in typ
        if key not in body:
            if not optional:
                raise BadRequest(f"missing field {key!r}")
            body[key] = None
            continue
        value = body[key]
        if typ is int and isinstance(value, bool) or not isinstance(value, typ):
            raise BadRequest(f"field {key!r} has the wrong type")
    return body


def reason_of(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("a reason is required")
    reason = value.strip()
    if not 3 <= len(reason) <= 500 or _CONTROL_RE.search(reason):
        raise BadRequest("the reason must be 3 to 500 characters of text")
    return reason
