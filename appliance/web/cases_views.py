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


def _field(name: str, label: str, kind: str = "text", required: bool = False) -> str:
    return (f'<label>{escape(label)} <input id="{name}" name="{name}" type="{kind}"'
            f'{" required" if required else ""}></label>')


def _form(form_id: str, fields: str, button: str) -> str:
    return f'<form id="{form_id}" class="search">{fields}<button type="submit">{escape(button)}</button></form>'


def _page(request: web.Request, title: str, body: str, path: str) -> web.Response:
    body += '<div id="outcome" role="status"></div>'
    html = pages.layout(title, body, session=session_of(request), scripts=("common.js", "cases.js"), page=path)
    return web.Response(text=html, content_type="text/html")


@requires("subjects")
async def objections_page(request: web.Request) -> web.Response:
    rows = [[o["objection_id"], pages._when(o["created_at"]), o["actor"], o["reason"],
             "in force" if o["active"] else f"lifted by {o['lifted_by']}: {o['lift_reason']}"]
            for o in await _objections(request.app)]
    body = ("<p>Calls from these numbers are not recorded and hear no notice. Numbers are kept only as "
            "keyed hashes.</p>" + _table(["objection", "since", "by", "reason", "state"], rows)
            + "<h2>Add or lift an objection</h2>"
            + _form("objection", _field("number", "Telephone number", required=True)
                    + _field("objection-reason", "Reason", required=True), "Add objection")
            .replace("</form>", '<button type="button" id="lift">Lift objection</button></form>'))
    return _page(request, "Standing objections", body, "/officer/objections")


def _cases_table(shown: list[dict[str, Any]]) -> str:
    rows = []
    for c in shown:
        recs = "".join(f'<li data-id="{escape(r["recording_id"])}">{escape(r["recording_id"])}'
                       f'{" (held)" if r["legal_hold"] else ""}</li>' for r in c["recordings"])
        cells = [c["name"], pages._when(c["created_at"]), c["actor"], c["reason"], "open" if c["open"] else "closed"]
        rows.append(f'<tr data-case="{escape(c["name"])}">' + "".join(f"<td>{escape(str(v))}</td>" for v in cells)
                    + f"<td><ul>{recs}</ul></td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("case", "opened", "by", "reason", "state", "recordings"))
    return f'<table id="cases-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


@requires("subjects")
async def cases_page(request: web.Request) -> web.Response:
    desk = request.app[CASES]
    shown = await asyncio.to_thread(lambda: [desk.show(c.name) for c in desk.cases.list()])
    opened = "".join(f'<option>{escape(c["name"])}</option>' for c in shown if c["open"])
    pick = f'<label>Case <select class="case" required>{opened}</select></label>'
    body = ("<p>Recordings held under an open case cannot be deleted; closing a case releases its holds "
            "unless another open case keeps them.</p>" + _cases_table(shown)
            + "<h2>Open a case</h2>"
            + _form("create", _field("case-name", "Case name", required=True)
                    + _field("case-reason", "Reason", required=True), "Open case")
            + "<h2>Add recordings</h2><p>Fill in any of these; the recordings matching all of them are held.</p>"
            + _form("add", pick + _field("subject", "Telephone number") + _field("since", "From", "date")
                    + _field("until", "Until", "date") + _field("agent", "Agent") + _field("did", "Number dialled")
                    + _field("recording-id", "Recording id"), "Add to case")
            + "<h2>Remove a recording</h2>"
            + _form("remove", pick + _field("remove-id", "Recording id", required=True)
                    + _field("remove-reason", "Reason", required=True), "Remove")
            + "<h2>Close a case</h2>"
            + _form("close", pick + _field("close-reason", "Reason", required=True), "Close case"))
    return _page(request, "Legal-hold cases", body, "/officer/cases")


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
