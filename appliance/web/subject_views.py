"""Data-subject requests on the web (officers only, permission ``subjects``).

``GET /api/subjects?number=`` finds what is held about a caller number (recordings,
consent events, accesses; ``archiver.dsar.find_subject``). ``POST /api/subjects/export``
(``{"number", "reference"}``) streams the age-encrypted access bundle: the one-time
passphrase is sent once, in the ``X-Bundle-Passphrase`` response header, and the
bundle is written to the response as it is made (never whole in memory); each
recording's ``audit.export`` entry is committed before its key is used.
``/officer/subject`` is the page (find, then export).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from archiver.dsar import Subject, find_subject, new_passphrase, write_bundle
from storage.hmac_index import subject_hmacs

from ..keys import AppKeys as K
from . import pages
from .auth import requires, session_of
from .jsonio import BadRequest, error, json_body, reason_of
from .state import WebKeys as W

PASSPHRASE_HEADER = "X-Bundle-Passphrase"


def _hmacs(request: web.Request, number: str) -> list[str]:
    config = request.app[K.config]
    hmacs = subject_hmacs(request.app[K.hmac_key], number, config.privacy.default_country)
    if not hmacs or len(number) > 40:
        raise BadRequest("number: a telephone number (digits, optionally +, spaces, dashes)")
    return hmacs


async def _find(request: web.Request, number: str) -> Subject:
    hmacs = _hmacs(request, number)
    return await asyncio.to_thread(find_subject, request.app[K.catalog], request.app[K.ledger], hmacs)


@requires("subjects")
async def find(request: web.Request) -> web.Response:
    try:
        subject = await _find(request, request.query.get("number", ""))
    except BadRequest as e:
        return error(400, str(e))
    return web.json_response(subject.as_dict())


@requires("subjects")
async def export(request: web.Request) -> web.StreamResponse:
    try:
        body = await json_body(request, {"number": str, "reference": str})
        reference = reason_of(body["reference"])
        subject = await _find(request, body["number"])
    except BadRequest as e:
        return error(400, str(e))
    retrieval, session = request.app[W.retrieval], session_of(request)
    if retrieval.identities is None:
        return error(409, retrieval.refusal)
    passphrase = new_passphrase()
    response = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream", PASSPHRASE_HEADER: passphrase, "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="subject-access-{reference[:40]}.zip.age"'.encode(
            "ascii", "replace").decode()})
    await response.prepare(request)
    loop = asyncio.get_running_loop()

    def write(data: bytes) -> None:  # on the export thread: wait for the socket (bounded memory)
        asyncio.run_coroutine_threadsafe(response.write(data), loop).result()

    actor = {"actor": session.user.name, "role": session.user.role, "via": "web", "session": session.id[:16]}
    await asyncio.to_thread(write_bundle, subject, archive=request.app[K.archive], identities=retrieval.identities,
                            ledger=request.app[K.ledger], reference=reference, actor=actor, write=write,
                            passphrase=passphrase)
    await response.write_eof()
    return response


@requires("subjects")
async def page(request: web.Request) -> web.Response:
    body = ('<form id="find" class="search"><label>Telephone number <input id="number" name="number" required>'
            '</label><button type="submit">Find</button></form><div id="found"></div>'
            '<form id="export" class="search" hidden><label>Request reference <input id="reference" required>'
            '</label><button type="submit">Export</button></form><p id="passphrase" hidden></p>')
    return web.Response(text=pages.layout("Data subject", body, session=session_of(request),
                                          scripts=["common.js", "subject.js"], page="/officer/subject"),
                        content_type="text/html")


def add_subject_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/subjects", find)
    r.add_post("/api/subjects/export", export)
    r.add_get("/officer/subject", page)
