"""The names of the keyed notice prompts, shared by the prompt builder (announcements)
and the consent flow (agi), which plays the variant a rule's keys call for.

A notice that asks for keys is written once as a template with ``{allow}`` and
``{refuse}``. Spoken with the default keys (1 and 2) it keeps its plain name
(``notice-opt-in``); with other keys it is ``<name>-k<allow><refuse>``
(``notice-opt-in-k56``).
"""

from __future__ import annotations

import re

KEYED_PROMPTS: tuple[str, ...] = ("notice-opt-in", "notice-opt-out")
DEFAULT_KEYS = ("1", "2")
KEYED_RE = re.compile(r"(notice-opt-in|notice-opt-out)-k([0-9])([0-9])")


def keyed_name(name: str, allow: str, refuse: str) -> str:
    """The prompt a rule with these keys plays for ``name``: the plain name for the
    default keys and for prompts that name no key."""
    if name not in KEYED_PROMPTS or (allow, refuse) == DEFAULT_KEYS:
        return name
    return f"{name}-k{allow}{refuse}"


def split_keyed(name: str) -> tuple[str, tuple[str, str]]:
    """(base prompt name, (allow, refuse)) of a prompt name."""
    m = KEYED_RE.fullmatch(name)
    return (m.group(1), (m.group(2), m.group(3))) if m else (name, DEFAULT_KEYS)
