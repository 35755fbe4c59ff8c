"""Fixtures shared by the whole suite.

The real peers: one lab (Asterisk 22 + Ceph RGW from the cached sid root) is
brought up once per test session and torn down at the end, also after failures;
a private PostgreSQL 15 server likewise (``pg_server``), one fresh database per test
(``pg_url``). Short English prompts are generated once per session and installed into
the lab's Asterisk (the consent flow plays no notice that is not installed).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import boto3
import pytest

from agi.ami import AmiClient
from appliance.lab.calls import CallDriver
from appliance.lab.harness import SHORT_ENGLISH, Lab, LabState
from appliance.lab.pgserver import PgServer


@pytest.fixture(scope="session")
def english_prompts(tmp_path_factory):
    """A prompt library with short English prompts, generated once per session (~1 s),
    with the notices for keys 5 and 6 (the lab's rules with their own keys)."""
    from announcements.catalog import load_catalog
    from announcements.library import PromptLibrary

    root = tmp_path_factory.mktemp("english-prompts")
    (root / "prompts.toml").write_text(SHORT_ENGLISH)
    library = PromptLibrary(root / "library", load_catalog(str(root / "prompts.toml")))
    library.build(["en"], keys=[("5", "6")])
    return library


@pytest.fixture(scope="session")
def lab(english_prompts) -> Lab:
    lab = Lab()
    lab.up(progress=lambda msg: print(msg, flush=True))
    try:
        english_prompts.install(lab.state().sounds_host)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session")
def lab_state(lab: Lab) -> LabState:
    return lab.state()


@pytest.fixture
async def ami(lab_state: LabState):
    """An AMI session as the lab's all-privileges test user (the 'caller side')."""
    client = AmiClient("127.0.0.1", lab_state.ami_port, lab_state.ami_user, lab_state.ami_secret)
    client.start()
    await client.wait_connected(10)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def calls(ami: AmiClient) -> CallDriver:
    return CallDriver(ami)


@pytest.fixture(scope="session")
def s3_client(lab_state: LabState):
    e = lab_state.s3_endpoint
    client = boto3.client("s3", endpoint_url=e.endpoint_url, aws_access_key_id=e.access_key_id,
                          aws_secret_access_key=e.secret_access_key, region_name=e.region)
    yield client
    client.close()


@pytest.fixture
def appliance(lab_state: LabState, tmp_path):
    """Start the appliance (all of `serve` but the web socket) against the lab.

    Usage: ``async with appliance(rules=[...]) as app:``; ``app`` is the aiohttp
    application with its state under ``appliance.keys.AppKeys``.
    """
    import contextlib

    from aiohttp.test_utils import TestServer

    from agi.policy import parse_policy
    from appliance import config as cfg
    from appliance.compose import init_archive
    from appliance.lab.devsetup import dev_config
    from appliance.service import build_app
    from storage import keys
    from storage.age import Identity
    from storage.localstore import LocalStore

    identity = Identity.generate()
    keys.write_identity(tmp_path / "identity.txt", identity)
    (tmp_path / "ami.secret").write_text(lab_state.product_ami_secret)
    (tmp_path / "callvault.toml").write_text(dev_config(lab_state, tmp_path, 0, str(identity.recipient)))

    # A private spool (a subdirectory of the lab's, which MixMonitor writes into), so
    # the archiver never sees other tests' recordings.
    sub = f"t-{secrets.token_hex(4)}"
    spool = Path(lab_state.spool_host) / sub
    spool.mkdir(mode=0o777)
    private = {"spool.dir": str(spool), "spool.asterisk_dir": f"{lab_state.spool_inside}/{sub}",
               "spool.scan_interval": 3600.0}

    init_archive(cfg.load(tmp_path / "callvault.toml", env={}, check_paths=False))

    @contextlib.asynccontextmanager
    async def start(rules: list[dict] | None = None, **overrides):
        config = cfg.load(tmp_path / "callvault.toml", env={}, overrides={**private, **overrides})
        if rules is not None:
            policy, problems = parse_policy({"rules": rules}, "test")
            assert not problems, problems
            config = config.replace(consent=policy)
        server = TestServer(build_app(config), host="127.0.0.1")
        await server.start_server()
        try:
            from appliance.keys import AppKeys as K

            await server.app[K.ami].wait_connected(10)
            yield server.app
        finally:
            await server.close()

    start.spool = spool
    start.payload = lambda: LocalStore(tmp_path / "archive" / "payload")
    start.keys = lambda: LocalStore(tmp_path / "archive" / "keys")
    start.identity = lambda: keys.load_identities(tmp_path / "identity.txt")
    return start


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    with PgServer() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()
