"""A pbx node and a retrieval node on one PostgreSQL database, with the lab's Asterisk.

The pbx node (AMI, FastAGI, archiver, no identity) sees a real call; the agent signed
in to the retrieval node (no AMI at all) gets it on the live WebSocket through
LISTEN/NOTIFY. Both nodes are in the registry (`/api/admin/health`, `callvault
status`); the pbx node refuses playback with its reason; pausing another node's call
is refused with the node's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys

import aiohttp
from aiohttp import web
from callhelpers import OPT_IN

from agi.policy import parse_policy
from appliance.keys import AppKeys as K
from appliance.service import build_app
from storage.dburl import open_database
from storage.users import Users


def node_config(parts, lab_state, root, users_template, buckets, pg_url, name, role):
    root.mkdir()
    config, ident, port = parts.make_config(lab_state, root, users_template, buckets, identity=role != "pbx")
    policy, problems = parse_policy({"rules": [OPT_IN]}, "test")
    assert not problems
    return config.replace(
        consent=policy, database=config.database.replace(url=pg_url),
        node=config.node.replace(name=name, role=role)), ident, port


@contextlib.asynccontextmanager
async def running(parts, config, ident, port, root):
    runner = web.AppRunner(build_app(config), shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    h = parts.Harness(runner.app, f"http://127.0.0.1:{port}", config, ident, root)
    try:
        yield h
    finally:
        for c in h.clients:
            await c.close()
        await runner.cleanup()


async def next_call(ws: aiohttp.ClientWebSocketResponse, pred, timeout: float = 20.0) -> dict:
    async def wait() -> dict:
        while True:
            msg = await ws.receive_json()
            if msg["type"] == "call" and pred(msg["call"]):
                return msg["call"]

    return await asyncio.wait_for(wait(), timeout)


async def test_a_call_on_the_pbx_node_reaches_the_agent_on_the_retrieval_node(
        lab_state, tmp_path, users_template, web_buckets, pg_url, ami, calls, web_parts):
    with open_database(pg_url) as db:
        users = Users(db)
        for name, role, ids in (("alice", "agent", ["did:27215550100"]), ("sam", "supervisor", []),
                                ("ada", "admin", [])):
            users.add(name, role, web_parts.password(name), ids)
    pbx_cfg, pbx_id, pbx_port = node_config(web_parts, lab_state, tmp_path / "pbx", users_template, web_buckets, pg_url,
                                            "pbx-1", "pbx")
    ret_cfg, ret_id, ret_port = node_config(web_parts, lab_state, tmp_path / "ret", users_template, web_buckets, pg_url,
                                            "retrieval-1", "retrieval")
    # One HMAC key for both nodes (the file copied, as the docs say).
    async with running(web_parts, pbx_cfg, pbx_id, pbx_port, tmp_path / "pbx") as pbx:
        shutil.copy(pbx_cfg.privacy.hmac_key_file, ret_cfg.privacy.hmac_key_file)
        async with running(web_parts, ret_cfg, ret_id, ret_port, tmp_path / "ret") as ret:
            assert K.ami not in ret.app and K.agi not in ret.app and K.archiver not in ret.app
            assert ret.app[K.archive] is not None and pbx.app[K.archiver].sweeper is None
            await pbx.app[K.ami].wait_connected(10)
            await asyncio.wait_for(ret.app[K.bus].listening.wait(), 10)

            alice = await ret.client("alice")
            async with alice.ws_connect("/ws") as ws:
                assert (await ws.receive_json())["type"] == "snapshot"
                call = calls.new_call(did="27215550100")
                async with calls.agi_command(call, "GET DATA") as asked:
                    await calls.place(call)
                    await asyncio.wait_for(asked, 15)
                seen = await next_call(ws, lambda c: c["node"] == "pbx-1" and c["did"] == "27215550100")
                assert seen["agents"] == ["alice"] and seen["consent"] == "pending"
                call_id = seen["call_id"]
                await calls.send_dtmf(call, "1")
                granted = await next_call(ws, lambda c: c["call_id"] == call_id and c["consent"] == "granted"
                                          and c["recording"] == "recording")
                assert granted["recording_id"]

                # Pausing is an AMI action on the pbx node: refused here, naming it.
                async with alice.post(f"/api/calls/{call_id}/pause", json={"paused": True},
                                      headers={"X-CSRF-Token": alice.csrf}) as r:
                    assert r.status == 409, await r.text()
                    assert "'pbx-1'" in (await r.json())["error"]

                async with calls.hangup_of(call) as gone:
                    await calls.hangup(call)
                    await asyncio.wait_for(gone, 10)
                ended = await next_call(ws, lambda c: c["call_id"] == call_id and c["ended"])
                assert ended["recording"] == "stopped"

            # The pbx node refuses playback and download, saying why.
            sam = await pbx.client("sam")
            async with sam.post(f"/api/recordings/{granted['recording_id']}/access",
                                json={"purpose": "download", "format": "age", "reason": "quality review"},
                                headers={"X-CSRF-Token": sam.csrf}) as r:
                assert r.status == 409
                assert 'pbx node ([node] role = "pbx")' in (await r.json())["error"]

            # Both nodes are registered and up.
            ada = await ret.client("ada")
            async with ada.get("/api/admin/health") as r:
                health = await r.json()
            nodes = {n["name"]: n for n in health["nodes"]}
            assert {n: (v["role"], v["state"]) for n, v in nodes.items()} == {
                "pbx-1": ("pbx", "up"), "retrieval-1": ("retrieval", "up")}
            assert nodes["pbx-1"]["ami"] == "connected" and nodes["retrieval-1"]["ami"] == "none"
            assert health["status"] == "up" and "ami" not in health["down"]

            env = {**os.environ, "CALLVAULT_DATABASE_URL": pg_url, "CALLVAULT_NODE_NAME": "retrieval-1",
                   "CALLVAULT_NODE_ROLE": "retrieval"}
            r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "appliance", "status", "-c",
                                                         str(tmp_path / "ret" / "callvault.toml")],
                                        capture_output=True, text=True, timeout=60, env=env, check=False)
            assert "ami:      none on this node (role retrieval)" in r.stdout, r.stdout + r.stderr
            lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  ")}
            assert "pbx       up" in lines["pbx-1"] and "retrieval up" in lines["retrieval-1"], r.stdout
