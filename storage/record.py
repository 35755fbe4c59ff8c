"""Frozen value types that cost next to nothing to create.

A record is a class whose annotated attributes are its fields, in order, with their
defaults (``Default(factory)`` for a default made per instance)::

    class AgentSpan(Record):
        agent: str
        joined_at: float
        left_at: float | None = None

``AgentSpan("a", 1.0)`` and ``AgentSpan(agent="a", joined_at=1.0)`` build one; it
compares and hashes by its fields' values, never changes (``replace(**changes)``
returns a changed copy), shows its fields in ``repr``, and ``_fields`` names them
(``ClassVar`` annotations are not fields). Not a dataclass: the classic AGI entry
point is one process per call, and a frozen dataclass costs 0.3-1.6 ms of CPU to
create (it compiles its methods), a record class some 20 us. Instances are built
by one generic ``__init__`` instead of a generated one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Self, get_origin


class Default:
    """A default made per instance: ``field: T = Default(factory)``."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory


class Record:
    _fields: ClassVar[tuple[str, ...]] = ()
    _fieldset: ClassVar[frozenset[str]] = frozenset()
    _defaults: ClassVar[dict[str, Any]] = {}
    _factories: ClassVar[tuple[tuple[str, Callable[[], Any]], ...]] = ()

    def __init_subclass__(cls) -> None:
        own = [name for name, ann in inspect.get_annotations(cls).items()
               if not (ann.startswith("ClassVar") if isinstance(ann, str) else get_origin(ann) is ClassVar)]
        names = cls._fields + tuple(n for n in own if n not in cls._fieldset)
        defaults = dict(cls._defaults)
        factories = dict(cls._factories)
        for n in own:
            if n in cls.__dict__:
                value = cls.__dict__[n]
                if isinstance(value, Default):
                    factories[n] = value.factory
                    defaults.pop(n, None)
                else:
                    defaults[n] = value
                    factories.pop(n, None)
        cls._fields, cls._fieldset = names, frozenset(names)
        cls._defaults, cls._factories = defaults, tuple(factories.items())
        cls.__match_args__ = names

    def __init__(self, *args: Any, **values: Any):
        cls = type(self)
        if args:
            if len(args) > len(cls._fields):
                raise TypeError(f"{cls.__name__}() takes {len(cls._fields)} arguments, {len(args)} given")
            for name, value in zip(cls._fields, args, strict=False):
                if name in values:
                    raise TypeError(f"{cls.__name__}() got multiple values for {name!r}")
                values[name] = value
        d = self.__dict__
        d.update(cls._defaults)
        d.update(values)
        for name, factory in cls._factories:
            if name not in values:
                d[name] = factory()
        if len(d) != len(cls._fields) or not cls._fieldset.issuperset(values):
            unknown = sorted(values.keys() - cls._fieldset)
            if unknown:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {unknown[0]!r}")
            missing = [n for n in cls._fields if n not in d]
            raise TypeError(f"{cls.__name__}() missing required argument(s): {', '.join(map(repr, missing))}")

    def _values(self) -> tuple[Any, ...]:
        d = self.__dict__
        return tuple(d[n] for n in self._fields)

    def replace(self, **changes: Any) -> Self:
        d = self.__dict__
        return type(self)(**{**{n: d[n] for n in self._fields}, **changes})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}; use replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        d = self.__dict__
        return f"{type(self).__name__}({', '.join(f'{n}={d[n]!r}' for n in self._fields)})"
