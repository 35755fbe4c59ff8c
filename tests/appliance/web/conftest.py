"""Fixtures for the web app: the whole appliance serving HTTP on a real port.

``webapp(rules=..., identity=True, web_={...})`` starts `serve`'s application (database, AMI against
the lab Asterisk, archiver, FastAGI, web) with users already made, archive storage
on the lab's Ceph RGW, and, unless ``identity=False``, the private identity on this
node (the retrieval node); ``web_`` replaces ``[web]`` keys (TLS, trusted proxies), ``archive_`` ``[archive]`` keys,
``privacy_`` ``[privacy]`` keys,
and with ``tls_cert`` the site listens with `serve`'s TLS context. ``harness.recording(seconds)`` stores an archived
recording the way the archiver would (age-encrypted header and payload objects in
RGW, a catalog row), so playback is tested without waiting for a call to archive.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
import struct
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from appliance import config as cfg
from appliance.keys import AppKeys as K
from appliance.lab.asterisk import free_port
from appliance.lab.devsetup import dev_config
from appliance.service import build_app, tls_context
from archiver.archive import Archive
from archiver.manifest import Manifest
from storage import keys
from storage.age import Identity, encrypt_file
from storage.catalog import Recording
from storage.dburl import open_database
from storage.hmac_index import caller_hmac
from storage.users import Users

PASSWORD = "correct-horse-{}"
USERS = [("alice", "agent", ["did:27215550100"]), ("bob", "agent", ["PJSIP/2002", "did:27215550199"]),
         ("sam", "supervisor", []), ("olga", "officer", []), ("ada", "admin", [])]
AGENT_DID = "27215550100"
CALLER = "27215550123"


def password(name: str) -> str:
    return PASSWORD.format(name)


def tone_wav(path: Path, seconds: int, hz: int = 440) -> None:
    """A steady tone, 8 kHz 16-bit mono (what MixMonitor writes), built one second at a time."""
    second = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / 8000))) for i in range(8000))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        for _ in range(seconds):
            w.writeframes(second)


@pytest.fixture(scope="session")
def users_template(tmp_path_factory) -> Path:
    """A database holding the test users (hashing their passwords once per session)."""
    path = tmp_path_factory.mktemp("web-users") / "callvault.db"
    db = open_database(f"sqlite:///{path}")
    try:
        users = Users(db)
        for name, role, ids in USERS:
            users.add(name, role, password(name), ids)
    finally:
        db.close()
    return path


@pytest.fixture(scope="session")
def web_buckets(lab_state) -> tuple[str, str]:
    from storage.s3store import S3Settings, S3Store

    e = lab_state.s3_endpoint
    settings = S3Settings(endpoint_url=e.endpoint_url, region=e.region, access_key_id=e.access_key_id,
                          secret_access_key=e.secret_access_key, addressing_style="path")
    name = f"cvweb-{secrets.token_hex(5)}"
    with S3Store(settings, name, object_lock=True) as payload, S3Store(settings, name + "-keys",
                                                                          object_lock=False) as hdrs:
        payload.create_bucket(lock=True)
        hdrs.create_bucket(lock=False)
    return name, name + "-keys"


@dataclass
class Harness:
    app: web.Application
    url: str
    config: cfg.Config
    identity: Identity
    tmp: Path
    clients: list[aiohttp.ClientSession] = field(default_factory=list)

    async def client(self, name: str | None = None, *, origin: bool = True) -> aiohttp.ClientSession:
        """An HTTP client, signed in as ``name`` (``client.csrf`` holds its CSRF token)."""
        headers = {"Origin": self.url} if origin else {}
        session = aiohttp.ClientSession(self.url, cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers)
        self.clients.append(session)
        session.csrf = ""
        if name is not None:
            await self.login(session, name)
            async with session.get("/api/me") as r:
                assert r.status == 200, await r.text()
                session.csrf = (await r.json())["csrf_token"]
        return session

    @staticmethod
    async def login(session: aiohttp.ClientSession, name: str, pw: str | None = None) -> int:
        """Sign in through the login form (double-submit token); returns the status."""
        async with session.get("/login") as r:
            assert r.status in (200, 303), r.status
        token = next((c.value for c in session.cookie_jar if c.key == "cv_login"), "")
        async with session.post("/login", data={"csrf": token, "name": name, "password": pw or password(name)},
                                allow_redirects=False) as r:
            await r.read()
            return r.status

    def recording(self, seconds: int = 60, *, agent: str = "alice", did: str = AGENT_DID,
                  caller: str = CALLER, started_at: float | None = None) -> tuple[str, Path]:
        """An archived recording of a tone in RGW, as the archiver leaves it: (id, WAV path)."""
        rid = "r" + secrets.token_hex(12)
        wav = self.tmp / f"{rid}.wav"
        tone_wav(wav, seconds)
        hdr, pay = self.tmp / f"{rid}.hdr", self.tmp / f"{rid}.pay"
        m = Manifest.of(encrypt_file(wav, hdr, pay, [self.identity.recipient]))
        archive = self.app[K.archive]
        archive.headers.put(Archive.header_key(rid), hdr.read_bytes(), sha256=m.header_sha256)
        with open(pay, "rb") as f:
            put = archive.payload.put(Archive.payload_key(rid), f, size=m.payload_size, sha256=m.payload_sha256)
        pay.unlink()
        start = started_at or time.time() - seconds - 60
        catalog = self.app[K.catalog]
        catalog.add(Recording(
            recording_id=rid, consent_id="c" + rid[1:], uniqueid=f"lab-{rid}-2", linkedid=f"lab-{rid}-1",
            channel=f"Local/{did}@callvault-lab-00000001;2", spool_path=f"/nonexistent/{rid}.wav",
            caller_hmac=caller_hmac(self.app[K.hmac_key], caller), did=did, agent=agent, rule="za-opt-in",
            jurisdiction="ZA", retention_class="default", consent_state="granted", started_at=start))
        catalog.update(rid, state="archived", ended_at=start + seconds, archived_at=start + seconds + 5,
                       object_key=Archive.payload_key(rid), header_key=Archive.header_key(rid), version_id=put.version_id or "",
                       manifest=m.to_json())
        return rid, wav


def make_config(lab_state, tmp_path: Path, users_template: Path, buckets: tuple[str, str], *,
                rules: list[dict] | None = None, identity: bool = True,
                web_: dict | None = None, archive_: dict | None = None,
                privacy_: dict | None = None) -> tuple[cfg.Config, Identity, int]:
    """The dev config `callvault lab up` writes, with archive storage on RGW and the test users."""
    from agi.policy import parse_policy

    ident = Identity.generate()
    keys.write_identity(tmp_path / "identity.txt", ident)
    (tmp_path / "ami.secret").write_text(lab_state.product_ami_secret)
    port = free_port()
    (tmp_path / "callvault.toml").write_text(dev_config(lab_state, tmp_path, port, str(ident.recipient)))
    shutil.copy(users_template, tmp_path / "callvault.db")
    e = lab_state.s3_endpoint
    config = cfg.load(tmp_path / "callvault.toml", env={}, overrides={
        "storage.backend": "s3", "storage.endpoint_url": e.endpoint_url, "storage.region": e.region,
        "storage.bucket": buckets[0], "storage.header_bucket": buckets[1],
        "storage.access_key_id": e.access_key_id, "storage.secret_access_key": e.secret_access_key})
    if rules is not None:
        policy, problems = parse_policy({"rules": rules}, "test")
        assert not problems, problems
        config = config.replace(consent=policy)
    if not identity:  # a node that never decrypts
        config = config.replace(web=config.web.replace(identity_file=None))
    if web_:  # e.g. tls_cert, tls_key, trusted_proxies
        config = config.replace(web=config.web.replace(**web_))
    if archive_:  # e.g. channels
        config = config.replace(archive=config.archive.replace(**archive_))
    if privacy_:  # e.g. erasure_approval
        config = config.replace(privacy=config.privacy.replace(**privacy_))
    return config, ident, port


@pytest.fixture
def webapp(lab_state, tmp_path, users_template, web_buckets):
    @contextlib.asynccontextmanager
    async def start(rules: list[dict] | None = None, *, identity: bool = True, web_: dict | None = None,
                    archive_: dict | None = None, privacy_: dict | None = None):
        config, ident, port = make_config(lab_state, tmp_path, users_template, web_buckets, rules=rules,
                                          identity=identity, web_=web_, archive_=archive_, privacy_=privacy_)
        runner = web.AppRunner(build_app(config), shutdown_timeout=5)
        await runner.setup()
        context = tls_context(config)  # what `serve` listens with
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
        await site.start()
        scheme = "http" if context is None else "https"
        h = Harness(runner.app, f"{scheme}://127.0.0.1:{port}", config, ident, tmp_path)
        try:
            await runner.app[K.ami].wait_connected(10)
            yield h
        finally:
            for c in h.clients:
                await c.close()
            await runner.cleanup()

    return start


class ThreadedServer:
    """The appliance on its own event loop in a thread, for synchronous clients (schemathesis)."""

    def __init__(self, config: cfg.Config, ident: Identity, port: int, tmp: Path):
        import threading

        self.config, self.ident, self.port, self.tmp = config, ident, port, tmp
        self.url = f"http://127.0.0.1:{port}"
        self.harness: Harness | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="web-server", daemon=True)

    def _run(self) -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        self.loop = loop
        self._stop = asyncio.Event()

        async def main() -> None:
            runner = web.AppRunner(build_app(self.config), shutdown_timeout=5)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", self.port).start()
                await runner.app[K.ami].wait_connected(10)
                self.harness = Harness(runner.app, self.url, self.config, self.ident, self.tmp)
                self._ready.set()
                await self._stop.wait()
            finally:
                await runner.cleanup()

        try:
            loop.run_until_complete(main())
        except BaseException as e:  # reported to the test thread
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or self.harness is None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def threaded_server(lab_state, tmp_path_factory, users_template, web_buckets):
    """The appliance on a thread of its own (one per test module), for synchronous clients."""
    tmp = tmp_path_factory.mktemp("web-threaded")
    config, ident, port = make_config(lab_state, tmp, users_template, web_buckets)
    with ThreadedServer(config, ident, port, tmp) as server:
        yield server


@pytest.fixture(scope="session")
def user_password():
    return password


@pytest.fixture
def web_parts():
    """``make_config``, ``Harness`` and ``password`` for tests that start several apps."""
    import types

    return types.SimpleNamespace(make_config=make_config, Harness=Harness, password=password)
