"""The async handlers without an event loop, for the classic AGI process.

The handlers are coroutines because FastAGI serves many calls on one event loop. A
classic AGI process serves one call: its session (:class:`agi.classic.PystSession`)
blocks, and its ledger and catalog writes commit in the calling thread
(``appliance.compose.agi_routes(..., blocking=True)``), so a handler never has to
wait for a loop. :func:`run` steps such a coroutine to its end without asyncio,
whose import alone was a third of a classic call's CPU.

:func:`to_thread` is how handlers make a blocking storage call: in a worker thread
under an event loop (FastAGI: the loop must not block), in the calling thread where
no loop runs (classic AGI: there is nothing else to run meanwhile).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class NoEventLoop(RuntimeError):
    """Something awaited an event loop's future where none runs (a bug: see :func:`run`)."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in this thread, without an event loop.

    If it awaits something only a loop can resolve (an asyncio future, ``sleep``),
    :class:`NoEventLoop` is raised inside it at that ``await``, so its own handlers
    (``run_call`` fails the call closed) still run; if it goes on waiting anyway, it
    is closed and :class:`NoEventLoop` raised here.
    """
    try:
        waited = coro.send(None)
        waited = coro.throw(NoEventLoop(f"awaited {type(waited).__name__} without an event loop"))
    except StopIteration as done:
        return done.value
    coro.close()
    raise NoEventLoop(f"awaited {type(waited).__name__} without an event loop, twice")


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread(fn, ...)`` under a running event loop, else ``fn(...)``."""
    asyncio = sys.modules.get("asyncio")  # no loop can run if asyncio was never imported
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)
