"""The lab as many nodes: N lab Asterisk instances (one pbx node each), one PostgreSQL
server, one RGW with the pbx and retrieval S3 users and their bucket policies, and the
configs of N pbx nodes and one retrieval node (`callvault lab up --pbx-nodes N`).

The first Asterisk is the lab ``NAME`` (it also runs RGW and holds the PostgreSQL data
directory); the others are the labs ``NAME-pbx2`` .. ``NAME-pbxN``. ``cluster.json`` in
the first lab's directory lists them, so `callvault lab down` stops everything.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .ceph import LabRgw, S3Endpoint
from .devsetup import node_config
from .harness import Lab, LabState
from .pgserver import PgServer

BUCKETS = ("callvault-payload", "callvault-headers")
DATABASE = "callvault"
ROLE_USERS = {"pbx": "callvault-pbx", "retrieval": "callvault-retrieval"}


def pbx_lab_name(name: str, index: int) -> str:
    return name if index == 1 else f"{name}-pbx{index}"


@dataclass
class NodeFiles:
    name: str
    role: str
    config: Path
    web_port: int


@dataclass
class Cluster:
    db_url: str
    nodes: list[NodeFiles] = field(default_factory=list)

    @property
    def pbx(self) -> list[NodeFiles]:
        return [n for n in self.nodes if n.role == "pbx"]

    @property
    def retrieval(self) -> NodeFiles:
        return next(n for n in self.nodes if n.role == "retrieval")


def role_keys(rgw: LabRgw) -> dict[str, S3Endpoint]:
    """The pbx and retrieval RGW users, each with its own keys."""
    return {role: rgw.add_user(uid) for role, uid in ROLE_USERS.items()}


def write_cluster(data: Path, states: list[LabState], db_url: str, admin: S3Endpoint,
                  roles: dict[str, S3Endpoint], web_ports: list[int], *,
                  buckets: tuple[str, str] = BUCKETS) -> Cluster:
    """Write the shared files (identity, HMAC key) and one config per node under ``data``
    (``pbx-1/`` .. ``pbx-N/``, ``retrieval/``); create the buckets and write their policies
    with the admin keys. ``web_ports``: one per pbx node, then the retrieval node's."""
    from storage import keys
    from storage.age import Identity

    from .. import compose
    from .. import config as cfg

    data.mkdir(parents=True, exist_ok=True)
    identity_path = data / "identity.txt"
    if not identity_path.exists():
        keys.write_identity(identity_path, Identity.generate())
    recipient = str(keys.load_identities(identity_path)[0].recipient)
    hmac_key = data / "hmac.key"
    if not hmac_key.exists():  # made once here, so nodes started together share it
        fd = os.open(hmac_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    s3 = {"endpoint_url": admin.endpoint_url}
    for role, endpoint in roles.items():
        s3[f"{role}_principal"] = f"arn:aws:iam:::user/{ROLE_USERS[role]}"
        s3[f"{role}_access_key_id"] = endpoint.access_key_id
    cluster = Cluster(db_url)
    shapes = [(f"pbx-{i}", "pbx", state) for i, state in enumerate(states, 1)] + [("retrieval", "retrieval", None)]
    for (name, role, state), port in zip(shapes, web_ports, strict=True):
        node_dir = data / name
        node_dir.mkdir(exist_ok=True)
        _private(node_dir / "s3.secret", roles[role].secret_access_key)
        if state is not None:
            _private(node_dir / "ami.secret", state.product_ami_secret)
        path = node_dir / "callvault.toml"
        path.write_text(node_config(state, node_dir, data, name=name, role=role, web_port=port, db_url=db_url,
                                    recipient=recipient, s3={**s3, "access_key_id": roles[role].access_key_id},
                                    buckets=buckets))
        cluster.nodes.append(NodeFiles(name, role, path, port))
    compose.init_archive(cfg.load(cluster.retrieval.config, check_paths=False, overrides={
        "storage.access_key_id": admin.access_key_id, "storage.secret_access_key": admin.secret_access_key}))
    return cluster


def _private(path: Path, text: str) -> None:
    path.write_text(text + "\n")
    path.chmod(0o600)


def up(name: str, count: int, data: Path, web_ports: list[int], *, agi_ports: list[int],
       progress=print) -> tuple[Cluster, list[LabState], Lab]:
    """Start the labs, PostgreSQL and RGW; write the node configs. Stops what it started
    when a part fails."""
    labs: list[Lab] = []
    pg: PgServer | None = None
    try:
        for i in range(1, count + 1):
            lab = Lab(pbx_lab_name(name, i), agi_port=agi_ports[i - 1], with_s3=i == 1)
            labs.append(lab)
            lab.up(progress=progress)
        first = labs[0]
        pg = PgServer(root=first.dir / "postgres").start()
        db_url = pg.new_database(DATABASE)
        (first.dir / "cluster.json").write_text(json.dumps(
            {"pbx_labs": [lab.name for lab in labs[1:]], "postgres": str(pg.root), "database_url": db_url}))
        assert first.rgw is not None
        states = [lab.state() for lab in labs]
        cluster = write_cluster(data, states, db_url, first.rgw.endpoint, role_keys(first.rgw), web_ports)
        return cluster, states, first
    except BaseException:
        if pg is not None:
            pg.stop()
        for lab in reversed(labs):
            lab.down()
        raise


def down(name: str, root: Path | None = None) -> bool:
    """Stop the lab ``name`` and, when it is a cluster, its other Asterisk instances and
    its PostgreSQL server."""
    from . import rootfs

    lab_dir = (root or rootfs.default_root()) / "callvault-lab" / name
    try:
        extra = json.loads((lab_dir / "cluster.json").read_text())
    except (OSError, ValueError):
        extra = {}
    if extra.get("postgres"):
        PgServer.stop_at(Path(extra["postgres"]))
    for other in extra.get("pbx_labs", []):
        Lab.stop_by_name(other, root)
    stopped = Lab.stop_by_name(name, root)
    shutil.rmtree(lab_dir, ignore_errors=True)
    return stopped
