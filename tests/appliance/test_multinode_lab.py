"""Scale-out end to end: `callvault lab up --pbx-nodes 2` (two lab Asterisk instances,
PostgreSQL, RGW with the pbx and retrieval S3 users) and one `callvault serve`
subprocess per node config it writes.

Each pbx node takes a consented call on its own Asterisk and archives it with the pbx
S3 user's keys; a supervisor signed in to the retrieval node finds and plays both in
Chromium; the one shared ledger holds the audit entries and verifies. A pbx node holds
no identity and refuses playback. Then a pbx node is killed (SIGKILL) as its recording
lands in the spool: the other node keeps taking calls, and after the restart the
recording is archived exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import boto3
import pytest
from browser import chromium
from callhelpers import after_agi

from agi.ami import AmiClient
from appliance import config as cfg
from appliance.lab.asterisk import free_port
from appliance.lab.calls import CallDriver
from appliance.lab.harness import Lab, LabState
from storage.catalog import Catalog
from storage.dburl import open_database
from storage.ledger import Ledger

pytestmark = [pytest.mark.asterisk, pytest.mark.s3]

ROOT = Path(__file__).resolve().parents[2]
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")},
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}


def callvault(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, check=False)


@dataclass
class Node:
    name: str
    config: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host, port = cfg.load(self.config, env={}, check_paths=False).web.address
        return f"http://{host}:{port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", "-c", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=ENV)

    async def up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} did not come up:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Cluster:
    name: str
    data: Path
    db_url: str
    states: dict[str, LabState]  # pbx node name -> its lab Asterisk
    nodes: dict[str, Node]
    s3: boto3.client
    logins: dict[str, str]


@pytest.fixture(scope="module")
def cluster(english_prompts, tmp_path_factory):
    data = tmp_path_factory.mktemp("cluster")
    name = f"mn{secrets.token_hex(3)}"
    up = callvault("lab", "up", "--name", name, "--pbx-nodes", "2", "--data-dir", str(data),
                   "--web-port", str(free_port()), "--no-prompts")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        configs = dict(re.findall(r"^  (\S+): .*callvault serve -c (\S+)$", up.stdout, re.MULTILINE))
        assert sorted(configs) == ["pbx-1", "pbx-2", "retrieval"], up.stdout
        states = {"pbx-1": Lab.load_state(name), "pbx-2": Lab.load_state(f"{name}-pbx2")}
        shutil.copytree(english_prompts.root, data / "prompts")
        for state in states.values():
            english_prompts.install(state.sounds_host)
        nodes = {n: Node(n, Path(c), data / f"{n}.log") for n, c in configs.items()}
        e = states["pbx-1"].s3_endpoint
        s3 = boto3.client("s3", endpoint_url=e.endpoint_url, aws_access_key_id=e.access_key_id,
                          aws_secret_access_key=e.secret_access_key, region_name=e.region)
        logins = dict(line.split() for line in (data / "web-logins.txt").read_text().splitlines())
        db_url = cfg.load(Path(configs["retrieval"]), env={}, check_paths=False).database.url
        yield Cluster(name, data, db_url, states, nodes, s3, logins)
        for node in nodes.values():
            node.stop()
    finally:
        down = callvault("lab", "down", "--name", name)
        assert down.returncode == 0 and f"lab '{name}' stopped" in down.stdout, down.stdout + down.stderr
    assert not (Path(states["pbx-1"].root) / "callvault-lab" / f"{name}-pbx2").exists()


@contextlib.asynccontextmanager
async def ami_of(state: LabState):
    ami = AmiClient("127.0.0.1", state.ami_port, state.ami_user, state.ami_secret)
    ami.start()
    try:
        await ami.wait_connected(10)
        yield ami
    finally:
        await ami.close()


async def consented_call(state: LabState, caller: str, *, talk: float = 1.5, after_hangup=None) -> str:
    """A call on ``state``'s Asterisk whose caller presses 1; returns its uniqueid once
    it has hung up (``after_hangup`` runs right then)."""
    async with ami_of(state) as ami:
        calls = CallDriver(ami)
        call = calls.new_call("27215550100", caller)
        async with calls.agi_command(call, "GET DATA") as asked, after_agi(ami, call) as done:
            await calls.place(call)
            await asyncio.wait_for(asked, 30)
            await calls.send_dtmf(call, "1")
            event = await asyncio.wait_for(done, 30)
        assert event.get("Record") == "yes", event
        await asyncio.sleep(talk)
        async with calls.hangup_of(call) as gone:
            await calls.hangup(call)
            await asyncio.wait_for(gone, 10)
        if after_hangup is not None:
            after_hangup()
        return call.callee_uniqueid


async def archived(db_url: str, uniqueid: str, timeout: float = 45) -> object:
    deadline = time.monotonic() + timeout
    while True:
        with open_database(db_url) as db:
            recs = Catalog(db).by_uniqueid(uniqueid)
        if recs and recs[0].state == "archived":
            assert len(recs) == 1, recs
            return recs[0]
        assert time.monotonic() < deadline, f"{uniqueid} not archived: {recs}"
        await asyncio.sleep(0.3)


def archive_entries(db_url: str, rid: str) -> list:
    with open_database(db_url) as db:
        return Ledger(db).find(recording_id=rid, kind="archive")


def payload_versions(c: Cluster, key: str) -> list[dict]:
    bucket = cfg.load(c.nodes["retrieval"].config, env={}, check_paths=False).storage.bucket
    return c.s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])


async def test_two_pbx_nodes_archive_and_the_retrieval_node_plays_both(cluster):
    c = cluster
    for node in c.nodes.values():
        node.start()
    await asyncio.gather(*(node.up() for node in c.nodes.values()))

    uids = await asyncio.gather(consented_call(c.states["pbx-1"], "27215550001"),
                                consented_call(c.states["pbx-2"], "27215550002"))
    recs = [await archived(c.db_url, uid) for uid in uids]
    assert [r.node for r in recs] == ["pbx-1", "pbx-2"]
    bucket = cfg.load(c.nodes["retrieval"].config, env={}, check_paths=False).storage.bucket
    for rec in recs:  # written by the pbx S3 user, with its own keys
        owners = {o["Owner"]["ID"] for o in c.s3.list_objects_v2(Bucket=bucket, Prefix=rec.object_key,
                                                                   FetchOwner=True)["Contents"]}
        assert owners == {"callvault-pbx"}, owners

    async with chromium() as page:
        await page.goto(c.nodes["retrieval"].url + "/login")
        await page.fill("#name", "supervisor")
        await page.fill("#password", c.logins["supervisor"])
        await page.click("#sign-in")
        await page.wait_for_selector("#who")
        today = datetime.date.today()
        await page.fill("input[name=since]", (today - datetime.timedelta(days=1)).isoformat())
        await page.fill("input[name=until]", today.isoformat())
        await page.click("#search-button")
        await page.fill("#reason", "multi-node check")
        for rec in recs:
            await page.wait_for_selector(f'#results tr[data-id="{rec.recording_id}"]')
            await page.click(f'#results tr[data-id="{rec.recording_id}"] button.play')
            await page.wait_for_function(
                "rid => { const p = document.getElementById('player');"
                " return p.src.includes(rid) && p.readyState >= 3 && p.duration > 1; }", arg=rec.recording_id)
            await page.locator("#player").evaluate("p => p.pause()")

    with open_database(c.db_url) as db:
        ledger = Ledger(db)
        for rec in recs:
            plays = ledger.find(recording_id=rec.recording_id, kind="audit.play")
            assert [(e.data["actor"], e.data["reason"]) for e in plays] == [("supervisor", "multi-node check")]
            assert len(ledger.find(recording_id=rec.recording_id, kind="archive")) == 1
    verify = callvault("ledger", "verify", "-c", str(c.nodes["retrieval"].config), timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # A pbx node has no identity and refuses playback, saying why.
    for name in ("pbx-1", "pbx-2"):
        assert cfg.load(c.nodes[name].config, env={}, check_paths=False).web.identity_file is None
        assert not list((c.data / name).glob("identity*"))
    async with aiohttp.ClientSession(c.nodes["pbx-1"].url, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     headers={"Origin": c.nodes["pbx-1"].url}) as s:
        async with s.get("/login") as r:
            assert r.status == 200
        token = next(k.value for k in s.cookie_jar if k.key == "cv_login")
        async with s.post("/login", data={"csrf": token, "name": "supervisor", "password": c.logins["supervisor"]},
                          allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        async with s.get("/api/me") as r:
            csrf = (await r.json())["csrf_token"]
        async with s.post(f"/api/recordings/{recs[0].recording_id}/access", headers={"X-CSRF-Token": csrf},
                          json={"purpose": "play", "format": "wav", "reason": "quality review"}) as r:
            assert r.status == 409, await r.text()
            assert 'pbx node ([node] role = "pbx")' in (await r.json())["error"]


async def test_a_killed_pbx_node_finishes_its_jobs_once_after_restart(cluster):
    c = cluster
    one, two = c.nodes["pbx-1"], c.nodes["pbx-2"]
    assert one.proc is not None and two.proc is not None, "runs after the first test started the nodes"
    # SIGKILL the moment the call ends: the recording has just landed in the spool.
    uid = await consented_call(c.states["pbx-1"], "27215550003", after_hangup=one.kill9)
    assert one.proc.returncode == -9
    with open_database(c.db_url) as db:  # killed before its archiver finished the job
        assert [r.state for r in Catalog(db).by_uniqueid(uid)] != ["archived"]

    # The other node keeps taking calls meanwhile.
    other = await archived(c.db_url, await consented_call(c.states["pbx-2"], "27215550004"))
    assert other.node == "pbx-2"

    one.start()
    await one.up()
    rec = await archived(c.db_url, uid, timeout=60)
    assert rec.node == "pbx-1"
    await asyncio.sleep(2)  # a second, duplicate upload would land now
    assert len(archive_entries(c.db_url, rec.recording_id)) == 1
    assert len(payload_versions(c, rec.object_key)) == 1
    with open_database(c.db_url) as db:
        assert [r.state for r in Catalog(db).by_uniqueid(uid)] == ["archived"]
