"""What the admin page shows and does: health in detail, the dialplan, keys, lab test calls.

"Lab mode" is a property of the connected Asterisk, not of our config: the lab
dialplan has the ``callvault-lab`` context (`callvault lab up`), a production PBX
does not. Test calls go through that context exactly as the lab's own call driver
places them, so they run the real consent flow.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
from typing import Any

from aiohttp import web

from agi import dialplan
from agi.ami import AmiClient
from agi.dialplan import LAB_CONTEXT
from agi.errors import AgiError, AmiNotConnected
from storage.errors import StorageError
from storage.keys import load_recipients

from ..keys import AppKeys as K
from .auth import requires
from .health import details, down_parts
from .jsonio import BadRequest, error, json_body
from .state import WebKeys as W

TEST_CALL_SECONDS = 30


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


class Admin:
    def __init__(self, app: web.Application):
        self.app = app
        self._lab: tuple[int, bool] | None = None  # (AMI connects, lab?) for the session it was asked on

    async def lab_mode(self) -> bool:
        ami = self.app.get(K.ami)
        if ami is None or not ami.connected:
            return False
        if self._lab is None or self._lab[0] != ami.status.connects:
            try:
                await ami.action_list("ShowDialPlan", Context=LAB_CONTEXT, timeout=5)
                lab = True
            except (TimeoutError, AgiError):
                lab = False
            self._lab = (ami.status.connects, lab)
        return self._lab[1]

    def _catalog_facts(self) -> tuple[dict[str, int], list[dict[str, Any]], float | None]:
        catalog = self.app[K.catalog]
        failed = catalog.search(state="failed", limit=100)
        last = catalog.last_archived_at()
        dead = [{"recording_id": r.recording_id, "started_at": _iso(r.started_at), "attempts": r.attempts,
                 "last_error": r.last_error, "quarantined": r.quarantined_at is not None} for r in failed]
        return catalog.queue_counts(), dead, last

    def keys(self) -> dict[str, Any]:
        config = self.app[K.config]
        try:
            recipients = [{"fingerprint": r.fingerprint, "public_key": str(r)}
                          for r in load_recipients(config.archive.recipients)] if config.archive.recipients else []
            problem = "" if recipients else "no [archive] recipients configured"
        except (StorageError, ValueError) as e:
            recipients, problem = [], str(e)
        retrieval = self.app[W.retrieval]
        identities = [{"fingerprint": i.fingerprint, "public_key": str(i.recipient)}
                      for i in retrieval.identities or []]
        return {"recipients": recipients, "recipients_problem": problem, "retrieval_identities": identities,
                "playback": retrieval.identities is not None, "playback_refusal": retrieval.refusal}

    def dialplan(self) -> dict[str, str]:
        snippets = dialplan.snippets(self.app[K.config], "<the [ami] secret from callvault.toml>")
        return {name.replace(".", "_"): text for name, text in snippets.items()}

    async def health(self) -> dict[str, Any]:
        basic = details(self.app)
        down = await down_parts(self.app)  # also refreshes the storage probe shown below
        queue, dead, last = await asyncio.to_thread(self._catalog_facts)
        try:
            nodes = [n.as_dict() for n in await asyncio.to_thread(self.app[K.nodes].list)]
        except StorageError:
            nodes = []
        archiver = basic["archiver"]
        return {
            "status": "down" if down else "up",
            "down": down,
            "uptime_s": basic["uptime_s"],
            "node": basic["node"],
            "nodes": nodes,
            "ami": {"connected": basic["ami"]["state"] == "connected", **basic["ami"]},
            "agi": basic["agi"],
            "archiver": archiver,
            "queue": queue,
            "last_archive_at": _iso(archiver.get("last_archive_at") or last),
            "dead_letters": dead,
            "storage": self.app[W.probe].storage,
            "database": "down" if "database" in down else "up",
            "keys": self.keys(),
            "lab_mode": await self.lab_mode(),
        }

    async def test_call(self, did: str) -> str:
        """Originate a lab call as the [ami] test-call user (the product's own user may not)."""
        c = self.app[K.config].ami
        token = secrets.token_hex(6)
        call_id = f"cvtest-{token}-1"
        client = AmiClient(c.host, c.port, c.test_call_username, c.test_call_secret.reveal(), fetch_version=False)
        client.start()
        try:
            try:
                await client.wait_connected(5)
            except TimeoutError:
                raise AmiNotConnected(f"AMI login as [ami] test_call_username {c.test_call_username!r}: "
                                      f"{client.status.last_error or 'no answer'}") from None
            await client.action(
                "Originate", Channel=f"Local/{did}@{LAB_CONTEXT}", Application="Wait", Data=str(TEST_CALL_SECONDS),
                CallerID='"callvault test call" <27215550123>', Async="true", ChannelId=call_id,
                OtherChannelId=f"cvtest-{token}-2")
        finally:
            await client.close()
        return call_id


ADMIN: web.AppKey[Admin] = web.AppKey("web.admin", Admin)


@requires("admin")
async def admin_health(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ADMIN].health())


@requires("admin")
async def admin_dialplan(request: web.Request) -> web.Response:
    return web.json_response(request.app[ADMIN].dialplan())


@requires("admin")
async def test_call(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    try:
        body = await json_body(request, {"did": str})
        did = body["did"].strip().lstrip("+")
        if not did.isdigit() or not 3 <= len(did) <= 20:
            raise BadRequest("did: 3 to 20 digits")
    except BadRequest as e:
        return error(400, str(e))
    if not request.app[K.config].ami.test_call_username:
        return error(409, "test calls need [ami] test_call_username and test_call_secret: an AMI user "
                          "with write = originate (`callvault lab up` writes them)")
    if not await admin.lab_mode():
        return error(409, "test calls need the lab Asterisk (`callvault lab up`); this PBX has no "
                          f"{LAB_CONTEXT} context")
    try:
        call_id = await admin.test_call(did)
    except (TimeoutError, AgiError) as e:
        return error(503, f"Asterisk did not place the call: {e}")
    return web.json_response({"call_id": call_id, "did": did, "seconds": TEST_CALL_SECONDS}, status=202)


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/api/admin/health", admin_health)
    app.router.add_get("/api/admin/dialplan", admin_dialplan)
    app.router.add_post("/api/admin/test-call", test_call)
