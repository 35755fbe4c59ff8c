"""The S3 side of the benchmarks: a Ceph RGW of the bench's own, or a running lab's.

``run_with_rgw(measure, prefix, memstore_bytes)`` calls ``measure(endpoint, work_dir)``
against the lab named by ``CALLVAULT_BENCH_LAB`` when set (``callvault lab up``),
else against a fresh RGW started from the cached lab root and removed afterwards.
The work directory is under /var/tmp (a disk, not tmpfs) and removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The pid files of the daemons behind each endpoint this process started (own_rgw).
_RUN_DIRS: dict[str, Path] = {}
DAEMONS = ("mon", "osd", "rgw")


def server_cpu_seconds() -> float:
    """CPU seconds (user + system) every store daemon this process started has used so
    far; 0 for a lab's."""
    return sum(sum(_daemon_cpu(run).values()) for run in list(_RUN_DIRS.values()))


@contextlib.contextmanager
def own_rgw(prefix: str, memstore_bytes: int) -> Iterator[Any]:
    from appliance.lab import rootfs
    from appliance.lab.ceph import LabRgw
    from appliance.lab.harness import release_root

    root = rootfs.ensure_root(rootfs.default_root(), progress=lambda m: print(m, flush=True))
    rgw = LabRgw(root, f"{prefix}{secrets.token_hex(3)}", memstore_bytes=memstore_bytes)
    try:
        t0 = time.perf_counter()
        rgw.start()
        print(f"RGW up in {time.perf_counter() - t0:.0f} s", flush=True)
        _RUN_DIRS[rgw.endpoint.endpoint_url] = rgw.host / "run"
        yield rgw.endpoint
    finally:
        _RUN_DIRS.pop(rgw.endpoint.endpoint_url, None)
        rgw.stop()
        release_root(root)
        shutil.rmtree(rgw.host.parent, ignore_errors=True)


def store_cpu_seconds(endpoint: Any) -> dict[str, float] | None:
    """CPU seconds (user + system) used so far by each daemon of the store behind
    ``endpoint`` (RGW, its OSD, its monitor), read from /proc; None for a store this
    process did not start (``CALLVAULT_BENCH_LAB``)."""
    run = _RUN_DIRS.get(endpoint.endpoint_url)
    return None if run is None else _daemon_cpu(run)


def _daemon_cpu(run: Path) -> dict[str, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name in DAEMONS:
        pid = (run / f"{name}.pid").read_text().strip()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def run_with_rgw(measure: Callable[[Any, Path], dict], prefix: str, memstore_bytes: int) -> dict:
    """``measure(endpoint, work)``'s results, with ``total_seconds`` added."""
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"callvault-{prefix}-", dir="/var/tmp"))
    try:
        lab = os.environ.get("CALLVAULT_BENCH_LAB")
        if lab:
            from appliance.lab.harness import Lab

            results = measure(Lab.load_state(lab).s3_endpoint, work)
        else:
            with own_rgw(prefix, memstore_bytes) as endpoint:
                results = measure(endpoint, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - t0
    return results


def s3_config(d: Path, endpoint: Any, bucket: str, header_bucket: str, recipient: str) -> str:
    """A config for the appliance's parts against ``endpoint``, with its files under ``d``
    and nothing listening where a real appliance might."""
    from appliance.lab.asterisk import free_port

    return f"""
[agi]
listen = "127.0.0.1:{free_port()}"
[ami]
port = {free_port()}
secret = "unused: the benchmark needs no Asterisk"
[database]
url = "sqlite:///{d / 'callvault.db'}"
[spool]
dir = "{d / 'spool'}"
[archive]
recipients = ["{recipient}"]
[storage]
backend = "s3"
endpoint_url = "{endpoint.endpoint_url}"
region = "{endpoint.region}"
bucket = "{bucket}"
header_bucket = "{header_bucket}"
access_key_id = "{endpoint.access_key_id}"
secret_access_key = "{endpoint.secret_access_key}"
[web]
listen = "127.0.0.1:{free_port()}"
[privacy]
hmac_key_file = "{d / 'hmac.key'}"
"""
