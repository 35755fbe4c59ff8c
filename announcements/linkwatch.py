"""Tells an event loop when the installed prompt set may have changed, without a system
call per lookup.

Installs swap the ``callvault`` symlink in the sounds directory (a rename onto it);
removing or replacing it by hand is a delete, create or rename there too. An inotify
watch on that directory, read by the event loop, clears :attr:`LinkWatch.current` on
any of these. The kernel queues the event before the rename returns, so a call whose
connection the loop accepts after an install finished finds ``current`` cleared: the
loop reads every ready descriptor before it runs the tasks of that turn.

Linux only (the appliance's platform); where inotify is missing or the directory
cannot be watched, :func:`watch` returns None (with a warning) and the resolver reads
the link on every lookup. ``callvault serve`` makes one watch for its FastAGI routes
and closes it when the listener stops.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct

log = logging.getLogger(__name__)

# <sys/inotify.h>
IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_MASK = IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
# The watched directory itself went (removed, moved: the watch would follow it to its
# new name, or unmounted): the watch says nothing about the configured path any more.
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then name[len]


class LinkWatch:
    """``current`` is True from the moment the resolver read the link until anything
    in the directory changes; cleared for good when the directory itself goes."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        self.current = False
        self.broken = False
        loop.add_reader(fd, self._drain)

    def _drain(self) -> None:
        self.current = False
        gone = 0
        try:
            while data := os.read(self.fd, 65536):
                at = 0
                while at + _EVENT.size <= len(data):
                    _, mask, _, length = _EVENT.unpack_from(data, at)
                    gone |= mask & _GONE
                    at += _EVENT.size + length
        except BlockingIOError:
            pass
        except OSError as exc:
            log.warning("prompt directory watch failed (%s); reading the link on every lookup", exc)
            self.close()
            return
        if gone:
            log.warning("the sounds directory was removed or moved; the installed prompts' link is read "
                        "on every lookup until restart")
            self.close()

    def close(self) -> None:
        if not self.broken:
            self.broken = True
            self.current = False
            self.loop.remove_reader(self.fd)
            os.close(self.fd)


def watch(directory: str | os.PathLike[str], loop: asyncio.AbstractEventLoop) -> LinkWatch | None:
    """A watch on ``directory`` read by ``loop``, or None where inotify is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        log.warning("no inotify instance (%s): the installed prompts' link is read on every lookup",
                    os.strerror(ctypes.get_errno()))
        return None
    if libc.inotify_add_watch(fd, os.fsencode(directory), _MASK) < 0:
        log.warning("cannot watch the sounds directory %s (%s): the installed prompts' link is read "
                    "on every lookup until restart", directory, os.strerror(ctypes.get_errno()))
        os.close(fd)
        return None
    return LinkWatch(fd, loop)
