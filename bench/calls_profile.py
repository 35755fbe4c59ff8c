"""py-spy over `callvault serve` for the calls benchmark: where its CPU goes.

``start(pid, out)`` runs ``py-spy record`` (500 Hz: a few ms of CPU a call gives few
samples at less) until ``stop``, sampling only the
thread that holds the GIL (``--gil``): py-spy's "active" samples count threads asleep
in ``time.sleep`` or blocked in a read, and without pausing the process
(``--nonblocking``) the GIL's last holder is sampled while nobody holds it; either way
the samples add up to several times the process's CPU. The GIL samples are Python
running; native code that lets go of the GIL (SQLite, hashing, socket calls) is in the
process's CPU but not in them, so the table gives each part's share of the samples and
that share of the CPU measured over the same pass. Each sample is given to the part of
callvault its innermost callvault frame is in (a stack without one, to the library it
is in: panoramisk is AMI, botocore the archiver's uploads, ...).
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path

RATE = 500
# (category, file prefixes): the first that matches the innermost callvault frame.
CALLVAULT = (
    ("AMI session (agi/ami.py)", ("agi/ami.py",)),
    ("live calls (appliance/web/live*)", ("appliance/web/live", "appliance/livebus")),
    ("FastAGI consent (agi/)", ("agi/",)),
    ("archiver: encrypt, upload, verify", ("archiver/", "storage/age/", "storage/s3", "storage/blobstore")),
    ("ledger and catalog (storage/)", ("storage/",)),
    ("web and metrics (appliance/web/)", ("appliance/web/",)),
    ("other callvault", ("appliance/", "announcements/")),
)
LIBRARIES = (
    ("AMI session (agi/ami.py)", ("panoramisk/",)),
    ("archiver: encrypt, upload, verify", ("botocore/", "boto3/", "urllib3/", "s3transfer/", "http/client")),
    ("web and metrics (appliance/web/)", ("aiohttp/", "prometheus_client/")),
    ("event loop, threads", ("asyncio/", "selectors.py", "uvloop/", "threading.py", "concurrent/")),
)
PACKAGES = ("agi/", "appliance/", "archiver/", "storage/", "announcements/")
ENTRY = ("appliance/__main__.py", "appliance/cli/", "appliance/service.py")
# The innermost frame is the loop's own: uvloop runs in C below run_app.
LOOP = ("appliance/service.py", "aiohttp/web.py", "asyncio/", "selectors.py")


def start(pid: int, out: Path) -> subprocess.Popen:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy (a development tool, not a dependency)")
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
                             "--gil", "--threads", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _file(frame: str) -> str:
    return frame.rsplit(" (", 1)[-1].rstrip(")").rsplit(":", 1)[0]


def categorise(frames: list[str]) -> tuple[str, str]:
    """(category, the innermost callvault function or the library frame)."""
    ours = [f for f in frames if _file(f).startswith(PACKAGES) and not _file(f).startswith(ENTRY)]
    if ours:
        where = _file(ours[-1])
        for name, prefixes in CALLVAULT:
            if where.startswith(prefixes):
                return name, ours[-1]
    if frames and _file(frames[-1]).startswith(LOOP):
        return "event loop, threads", frames[-1]
    for frame in reversed(frames):
        for name, prefixes in LIBRARIES:
            if any(p in _file(frame) for p in prefixes):
                return name, frame
    return "other", frames[-1] if frames else "?"


def stop(proc: subprocess.Popen) -> dict:
    """Stop py-spy; samples by category and by innermost callvault function."""
    out = Path(proc.args[proc.args.index("--output") + 1])
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    by_part: collections.Counter[str] = collections.Counter()
    by_frame: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # the first is the thread
        part, frame = categorise(frames)
        by_part[part] += int(count)
        by_frame[f"{part.split(' (')[0].split(':')[0]}: {frame}"] += int(count)
    return {"rate": RATE, "samples": sum(by_part.values()), "by_part": dict(by_part.most_common()),
            "top": dict(by_frame.most_common(15))}


def table(profile: dict, scenario: str, cpu_ms_per_call: float) -> str:
    """Each part's share of the GIL samples, and that share of the measured CPU per call."""
    total = max(profile["samples"], 1)
    lines = [(f"py-spy over serve, {scenario} calls: {profile['samples']} GIL samples, "
             f"{cpu_ms_per_call:.1f} ms CPU/call measured over the same pass"),
             f"{'part':<40} {'share':>6} {'ms/call':>8}"]
    for part, n in profile["by_part"].items():
        lines.append(f"{part:<40} {n / total:>6.0%} {n / total * cpu_ms_per_call:>8.2f}")
    lines.append("busiest frames (innermost callvault frame, or the library's), share of samples:")
    for frame, n in profile["top"].items():
        lines.append(f"  {n / total:5.1%}  {frame}")
    return "\n".join(lines)
