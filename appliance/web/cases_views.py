"""The officer's objections and legal-hold cases: JSON API and two pages (``subjects`` permission)."""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any

from aiohttp import web

from archiver.errors import ArchiverError
from storage.cases import CaseError, Cases
from storage.errors import NotFound, PermanentError, RetryableError
from storage.objections import Objections

from ..casework import CaseDesk, ObjectionDesk, Selection
from ..keys import AppKeys as K
from . import pages
from .api import _when
from .auth import requires, session_of
from .jsonio import BadRequest, error, json_body, reason_of

OBJECTIONS: web.AppKey[ObjectionDesk] = web.AppKey("objections", ObjectionDesk)
CASES: web.AppKey[CaseDesk] = web.AppKey("cases", CaseDesk)
_OPT = (str, type(None))


def _actor(request: web.Request) -> dict[str, Any]:
    session = session_of(request)
    return {"actor": session.user.name, "via": "web", "session": session.id[:16]}


def _number(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 40:
        raise BadRequest("the number must be 1 to 40 characters")
    return value


async def _objection(request: web.Request, lift: bool) -> web.Response:
    try:
        body = await json_body(request, {"number": str, "reason": str})
        number, reason = _number(body["number"]), reason_of(body["reason"])
        desk = request.app[OBJECTIONS]
        if lift:
            return web.json_response({"lifted": await desk.lift(number, reason, _actor(request))})
        return web.json_response({"objection_id": await desk.add(number, reason, _actor(request))}, status=201)
    except (BadRequest, ValueError) as e:
        return error(400, str(e))
    except NotFound as e:
        return error(404, str(e))


@requires("subjects")
async def add_objection(request: web.Request) -> web.Response:
    return await _objection(request, lift=False)


@requires("subjects")
async def lift_objection(request: web.Request) -> web.Response:
    return await _objection(request, lift=True)


async def _objections(app: web.Application) -> list[dict[str, Any]]:
    rows = await asyncio.to_thread(app[OBJECTIONS].objections.list)
    return [o.public() for o in rows]


@requires("subjects")
async def list_objections(request: web.Request) -> web.Response:
    return web.json_response({"objections": await _objections(request.app)})


async def _case_call(fn, *args: Any, status: int = 200) -> web.Response:
    try:
        return web.json_response(await asyncio.to_thread(fn, *args), status=status)
    except NotFound as e:
        return error(404, str(e))
    except (CaseError, ValueError) as e:
        return error(400 if isinstance(e, ValueError) and not isinstance(e, CaseError) else 409, str(e))
    except RetryableError as e:
        return error(503, f"storage is not reachable: {e}")
    except (PermanentError, ArchiverError) as e:
        return error(409, str(e))


@requires("subjects")
async def create_case(request: web.Request) -> web.Response:
    try:
        body = await json_body(request, {"name": str, "reason": str})
        reason = reason_of(body["reason"])
    except BadRequest as e:
        return error(400, str(e))
    desk = request.app[CASES]

    def create() -> dict[str, Any]:
        desk.create(body["name"], reason, _actor(request))
        return desk.show(body["name"])
    return await _case_call(create, status=201)


@requires("subjects")
async def list_cases(request: web.Request) -> web.Response:
    cases = await asyncio.to_thread(request.app[CASES].cases.list)
    return web.json_response({"cases": [c.public() for c in cases]})


@requires("subjects")
async def show_case(request: web.Request) -> web.Response:
    return await _case_call(request.app[CASES].show, request.match_info["name"])


@requires("subjects")
async def add_to_case(request: web.Request) -> web.Response:
    spec = {k: _OPT for k in ("subject", "since", "until", "agent", "did", "recording_id")}
    try:
        b = await json_body(request, spec)
        sel = Selection(subject=b["subject"], agent=b["agent"], did=b["did"], recording=b["recording_id"],
                        since=_when(b["since"], end=False) if b["since"] else None,
                        until=_when(b["until"], end=True) if b["until"] else None)
    except BadRequest as e:
        return error(400, str(e))
    name, desk = request.match_info["name"], request.app[CASES]

    def add() -> dict[str, Any]:
        return {"added": desk.add(name, sel, _actor(request)), **desk.show(name)}
    return await _case_call(add)


@requires("subjects")
async def remove_from_case(request: web.Request) -> web.Response:
    try:
        b = await json_body(request, {"recording_id": str, "reason": str})
        reason = reason_of(b["reason"])
    except BadRequest as e:
        return error(400, str(e))
    name, desk = request.match_info["name"], request.app[CASES]

    def remove() -> dict[str, Any]:
        return {"released": desk.remove(name, b["recording_id"], reason, _actor(request)), **desk.show(name)}
    return await _case_call(remove)


@requires("subjects")
async def close_case(request: web.Request) -> web.Response:
    try:
        reason = reason_of((await json_body(request, {"reason": str}))["reason"])
    except BadRequest as e:
        return error(400, str(e))
    name, desk = request.match_info["name"], request.app[CASES]

    def close() -> dict[str, Any]:
        return {"released": desk.close(name, reason, _actor(request)), **desk.show(name)}
    return await _case_call(close)


def _table(heads: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c if c is not None else ''))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@requires("subjects")
async def objections_page(request: web.Request) -> web.Response:
    rows = [[o["objection_id"], pages._when(o["created_at"]), o["actor"], o["reason"],
             "in force" if o["active"] else f"lifted by {o['lifted_by']}: {o['lift_reason']}"]
            for o in await _objections(request.app)]
    body = ("<p>Calls from these numbers are not recorded and hear no notice. Numbers are kept only as "
            "keyed hashes. Add or lift with POST /api/objections and /api/objections/lift.</p>"
            + _table(["objection", "since", "by", "reason", "state"], rows))
    html = pages.layout("Standing objections", body, session=session_of(request), page="/officer/objections")
    return web.Response(text=html, content_type="text/html")


@requires("subjects")
async def cases_page(request: web.Request) -> web.Response:
    desk = request.app[CASES]
    shown = await asyncio.to_thread(lambda: [desk.show(c.name) for c in desk.cases.list()])
    rows = [[c["name"], pages._when(c["created_at"]), c["actor"], c["reason"], "open" if c["open"] else "closed",
             " ".join(r["recording_id"] for r in c["recordings"])] for c in shown]
    body = ("<p>Recordings held under an open case cannot be deleted; closing a case releases its holds "
            "unless another open case keeps them.</p>"
            + _table(["case", "opened", "by", "reason", "state", "recordings"], rows))
    html = pages.layout("Legal-hold cases", body, session=session_of(request), page="/officer/cases")
    return web.Response(text=html, content_type="text/html")


async def _desks(app: web.Application):
    config, db = app[K.config], app[K.db]
    country = config.privacy.default_country
    app[OBJECTIONS] = ObjectionDesk(await asyncio.to_thread(Objections, db), app[K.ledger], app[K.hmac_key], country)
    app[CASES] = CaseDesk(await asyncio.to_thread(Cases, db), app[K.catalog], app[K.ledger], app[K.sweeper],
                          app[K.hmac_key], country)
    yield


def add_case_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_desks)
    r = app.router
    r.add_get("/officer/objections", objections_page)
    r.add_get("/officer/cases", cases_page)
    r.add_get("/api/objections", list_objections)
    r.add_post("/api/objections", add_objection)
    r.add_post("/api/objections/lift", lift_objection)
    r.add_get("/api/cases", list_cases)
    r.add_post("/api/cases", create_case)
    r.add_get("/api/cases/{name}", show_case)
    r.add_post("/api/cases/{name}/recordings", add_to_case)
    r.add_post("/api/cases/{name}/remove", remove_from_case)
    r.add_post("/api/cases/{name}/close", close_case)
