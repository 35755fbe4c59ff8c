"""Erasure on the web (officers only, permission ``subjects``; archiver/erasure.py).

``POST /api/erasures/plan`` (``{subject | recording_ids, reference}``) is the dry run;
``POST /api/erasures`` records the request and, unless ``[privacy] erasure_approval =
"two-person"``, executes it at once; ``POST /api/erasures/{id}/approve`` is the second,
different officer; ``GET /api/erasures/{id}/certificate?format=json|html``. The officer
is the web session's user. A pbx node holds no header-deleting keys: everything here
answers 409 there. ``/officer/erasure`` is the page.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any

from aiohttp import web

from archiver.erasure import Eraser, ErasureRefused, render_html
from archiver.errors import ArchiverError
from storage.erasures import ErasureRequests
from storage.errors import NotFound, RetryableError, StorageError
from storage.hmac_index import subject_hmacs

from .. import compose
from ..keys import AppKeys as K
from . import pages
from .auth import requires, session_of
from .jsonio import BadRequest, error, json_body, reason_of, valid_id

REQUESTS: web.AppKey[ErasureRequests] = web.AppKey("erasure_requests", ErasureRequests)
PBX_REFUSAL = "erasure needs the retrieval keys: use a retrieval or all node, not a pbx node ([node] role = \"pbx\")"
_SELECT = {"subject": (str, type(None)), "recording_ids": (list, type(None)), "reference": str}


def _eraser(app: web.Application) -> Eraser:
    config = app[K.config]
    return Eraser(app[K.catalog], app[K.ledger], app[K.archive], app[REQUESTS],
                  approval=config.privacy.erasure_approval, work_dir=config.spool.dir / compose.WORK_DIR_NAME)


async def _selection(request: web.Request) -> tuple[str, dict[str, Any]]:
    body = await json_body(request, _SELECT)
    reference = reason_of(body["reference"])
    subject, ids = body["subject"], body["recording_ids"]
    if (subject is None) == (ids is None):
        raise BadRequest("give either subject (a telephone number) or recording_ids, not both")
    if ids is not None:
        if not ids or len(ids) > 500 or not all(isinstance(i, str) and valid_id(i) for i in ids):
            raise BadRequest("recording_ids: 1 to 500 recording ids")
        return reference, {"recording_ids": sorted(set(ids))}
    config = request.app[K.config]
    hmacs = subject_hmacs(request.app[K.hmac_key], subject, config.privacy.default_country)
    if not hmacs or len(subject) > 40:
        raise BadRequest("subject: a telephone number (digits, optionally +, spaces, dashes)")
    return reference, {"caller_hmacs": hmacs}


def _via(request: web.Request) -> tuple[str, dict[str, Any]]:
    session = session_of(request)
    return session.user.name, {"via": "web", "session": session.id[:16]}


async def _run(request: web.Request, fn, status: int = 200) -> web.Response:
    if request.app[K.config].node.role == "pbx":
        return error(409, PBX_REFUSAL)
    try:
        return web.json_response(await asyncio.to_thread(fn), status=status)
    except ErasureRefused as e:
        return error(409, str(e))
    except RetryableError as e:
        return error(503, f"storage is not reachable: {e}")
    except (StorageError, ArchiverError) as e:
        return error(409, str(e))


@requires("subjects")
async def plan(request: web.Request) -> web.Response:
    try:
        reference, selection = await _selection(request)
    except BadRequest as e:
        return error(400, str(e))
    eraser = _eraser(request.app)
    return await _run(request, lambda: {"reference": reference, "approval": eraser.approval,
                                        "plan": eraser.plan(selection).report()})


@requires("subjects")
async def create(request: web.Request) -> web.Response:
    try:
        reference, selection = await _selection(request)
    except BadRequest as e:
        return error(400, str(e))
    officer, via = _via(request)
    eraser = _eraser(request.app)

    def go() -> dict[str, Any]:
        req, cert = eraser.request(reference, selection, officer, via)
        return {"request": eraser.requests.get(req.request_id).public(), "certificate": cert}
    return await _run(request, go, status=201)


@requires("subjects")
async def approve(request: web.Request) -> web.Response:
    request_id = request.match_info["request_id"]
    officer, via = _via(request)
    eraser = _eraser(request.app)

    def go() -> dict[str, Any]:
        cert = eraser.approve(request_id, officer, via)
        return {"request": eraser.requests.get(request_id).public(), "certificate": cert}
    return await _run(request, go)


@requires("subjects")
async def listing(request: web.Request) -> web.Response:
    rows = await asyncio.to_thread(request.app[REQUESTS].list)
    return web.json_response({"approval": request.app[K.config].privacy.erasure_approval,
                              "requests": [r.public() for r in rows]})


@requires("subjects")
async def certificate(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "html"):
        return error(400, "format: json or html")
    try:
        req = await asyncio.to_thread(request.app[REQUESTS].get, request.match_info["request_id"])
    except NotFound as e:
        return error(404, str(e))
    if req.certificate is None:
        return error(409, f"erasure request {req.request_id} is {req.state}: no certificate yet")
    if fmt == "html":
        return web.Response(text=render_html(req.certificate), content_type="text/html")
    return web.json_response(req.certificate, headers={
        "Content-Disposition": f'inline; filename="erasure-{req.request_id}.json"'})


@requires("subjects")
async def page(request: web.Request) -> web.Response:
    approval = request.app[K.config].privacy.erasure_approval
    body = (f'<p>Erasure crypto-shreds archived recordings: the header object (the only copy of the key) is '
            f'deleted, so the locked payload cannot be opened again; it is deleted when its lock ends. A legal '
            f'hold blocks erasure. Approval: <strong id="approval">{escape(approval)}</strong>.</p>'
            '<form id="choose" class="search"><label>Telephone number <input id="subject" name="subject"></label>'
            '<label>or recording ids <input id="recording-ids" name="recording_ids" placeholder="r1… r2…"></label>'
            '<label>Request reference <input id="reference" name="reference" required></label>'
            '<button type="submit" id="plan-button">Plan (dry run)</button></form>'
            '<div id="plan"></div><form id="confirm" hidden><button type="submit" id="erase-button">'
            'Request erasure</button></form><div id="outcome" role="status"></div>'
            '<h2>Erasure requests</h2><div id="requests"></div>')
    return web.Response(text=pages.layout("Erasure", body, session=session_of(request),
                                          scripts=["common.js", "erasure.js"], page="/officer/erasure"),
                        content_type="text/html")


async def _requests(app: web.Application):
    app[REQUESTS] = await asyncio.to_thread(ErasureRequests, app[K.db])
    yield


def add_erasure_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_requests)
    r = app.router
    r.add_get("/officer/erasure", page)
    r.add_get("/api/erasures", listing)
    r.add_post("/api/erasures", create)
    r.add_post("/api/erasures/plan", plan)
    r.add_post("/api/erasures/{request_id}/approve", approve)
    r.add_get("/api/erasures/{request_id}/certificate", certificate)
