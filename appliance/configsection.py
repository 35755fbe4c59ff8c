"""The type of a config section: keys with defaults, built once, then frozen.

A section is a class whose annotated attributes are its keys and their defaults::

    class SpoolConfig(Section):
        dir: Path = Path("/var/spool/asterisk/callvault")
        scan_interval: float = 60.0

``SpoolConfig(dir=Path("/x"))`` takes keyword arguments over the defaults, compares
by value, never changes (``replace`` returns a changed copy) and shows its values in
``repr``. Not a dataclass: the classic AGI entry point loads the config in every call,
and a frozen dataclass costs some 0.5-1 ms of CPU to create (it compiles six methods
and inspects its signature), a section class some 20 us.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, ClassVar, Self


class Default:
    """A default made per instance: ``key: T = Default(factory)``."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory


class Section:
    _defaults: ClassVar[dict[str, Any]] = {}
    _types: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls) -> None:
        own = inspect.get_annotations(cls)
        cls._defaults = {**cls._defaults, **{key: cls.__dict__[key] for key in own}}
        cls._types = None

    def __init__(self, **values: Any):
        unknown = values.keys() - self._defaults.keys()
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown key {min(unknown)!r}")
        d = self.__dict__
        for key, default in self._defaults.items():
            if key in values:
                d[key] = values[key]
            else:
                d[key] = default.factory() if isinstance(default, Default) else default

    def replace(self, **changes: Any) -> Self:
        return type(self)(**{**self.__dict__, **changes})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}; use replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def key_types(cls: type[Section]) -> dict[str, Any]:
    """A section's keys and their types (its annotations, evaluated once)."""
    if cls._types is None:
        hints: dict[str, Any] = {}
        for klass in reversed(cls.__mro__[:-2]):  # not Section, not object
            names = vars(sys.modules[klass.__module__])
            for key, ann in inspect.get_annotations(klass).items():
                hints[key] = eval(ann, names) if isinstance(ann, str) else ann  # our own source
        cls._types = hints
    return cls._types
