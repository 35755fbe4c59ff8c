"""Wait for a condition, not for a guessed number of seconds.

``await until(lambda: ..., what="the job archived")`` polls ``predicate`` until it is
true and fails with ``timed out after N s waiting for <what>`` (plus ``detail()``,
the state seen last, if given) when the deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def _timed_out(timeout: float, what: str, detail: Callable[[], Any] | None) -> AssertionError:
    message = f"timed out after {timeout} s waiting for {what}"
    if detail is not None:
        message += f" (last seen: {detail()!r})"
    return AssertionError(message)


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "the condition", *,
                detail: Callable[[], Any] | None = None, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, detail)
        await asyncio.sleep(interval)

