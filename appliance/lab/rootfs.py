"""The lab's Debian sid root: Asterisk 22 and Ceph RGW, built once and cached.

Debian 12 has neither Asterisk 22 nor an RGW recent enough for Object Lock with
flexible checksums, so the lab runs both from a sid root under chroot. The root is
cached outside the checkout (``CALLVAULT_LAB_ROOT``, default
``/var/cache/callvault/lab-root``) and rebuilt when it is missing or broken.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

MIRROR = "http://deb.debian.org/debian"
# Bump when the package set changes: an older root is then rebuilt.
ROOT_VERSION = "3"
PACKAGES = (
    "asterisk",
    "asterisk-core-sounds-en-wav",
    "radosgw",
    "ceph-mon",
    "ceph-osd",
)
# What must exist for the root to count as usable.
REQUIRED = (
    "usr/sbin/asterisk",
    "usr/bin/radosgw",
    "usr/bin/ceph-mon",
    "usr/bin/ceph-osd",
    "usr/bin/radosgw-admin",
    "usr/share/asterisk/sounds/en/beep.wav",
)
STAMP = ".callvault-lab-root"


class RootError(RuntimeError):
    """The lab root could not be built or used."""


def default_root() -> Path:
    return Path(os.environ.get("CALLVAULT_LAB_ROOT", "/var/cache/callvault/lab-root"))


def is_ready(root: Path) -> bool:
    stamp = root / STAMP
    if not stamp.is_file() or stamp.read_text().strip() != ROOT_VERSION:
        return False
    # Resolve inside the root: Debian ships absolute symlinks (sounds/en -> /usr/...).
    probe = subprocess.run(["chroot", str(root), "/bin/sh", "-c",
                            " && ".join(f"test -e /{p}" for p in REQUIRED)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return probe.returncode == 0


def _run(cmd: list[str], **kw) -> None:
    log.info("lab: %s", " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise RootError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _host_tools() -> None:
    if shutil.which("debootstrap") is None:
        _run(["apt-get", "update"])
        _run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"],
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def ensure_root(root: Path | None = None, *, progress=print) -> Path:
    """Return a ready root, building it first if it is missing or broken.

    A lock file next to the root serialises concurrent builders (two test runs).
    """
    root = root or default_root()
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / (root.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(root):
            return root
        started = time.monotonic()
        progress(f"lab: building Debian sid root at {root} (once; cached afterwards)")
        unmount_all(root)
        if root.exists():
            shutil.rmtree(root)
        _host_tools()
        tmp = root.with_name(root.name + ".building")
        unmount_all(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        _run(["debootstrap", "--variant=minbase", "sid", str(tmp), MIRROR])
        # ceph-mon's maintainer scripts try to start services unless policy-rc.d says no.
        policy = tmp / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "LC_ALL": "C"}
        # Maintainer scripts (systemd-tmpfiles via cryptsetup-bin) need /proc.
        mount_pseudo(tmp)
        try:
            # sid's Release files are often past Valid-Until on a cached mirror.
            _run(["chroot", str(tmp), "apt-get", "-o", "Acquire::Check-Valid-Until=false",
                  "update"], env=env)
            _run(["chroot", str(tmp), "apt-get", "install", "-y", "--no-install-recommends",
                  *PACKAGES], env=env)
            _run(["chroot", str(tmp), "apt-get", "clean"], env=env)
        finally:
            unmount_all(tmp)
        (tmp / STAMP).write_text(ROOT_VERSION + "\n")
        tmp.rename(root)
        if not is_ready(root):
            raise RootError(f"lab root at {root} is incomplete after the build")
        progress(f"lab: root ready in {time.monotonic() - started:.0f} s")
        return root


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                found.append(target)
    return found


def mount_pseudo(root: Path) -> None:
    """Mount /proc and /dev inside the root (idempotent)."""
    present = set(mounts_under(root))
    proc, dev = root / "proc", root / "dev"
    if str(proc.resolve()) not in present:
        _run(["mount", "-t", "proc", "proc", str(proc)])
    if str(dev.resolve()) not in present:
        _run(["mount", "--bind", "/dev", str(dev)])


def unmount_all(root: Path) -> None:
    if not root.exists():
        return
    # Deepest first, lazily: a process still dying must not keep the mount.
    for target in sorted(mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


if __name__ == "__main__":  # pragma: no cover - used by `make lab-root`
    logging.basicConfig(level=logging.INFO)
    print(ensure_root())
