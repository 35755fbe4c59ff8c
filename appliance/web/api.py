"""The JSON API under ``/api/``: live calls, recordings, access grants, legal holds.

Every handler declares its permission (``auth.requires``); inputs are checked here
and a bad one is a 400 with ``{"error": "..."}``, never a 500. The OpenAPI document
describing all of it is ``openapi.py``.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from typing import Any

from aiohttp import web

from agi import variables as v
from agi.controls import ControlError, set_paused
from agi.errors import AmiError
from archiver.manifest import Manifest
from storage.catalog import STATES, AgentSpan, Catalog, Recording
from storage.errors import NotFound, PermanentError, RetryableError, StorageError
from storage.hmac_index import caller_hmac, normalise_number

from ..keys import AppKeys as K
from .auth import ANY_ROLE, allowed, requires, session_of
from .jsonio import BadRequest, error, json_body, reason_of, valid_id
from .retrieval import Refused
from .state import WebKeys as W
from .streaming import serve_audio, serve_download

CONSENT_STATES = (*v.CONSENT_VALUES, "unknown")
PURPOSES = ("play", "download")
FORMATS = ("wav", "age")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}\Z")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def public_recording(rec: Recording, agents: list[AgentSpan]) -> dict[str, Any]:
    """What the API shows of a recording: no caller HMAC, no channel names, no object keys.
    ``agents``: every agent who handled the call (transfers), with their spans."""
    size = None
    if rec.manifest:
        try:
            size = Manifest.from_json(rec.manifest).plaintext_size
        except StorageError:
            size = None
    return {"recording_id": rec.recording_id, "started_at": _iso(rec.started_at), "ended_at": _iso(rec.ended_at),
            "duration_s": round(rec.ended_at - rec.started_at, 1) if rec.ended_at else None,
            "did": rec.did, "agent": rec.agent, "consent_state": rec.consent_state, "state": rec.state,
            "agents": [{"agent": a.agent, "joined_at": _iso(a.joined_at), "left_at": _iso(a.left_at)} for a in agents],
            "legal_hold": bool(rec.legal_hold), "rule": rec.rule, "jurisdiction": rec.jurisdiction,
            "retention_class": rec.retention_class, "retain_until": _iso(rec.retain_until),
            "archived_at": _iso(rec.archived_at), "size": size, "pauses": len(rec.pause_intervals),
            "playable": rec.state == "archived" and bool(rec.manifest)}


# -- search ----------------------------------------------------------------------------------

def _when(value: str, *, end: bool) -> float:
    value = value.strip()
    try:
        if len(value) == 10:
            day = datetime.date.fromisoformat(value)
            moment = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
            return (moment + datetime.timedelta(days=1 if end else 0)).timestamp()
        moment = datetime.datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise BadRequest(f"not a date or date-time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        raise BadRequest(f"date out of range: {value[:40]!r}") from None


def search_params(query: Any, hmac_key: bytes) -> dict[str, Any]:
    """Catalog.search keyword arguments from query parameters (empty ones ignored)."""
    get = lambda k: (query.get(k) or "").strip()
    out: dict[str, Any] = {}
    if get("since"):
        out["since"] = _when(get("since"), end=False)
    if get("until"):
        out["until"] = _when(get("until"), end=True)
    if get("agent"):
        if not _NAME_RE.fullmatch(get("agent")):
            raise BadRequest("agent: a user name")
        out["agent"] = get("agent")
    if get("phone"):
        digits = normalise_number(get("phone"))
        if digits is None or len(get("phone")) > 40:
            raise BadRequest("phone: a number with digits")
        out["caller_hmac"] = caller_hmac(hmac_key, digits)
    if get("did"):
        did = get("did").lstrip("+")
        if not did.isdigit() or len(did) > 20:
            raise BadRequest("did: digits only")
        out["did"] = did
    if get("consent"):
        if get("consent") not in CONSENT_STATES:
            raise BadRequest(f"consent: one of {', '.join(CONSENT_STATES)}")
        out["consent_state"] = get("consent")
    if get("state"):
        if get("state") not in STATES:
            raise BadRequest(f"state: one of {', '.join(STATES)}")
        out["state"] = get("state")
    limit = get("limit") or "100"
    if not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise BadRequest("limit: 1 to 500")
    out["limit"] = int(limit)
    return out


def published(catalog: Catalog, recs: list[Recording]) -> list[dict[str, Any]]:
    """:func:`public_recording` of each, with their agents (one query for all)."""
    agents = catalog.agents_of([r.recording_id for r in recs])
    return [public_recording(r, agents[r.recording_id]) for r in recs]


async def find_recordings(request: web.Request) -> list[dict[str, Any]]:
    """The recordings a search asks for (an agent's: every call they handled), as the API shows them."""
    params = search_params(request.query, request.app[K.hmac_key])
    catalog = request.app[K.catalog]
    return await asyncio.to_thread(lambda: published(catalog, catalog.search(**params)))


@requires("recordings.read")
async def search_recordings(request: web.Request) -> web.Response:
    try:
        rows = await find_recordings(request)
    except BadRequest as e:
        return error(400, str(e))
    return web.json_response({"recordings": rows})


def _recording_id(request: web.Request) -> str:
    rid = request.match_info["recording_id"]
    if not valid_id(rid):
        raise BadRequest("not a recording id")
    return rid


@requires("recordings.read")
async def get_recording(request: web.Request) -> web.Response:
    try:
        rid = _recording_id(request)
        rec = await asyncio.to_thread(request.app[K.catalog].get, rid)
    except BadRequest as e:
        return error(400, str(e))
    except NotFound:
        return error(404, "no such recording")
    entries = await asyncio.to_thread(request.app[K.ledger].find, recording_id=rid)
    history = [{"seq": e.seq, "ts": e.ts, "kind": e.kind, "actor": e.data.get("actor", ""),
                "reason": e.data.get("reason", "") if e.kind.startswith("audit.") else ""} for e in entries]
    [shown] = await asyncio.to_thread(published, request.app[K.catalog], [rec])
    return web.json_response({**shown, "history": history})


# -- access, playback, download, hold ----------------------------------------------------------

@requires("recordings.play")
async def request_access(request: web.Request) -> web.Response:
    try:
        rid = _recording_id(request)
        body = await json_body(request, {"purpose": str, "format": (str, type(None)), "reason": str})
        if body["purpose"] not in PURPOSES:
            raise BadRequest("purpose: play or download")
        fmt = body["format"] or "wav"
        if fmt not in FORMATS or (body["purpose"] == "play" and fmt != "wav"):
            raise BadRequest("format: wav or age (play is always wav)")
        reason = reason_of(body["reason"])
    except BadRequest as e:
        return error(400, str(e))
    retrieval = request.app[W.retrieval]
    try:
        entry = await retrieval.grant(session_of(request), rid, body["purpose"], fmt, reason,
                                      request.remote or "")
    except Refused as e:
        return error(e.status, str(e))
    base = f"/api/recordings/{rid}"
    url = f"{base}/audio" if body["purpose"] == "play" else f"{base}/download?format={fmt}"
    return web.json_response({"grant": entry.seq, "url": url, "expires_at": entry.data["expires_at"]}, status=201)


@requires("recordings.play")
async def audio(request: web.Request) -> web.StreamResponse:
    return await serve_audio(request)


@requires("recordings.play")
async def download(request: web.Request) -> web.StreamResponse:
    return await serve_download(request)


@requires("recordings.hold")
async def legal_hold(request: web.Request) -> web.Response:
    try:
        rid = _recording_id(request)
        body = await json_body(request, {"on": bool, "reason": str})
        reason = reason_of(body["reason"])
    except BadRequest as e:
        return error(400, str(e))
    app, session = request.app, session_of(request)
    catalog, ledger = app[K.catalog], app[K.ledger]
    try:
        rec = await asyncio.to_thread(catalog.get, rid)
    except NotFound:
        return error(404, "no such recording")
    actor = session.user.name
    await ledger.append_async("audit.legal_hold", {"recording_id": rid, "actor": actor, "on": body["on"],
                                                   "reason": reason, "via": "web", "session": session.id[:16]},
                              call_id=rec.linkedid or None, recording_id=rid)
    try:
        rec = await asyncio.to_thread(app[K.sweeper].set_legal_hold, rid, body["on"], actor)
    except NotFound:
        return error(404, "no such recording")
    except RetryableError as e:
        return error(503, f"storage is not reachable: {e}")
    except PermanentError as e:
        return error(409, str(e))
    [shown] = await asyncio.to_thread(published, catalog, [rec])
    return web.json_response(shown)


# -- live calls --------------------------------------------------------------------------------

def _sees_all(request: web.Request) -> bool:
    return allowed(session_of(request), "calls.all")


@requires("calls.own", "calls.all")
async def list_calls(request: web.Request) -> web.Response:
    calls = request.app[W.live].visible(session_of(request).user, _sees_all(request))
    return web.json_response({"calls": [c.public() for c in calls]})


def _call(request: web.Request):
    """The call the session may see, or the response refusing it (403 reveals nothing)."""
    live, session = request.app[W.live], session_of(request)
    call = live.calls.get(request.match_info["call_id"])
    if call is not None and (session.user.name in call.agents or (_sees_all(request) and live.shown(call))):
        return call, None
    if _sees_all(request):
        return None, error(404, "no such call")
    return None, error(403, "forbidden")


@requires("calls.own", "calls.all")
async def get_call(request: web.Request) -> web.Response:
    call, refused = _call(request)
    return refused or web.json_response(call.public())


@requires("calls.control")
async def pause_call(request: web.Request) -> web.Response:
    call, refused = _call(request)
    if refused:
        return refused
    try:
        body = await json_body(request, {"paused": bool})
    except BadRequest as e:
        return error(400, str(e))
    here = request.app[K.config].node.name
    if call.node and call.node != here:
        return error(409, f"this call is on node {call.node!r}; pause and resume are AMI actions on the PBX that "
                          f"carries it: use the agent page of node {call.node!r} (this node is {here!r})")
    if K.ami not in request.app:
        return error(409, "this node does not talk to Asterisk ([node] role = \"retrieval\"); pause and resume "
                          "the call from the agent page of the pbx node that carries it")
    if call.recording not in ("recording", "paused") or not call.recorded_channel:
        return error(409, f"nothing is being recorded on this call ({call.recording})")
    app, user = request.app, session_of(request).user
    try:
        await set_paused(app[K.ami], app[K.catalog], app[K.ledger].append_async, call.recorded_channel,
                         body["paused"], actor=user.name, trigger="web")
    except ControlError as e:
        return error(409, str(e))
    except (TimeoutError, AmiError) as e:
        return error(503, f"Asterisk did not take the command: {e}")
    app[W.metrics].pauses.labels("pause" if body["paused"] else "resume").inc()
    app[W.live].set_recording(call.call_id, "paused" if body["paused"] else "recording", by="web")
    return web.json_response(call.public())


@requires(ANY_ROLE)
async def me(request: web.Request) -> web.Response:
    s = session_of(request)
    return web.json_response({"name": s.user.name, "role": s.user.role, "csrf_token": s.csrf,
                              "agent_ids": list(s.user.agent_ids), "expires_at": _iso(s.expires_at)})


def add_api_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/me", me)
    r.add_get("/api/calls", list_calls)
    r.add_get("/api/calls/{call_id}", get_call)
    r.add_post("/api/calls/{call_id}/pause", pause_call)
    r.add_get("/api/recordings", search_recordings)
    r.add_get("/api/recordings/{recording_id}", get_recording)
    r.add_post("/api/recordings/{recording_id}/access", request_access)
    r.add_get("/api/recordings/{recording_id}/audio", audio)
    r.add_get("/api/recordings/{recording_id}/download", download)
    r.add_post("/api/recordings/{recording_id}/legal-hold", legal_hold)
