"""The explicit FastAGI route table: names in, handlers out, duplicates refused."""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable

from .session import AgiSession

Handler = Callable[[AgiSession], Awaitable[None]]


class RouteTable:
    def __init__(self, routes: Iterable[tuple[str, Handler]]):
        self._routes: dict[str, Handler] = {}
        for name, handler in routes:
            if name in self._routes:
                raise ValueError(f"duplicate FastAGI route {name!r}")
            if not name or "/" in name.strip("/") or "?" in name:
                raise ValueError(f"bad FastAGI route name {name!r}")
            self._routes[name] = handler

    def get(self, name: str) -> Handler | None:
        return self._routes.get(name)

    def names(self) -> list[str]:
        return sorted(self._routes)
