"""The explicit FastAGI route table: names in, handlers out, duplicates refused at start.

No registration by import side effects: ``appliance`` builds the table from a list.
A route is the script part of ``agi://host:port/<route>?query``, without the
leading slash or the query string (``Environment.route``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator

from .events import Environment
from .interface import AgiSession

Handler = Callable[[AgiSession], Awaitable[None]]

_NAME = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")


class RouteTable:
    def __init__(self, routes: Iterable[tuple[str, Handler]]):
        self._routes: dict[str, Handler] = {}
        for name, handler in routes:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ValueError(f"bad FastAGI route name {name!r}: use letters, digits, "
                                 "'_', '.', '-' and inner '/' (no leading slash, no query)")
            if name in self._routes:
                raise ValueError(f"duplicate FastAGI route {name!r}")
            if not callable(handler):
                raise ValueError(f"FastAGI route {name!r}: handler is not callable")
            self._routes[name] = handler

    def get(self, name: str) -> Handler | None:
        return self._routes.get(name)

    def resolve(self, env: Environment) -> Handler | None:
        return self._routes.get(env.route)

    def names(self) -> list[str]:
        return sorted(self._routes)

    def __contains__(self, name: object) -> bool:
        return name in self._routes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._routes)
