"""A classic AGI (``AGI(script)``) inside the lab's chrooted Asterisk.

Asterisk runs in the Debian sid root, so a script it starts sees only that root.
:func:`classic_agi` bind-mounts what ``callvault-agi`` needs into the root at the
same paths (the Python installation, the virtualenv, the checkout: read-only; the
test's data directories holding config and database: read-write), writes a wrapper
into Asterisk's agi-bin, and checks that the root's glibc runs the host's Python.
Everything is undone on exit, also after a failure: mounts are released and the
directories created for them removed (only if empty: nothing is ever deleted
through a mount).

    with classic_agi(root, config=tmp / "callvault.toml", data_dirs=[tmp]) as agi:
        dialplan = f"AGI({agi.script},consent,${{EXTEN}})"
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import appliance

AGI_BIN = "usr/share/asterisk/agi-bin"
# Host directories that must never be mounted over the root's own.
_SYSTEM = {Path(p) for p in ("/", "/usr", "/usr/local", "/bin", "/sbin", "/lib", "/lib64",
                             "/etc", "/var", "/opt", "/home", "/root", "/tmp", "/dev", "/proc")}


class ClassicAgiError(RuntimeError):
    """The classic AGI could not be set up inside the lab root."""


@dataclass(frozen=True)
class ClassicAgi:
    script: str  # the name for AGI(): relative to astagidir
    path: str  # the wrapper as Asterisk sees it
    host_path: Path  # the wrapper as the host sees it
    glibc: str  # the root's glibc, which runs the host's Python


@dataclass(frozen=True)
class _Mount:
    source: Path
    readonly: bool


def _checkout() -> Path:
    return Path(appliance.__file__).resolve().parent.parent


def _plan(root: Path, data_dirs: Sequence[Path]) -> list[_Mount]:
    """What to mount, parents before children, without duplicates."""
    wanted = [_Mount(Path(sys.base_prefix).resolve(), True),
              _Mount(Path(sys.prefix).resolve(), True),
              _Mount(_checkout(), True),
              *(_Mount(Path(d).resolve(), False) for d in data_dirs)]
    real_root = root.resolve()
    plan: list[_Mount] = []
    for m in sorted(wanted, key=lambda m: (len(m.source.parts), m.readonly)):
        if m.source in _SYSTEM or real_root.is_relative_to(m.source) \
                or m.source.is_relative_to(real_root):
            raise ClassicAgiError(f"will not bind-mount {m.source} into the lab root {root}: "
                                  "use a Python, virtualenv and data directory outside "
                                  "system directories and outside the root")
        if not m.source.is_dir():
            raise ClassicAgiError(f"{m.source} is not a directory")
        covered = [p for p in plan if m.source.is_relative_to(p.source)]
        if any(p.source == m.source or p.readonly == m.readonly for p in covered):
            continue  # already visible through a mount with the same access
        plan.append(m)
    return plan


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _mount(stack: ExitStack, root: Path, m: _Mount) -> None:
    target = root / m.source.relative_to("/")
    created = []
    probe = target
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    target.mkdir(parents=True, exist_ok=True)
    stack.callback(_remove_dirs, created)  # runs after the unmount below
    done = _run("mount", "--bind", str(m.source), str(target))
    if done.returncode != 0:
        raise ClassicAgiError(f"mount --bind {m.source} {target}: {done.stderr.strip()}")
    stack.callback(_unmount, target)
    if m.readonly:
        done = _run("mount", "-o", "remount,bind,ro", str(target))
        if done.returncode != 0:
            raise ClassicAgiError(f"remount read-only {target}: {done.stderr.strip()}")


def _unmount(target: Path) -> None:
    if _run("umount", str(target)).returncode != 0:
        _run("umount", "-l", str(target))  # busy (a script still running): detach now


def _remove_dirs(created: list[Path]) -> None:
    for d in created:  # deepest first; only empty directories, never through a mount
        if not os.path.ismount(d):
            try:
                d.rmdir()
            except OSError:
                pass


def _wrapper_text(config: Path) -> str:
    script = Path(sys.prefix) / "bin" / "callvault-agi"
    return ("#!/bin/sh\n"
            "# callvault lab: classic AGI wrapper; removed when the lab test ends.\n"
            f"exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "
            f"CALLVAULT_CONFIG={shlex.quote(str(config))} {shlex.quote(str(script))} \"$@\"\n")


def _probe(root: Path) -> str:
    """Run the host's Python under the root's libraries; return the root's glibc."""
    code = ("import os, sqlite3, ssl, ctypes, asterisk.agi, appliance.classicagi; "
            "print(os.confstr('CS_GNU_LIBC_VERSION'))")
    done = _run("chroot", str(root), str(Path(sys.prefix) / "bin" / "python"), "-c", code)
    if done.returncode != 0:
        host = os.confstr("CS_GNU_LIBC_VERSION")
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ClassicAgiError(f"the host's Python (built against {host}) does not run in the "
                              f"lab root {root}:\n{tail}")
    return done.stdout.strip()


@contextmanager
def classic_agi(root: Path, *, config: Path, data_dirs: Sequence[Path] = (),
                name: str | None = None) -> Iterator[ClassicAgi]:
    """Make ``callvault-agi`` runnable by the lab Asterisk in ``root`` for the block."""
    root = Path(root)
    name = name or f"callvault-agi-{secrets.token_hex(4)}"
    with ExitStack() as stack:
        for m in _plan(root, [Path(config).parent, *data_dirs]):
            _mount(stack, root, m)
        wrapper = root / AGI_BIN / name
        if wrapper.exists():
            raise ClassicAgiError(f"{wrapper} already exists")
        stack.callback(wrapper.unlink, missing_ok=True)
        wrapper.write_text(_wrapper_text(Path(config).resolve()))
        wrapper.chmod(0o755)
        glibc = _probe(root)
        yield ClassicAgi(script=name, path=f"/{AGI_BIN}/{name}", host_path=wrapper, glibc=glibc)
