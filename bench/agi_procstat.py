"""CPU figures from /proc and rusage for the AGI benchmark (Linux)."""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path


def process_cpu() -> float:
    """CPU seconds (user + system) of this process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live Python thread, by name, and the
    system part alone under "NAME sys" (syscalls, futex waits for the GIL)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        out[t.name] = (int(fields[11]) + int(fields[12])) / tick
        out[f"{t.name} sys"] = int(fields[12]) / tick
    return out


def machine() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def filesystem(path: Path) -> str:
    best = ("?", "?", "")
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, target, kind = line.split()[:3]
            if str(path).startswith(target.rstrip("/") + "/") and len(target) >= len(best[2]):
                best = (dev, kind, target)
    return f"{best[1]} on {best[0]}"
