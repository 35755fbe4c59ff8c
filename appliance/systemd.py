"""systemd: the service unit `callvault systemd-unit` prints, and ``sd_notify``.

``notify`` speaks the sd_notify protocol (a datagram of ``KEY=value`` lines to the
unix socket in ``$NOTIFY_SOCKET``; a leading ``@`` names the abstract namespace) so
that `serve` can run as ``Type=notify``: READY=1 once every part is up and the
listeners accept, STOPPING=1 when the drain starts, STATUS= lines in between, and
WATCHDOG=1 pings while the event loop is alive. Without ``$NOTIFY_SOCKET`` (not under
systemd) it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import AsyncIterator

from .config import Config

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parent / "callvault.service"


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``) to the service manager; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET %r is not a unix socket path; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall("\n".join(lines).encode())
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", address.lstrip("\0"), e)
        return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd asked for (``WATCHDOG_USEC``), or None."""
    usec, pid = os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


async def watchdog(_app: object) -> AsyncIterator[None]:
    """A ``cleanup_ctx`` step: WATCHDOG=1 every half timeout, from the event loop itself
    (a blocked loop stops the pings and systemd restarts the service)."""
    interval = watchdog_interval()
    task = None
    if interval is not None:
        async def ping() -> None:
            while True:
                notify("WATCHDOG=1")
                await asyncio.sleep(interval)

        task = asyncio.get_running_loop().create_task(ping())
    yield
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


# -- the unit -------------------------------------------------------------------------


def _quote(word: str) -> str:
    """One word for a unit file: ``%`` escaped (specifiers), quoted if it has blanks."""
    word = word.replace("%", "%%")
    if re.search(r'[\s"\'\\;]', word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def executable() -> Path:
    """The installed `callvault` command: beside this Python (a virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "callvault"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("callvault")
    if found is None:
        raise FileNotFoundError("no installed `callvault` command beside this Python or on PATH; "
                                "install the package (pip install .) or pass --exec PATH")
    return Path(found).absolute()


def writable_paths(config: Config) -> list[Path]:
    """The directories `serve` writes to: spool, local store, database, HMAC key, prompts.
    A directory inside another one listed is left out."""
    paths = [config.spool.dir, config.privacy.hmac_key_file.parent, config.prompts.library]
    if config.storage.backend == "local":
        paths.append(config.storage.path)
    if config.database.sqlite_path is not None:
        paths.append(config.database.sqlite_path.parent)
    absolute = sorted({Path(os.path.abspath(p)) for p in paths})
    return [p for p in absolute if not any(q != p and q in p.parents for q in absolute)]


def unit(config: Config, config_path: Path, *, user: str, group: str, exec_path: Path, drain: float) -> str:
    """The unit text; ``drain`` is how long `serve` gives each part to finish at SIGTERM."""
    exec_start = " ".join(_quote(w) for w in (str(exec_path), "serve", "-c", os.path.abspath(config_path)))
    # "-": a path not there yet does not stop the unit; `serve` then says what is missing.
    rw = " ".join("-" + _quote(str(p)) for p in writable_paths(config))
    return TEMPLATE.read_text().format(exec_start=exec_start, user=user, group=group, read_write_paths=rw,
                                       drain=int(drain), stop_timeout=int(3 * drain + 30))
