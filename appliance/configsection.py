"""The type of a config section: keys with defaults, built once, then frozen.

A section is a class whose annotated attributes are its keys and their defaults::

    class SpoolConfig(Section):
        dir: Path = Path("/var/spool/asterisk/callvault")
        scan_interval: float = 60.0

``SpoolConfig(dir=Path("/x"))`` takes keyword arguments over the defaults, compares
by value, never changes (``replace`` returns a changed copy) and shows its values in
``repr``. Not a dataclass: the classic AGI entry point loads the config in every call,
and a frozen dataclass costs some 0.5-1 ms of CPU to create (it compiles six methods
and inspects its signature), a section class, a ``storage.record.Record``, some 20 us.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, ClassVar

from storage.record import Record


class Section(Record):
    """A record whose fields all have defaults and are given by keyword only."""

    _types: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._types = None

    def __init__(self, **values: Any):
        unknown = values.keys() - self._fieldset
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown key {min(unknown)!r}")
        super().__init__(**values)


def key_types(cls: type[Section]) -> dict[str, Any]:
    """A section's keys and their types (its annotations, evaluated once)."""
    if cls._types is None:
        hints: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if not issubclass(klass, Section) or klass is Section:
                continue
            names = vars(sys.modules[klass.__module__])
            for key, ann in inspect.get_annotations(klass).items():
                hints[key] = eval(ann, names) if isinstance(ann, str) else ann  # our own source
        cls._types = hints
    return cls._types
