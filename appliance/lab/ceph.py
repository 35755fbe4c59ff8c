"""A real S3 server for the lab and the tests: Ceph RGW on a one-node RADOS cluster.

One monitor, one memstore OSD and one radosgw, all on loopback, all inside the
cached sid root, with authentication off (loopback only) and pool size one. RGW
20 passes the Object Lock, legal hold, tagging, checksum and range checks the
product relies on; lighter servers did not (see docs/testing.md).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import rootfs
from .asterisk import _read_pid, _terminate_group, free_port


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"


class LabRgw:
    def __init__(self, root: Path, name: str, *, memstore_bytes: int = 6 << 30):
        self.root = root
        self.name = name
        self.inside = f"/callvault-lab/{name}/ceph"
        self.host = root / self.inside.lstrip("/")
        self.mon_port = free_port()
        self.rgw_port = free_port()
        self.memstore_bytes = memstore_bytes
        self.access_key = "LAB" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_hex(20)
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def endpoint(self) -> S3Endpoint:
        return S3Endpoint(f"http://127.0.0.1:{self.rgw_port}", self.access_key, self.secret_key)

    def _conf(self, fsid: str) -> str:
        d = self.inside
        return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{self.mon_port}
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
log file = {d}/log/$name.log
log to stderr = false
err to stderr = true
mon data avail warn = 1
mon data avail crit = 0
[mon.a]
mon data = {d}/mon/a
[osd.0]
osd data = {d}/osd/0
[client.rgw.lab]
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port}
rgw crypt require ssl = false
rgw data = {d}/rgw
rgw lc debug interval = 10
rgw enable usage log = false
"""

    def _ceph(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(["chroot", str(self.root), *args, "-c", f"{self.inside}/ceph.conf"],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        return proc.stdout

    def _daemon(self, key: str, *args: str) -> None:
        out = open(self.host / "log" / f"{key}.out", "ab")
        proc = subprocess.Popen(["chroot", str(self.root), *args, "-f", "-c", f"{self.inside}/ceph.conf"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()
        self.procs[key] = proc
        (self.host / "run" / f"{key}.pid").write_text(str(proc.pid))

    def start(self, timeout: float = 120.0) -> None:
        rootfs.mount_pseudo(self.root)
        shutil.rmtree(self.host, ignore_errors=True)
        for sub in ("run", "log", "mon/a", "osd/0", "rgw"):
            (self.host / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        (self.host / "ceph.conf").write_text(self._conf(fsid))
        d = self.inside
        subprocess.run(["chroot", str(self.root), "monmaptool", "--create", "--clobber", "--fsid", fsid,
                        "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", f"{d}/monmap"],
                       check=True, capture_output=True)
        subprocess.run(["chroot", str(self.root), "ceph-authtool", "--create-keyring", f"{d}/mon.keyring",
                        "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"],
                       check=True, capture_output=True)
        self._ceph("ceph-mon", "--mkfs", "-i", "a", "--monmap", f"{d}/monmap",
                   "--keyring", f"{d}/mon.keyring")
        self._daemon("mon", "ceph-mon", "-i", "a")
        deadline = time.monotonic() + timeout
        osd_uuid = str(uuid.uuid4())
        osd_id = self._retry(lambda: self._ceph("ceph", "osd", "new", osd_uuid, timeout=20).strip(), deadline)
        self._ceph("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        self._ceph("ceph", "osd", "crush", "add-bucket", "localhost", "host")
        self._ceph("ceph", "osd", "crush", "move", "localhost", "root=default")
        self._ceph("ceph", "osd", "crush", "add", f"osd.{osd_id}", "1.0", "host=localhost")
        self._daemon("osd", "ceph-osd", "-i", osd_id)
        self._retry(lambda: self._require_osd_up(), deadline)
        self._daemon("rgw", "radosgw", "-n", "client.rgw.lab")
        self._retry(self._rgw_answers, deadline)
        self._retry(lambda: self._ceph("radosgw-admin", "user", "create", "--uid=lab",
                                       "--display-name=callvault lab", f"--access-key={self.access_key}",
                                       f"--secret={self.secret_key}"), deadline)
        (self.host / "endpoint.json").write_text(json.dumps(self.endpoint.__dict__))

    def add_user(self, uid: str) -> S3Endpoint:
        """A further RGW user with new keys (a storage role's S3 user, no buckets of its
        own); its principal is ``arn:aws:iam:::user/UID``."""
        access, secret = "LAB" + secrets.token_hex(8).upper(), secrets.token_hex(20)
        self._ceph("radosgw-admin", "user", "create", f"--uid={uid}", f"--display-name=callvault {uid}",
                   f"--access-key={access}", f"--secret={secret}")
        return S3Endpoint(self.endpoint.endpoint_url, access, secret)

    def _require_osd_up(self) -> None:
        stat = json.loads(self._ceph("ceph", "osd", "stat", "--format=json", timeout=20))
        if stat.get("num_up_osds", 0) < 1:
            raise RuntimeError("osd not up yet")

    def _rgw_answers(self) -> None:
        if self.procs["rgw"].poll() is not None:
            raise rootfs.RootError(f"radosgw exited; see {self.host / 'log'}")
        try:
            urllib.request.urlopen(self.endpoint.endpoint_url, timeout=2).read()
        except urllib.error.HTTPError:
            return  # any HTTP answer means the frontend is up
        except OSError as e:
            raise RuntimeError(f"rgw not answering: {e}") from e

    @staticmethod
    def _retry(fn, deadline: float):
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return fn()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                last = e
                time.sleep(0.25)
        raise TimeoutError(f"lab Ceph did not come up: {last}")

    def stop(self, timeout: float = 15.0) -> None:
        # RGW first, the OSD and monitor last: each depends on the next.
        for key in ("rgw", "osd", "mon"):
            proc = self.procs.pop(key, None)
            pid = proc.pid if proc else _read_pid(self.host / "run" / f"{key}.pid")
            if pid:
                # radosgw sits out SIGTERM for 15 s; its memstore data dies anyway.
                _terminate_group(pid, 1.0 if key == "rgw" else timeout)
            if proc is not None:
                proc.wait()
            (self.host / "run" / f"{key}.pid").unlink(missing_ok=True)

    def stop_rgw(self) -> None:
        """Stop only radosgw (an S3 outage); ``start_rgw`` brings it back."""
        proc = self.procs.pop("rgw", None)
        if proc:
            _terminate_group(proc.pid, 1.0)
            proc.wait()

    def start_rgw(self, timeout: float = 60.0) -> None:
        self._daemon("rgw", "radosgw", "-n", "client.rgw.lab")
        self._retry(self._rgw_answers, time.monotonic() + timeout)
