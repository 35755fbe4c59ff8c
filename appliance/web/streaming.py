"""The audio (HTTP Range) and download responses; see ``retrieval.py`` for the rules."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .auth import session_of
from .jsonio import error, valid_id
from .retrieval import Refused, parse_range
from .state import WebKeys as W

_FORMATS = ("wav", "age")
# An open-ended range ("bytes=N-", what media elements send) is answered with at most
# this much; the browser asks for the next piece when it needs it. So whatever the
# client buffers, one request never makes us fetch much more than it will play soon.
OPEN_RANGE_CAP = 2 * 1024 * 1024


async def _write(request: web.Request, response: web.StreamResponse, pieces: AsyncIterator[bytes]) -> None:
    metrics = request.app[W.metrics]
    metrics.playback_requests.inc()
    async with contextlib.aclosing(pieces):
        try:
            async for piece in pieces:
                await response.write(piece)
                metrics.playback_served_bytes.inc(len(piece))
                if request.transport is None or request.transport.is_closing():
                    return  # gone: do not fetch the next window
        except ConnectionResetError:
            return  # the browser stopped reading (a seek, a pause, a closed tab): fetch no more
    await response.write_eof()


def _rid(request: web.Request) -> str | None:
    rid = request.match_info["recording_id"]
    return rid if valid_id(rid) else None


def _open_ended(header: str) -> bool:
    first = header.partition("=")[2].split(",")[0].strip()
    return first.endswith("-") and not first.startswith("-")


async def serve_audio(request: web.Request) -> web.StreamResponse:
    rid = _rid(request)
    if rid is None:
        return error(400, "not a recording id")
    retrieval, session = request.app[W.retrieval], session_of(request)
    grant = await retrieval.held_grant(session, rid, "play", "wav")
    if grant is None:
        return error(403, "no access grant for this recording: ask for access with a reason first")
    try:
        rec = await retrieval.archived(rid)
        opened = await retrieval.open(rec, grant)
    except Refused as e:
        return error(e.status, str(e))
    size = opened.manifest.plaintext_size
    try:
        wanted = parse_range(request.headers.get("Range"), size)
    except ValueError:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted if wanted else (0, size - 1)
    if wanted and _open_ended(request.headers.get("Range", "")):
        end = min(end, start + OPEN_RANGE_CAP - 1)
    headers = {"Content-Type": "audio/wav", "Accept-Ranges": "bytes", "Content-Length": str(end - start + 1),
               "Cache-Control": "private, no-store"}
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    await _write(request, response, retrieval.plaintext(opened, start, end))
    return response


async def serve_download(request: web.Request) -> web.StreamResponse:
    rid = _rid(request)
    fmt = request.query.get("format", "wav")
    if rid is None or fmt not in _FORMATS:
        return error(400, "expected a recording id and format=wav or format=age")
    retrieval, session = request.app[W.retrieval], session_of(request)
    grant = await retrieval.held_grant(session, rid, "download", fmt)
    if grant is None:
        return error(403, "no access grant for this download: ask for access with a reason first")
    try:
        rec = await retrieval.archived(rid)
        if fmt == "wav":
            opened = await retrieval.open(rec, grant)
            size = opened.manifest.plaintext_size
            pieces = retrieval.plaintext(opened, 0, size - 1)
            content_type = "audio/wav"
        else:
            size, pieces = await retrieval.ciphertext(rec)
            content_type = "application/octet-stream"
    except Refused as e:
        return error(e.status, str(e))
    response = web.StreamResponse(headers={
        "Content-Type": content_type, "Content-Length": str(size), "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="{rid}.{fmt}"'})
    await response.prepare(request)
    if request.method == "HEAD":
        await pieces.aclose()
        return response
    await _write(request, response, pieces)
    return response
