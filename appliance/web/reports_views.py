"""The information officer's pages and the reports API (permission ``subjects``).

``/officer``: the officer's landing page, linking to subject search and export,
erasure, objections, legal-hold cases and the reports. ``/officer/reports``: one report at a
time (storage/reports.py) as a table, with its CSV and JSON downloads.
``/api/reports/<name>?format=csv|json&since=&until=``: the same tables for tools.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from storage.reports import NAMES, TITLES, Report, Reports, parse_when

from ..keys import AppKeys as K
from . import pages
from .auth import requires, session_of
from .jsonio import error

OFFICER_LINKS = (("/officer/subject", "Find a data subject", "every recording and ledger entry of one number"),
                 ("/officer/erasure", "Erasure", "plan, request and approve erasures; certificates"),
                 ("/officer/objections", "Objections", "objections to recording"),
                 ("/officer/cases", "Legal-hold cases", "holds grouped by case"),
                 ("/officer/reports", "Reports", "consent, retention, erasures, access, objections"))


def _window(query: Any) -> tuple[Any, Any]:
    """``since``/``until`` of a query; ValueError names the bad one."""
    out = []
    for key, end in (("since", False), ("until", True)):
        value = (query.get(key) or "").strip()[:40]
        try:
            out.append(parse_when(value, end=end) if value else None)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    return out[0], out[1]


async def _run(request: web.Request, name: str) -> Report:
    since, until = _window(request.query)
    return await asyncio.to_thread(Reports(request.app[K.db]).run, name, since, until)


@requires("subjects")
async def officer_view(request: web.Request) -> web.Response:
    items = "".join(f'<li><a href="{href}">{escape(text)}</a> <span class="muted">{escape(note)}</span></li>'
                    for href, text, note in OFFICER_LINKS)
    html = pages.layout("callvault: information officer", f'<ul id="officer-links">{items}</ul>',
                        session=session_of(request), page="/officer")
    return web.Response(text=html, content_type="text/html")


@requires("subjects")
async def reports_view(request: web.Request) -> web.Response:
    name = request.query.get("name", "consent")
    message, report = "", None
    if name not in NAMES:
        message, name = f"no report {name[:40]!r}", "consent"
    else:
        try:
            report = await _run(request, name)
        except ValueError as e:
            message = str(e)
    q = {k: (request.query.get(k) or "")[:40] for k in ("since", "until")}
    options = "".join(f'<option value="{n}"{" selected" if n == name else ""}>{escape(TITLES[n])}</option>'
                      for n in NAMES)
    form = f"""<form method="get" action="/officer/reports" class="search" id="report-form">
<label>Report <select name="name" id="report-name">{options}</select></label>
<label>From <input type="date" name="since" value="{escape(q["since"])}"></label>
<label>To <input type="date" name="until" value="{escape(q["until"])}"></label>
<button type="submit" id="report-button">Show</button></form>"""
    note = f'<p class="bad" role="alert">{escape(message)}</p>' if message else ""
    table = ""
    if report is not None:
        args = {k: v for k, v in q.items() if v}
        links = " ".join(f'<a id="download-{f}" href="/api/reports/{name}?{urlencode({**args, "format": f})}">'
                         f'{f.upper()}</a>' for f in ("csv", "json"))
        head = "".join(f"<th>{escape(c)}</th>" for c in report.columns)
        rows = "".join("<tr>" + "".join(f"<td>{escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                       for row in report.rows)
        table = (f'<h2>{escape(report.title)}</h2><p class="muted" id="row-count">{len(report.rows)} row(s). '
                 f'Download: {links}</p><table id="report" data-report="{name}"><thead><tr>{head}</tr></thead>'
                 f'<tbody>{rows}</tbody></table>')
    html = pages.layout("callvault: reports", form + note + table, session=session_of(request), page="/officer")
    return web.Response(text=html, content_type="text/html", status=400 if message else 200)


@requires("subjects")
async def report_api(request: web.Request) -> web.Response:
    name, fmt = request.match_info["name"], request.query.get("format", "json")
    if name not in NAMES:
        return error(404, f"no report {name[:40]!r}; reports: {', '.join(NAMES)}")
    if fmt not in ("csv", "json"):
        return error(400, "format: csv or json")
    try:
        report = await _run(request, name)
    except ValueError as e:
        return error(400, str(e))
    if fmt == "csv":
        return web.Response(text=report.to_csv(), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return web.json_response({"report": name, "columns": list(report.columns), "rows": report.as_dicts()})


def add_report_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/officer", officer_view)
    r.add_get("/officer/reports", reports_view)
    r.add_get("/api/reports/{name}", report_api)
