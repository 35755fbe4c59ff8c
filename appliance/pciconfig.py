"""[pci]: the feature codes agents dial to pause and resume the recording."""

from __future__ import annotations

import re
from typing import Any

from agi.variables import REVOKE_CODE

from .configsection import Section

# What features.conf accepts as a DTMF sequence; short enough to dial mid-sentence.
_CODE = re.compile(r"[0-9*#A-D]{1,8}")


class PciConfig(Section):
    # Dialled by the agent on a bridged call (features.conf applicationmap).
    pause_code: str = "*1"
    resume_code: str = "*2"


def pci_problems(c: Any, where: str) -> list[str]:
    """Each code is a valid DTMF sequence, and no code is a prefix of another
    (Asterisk would wait for more digits or never reach the longer one)."""
    out = []
    codes = {"pause_code": c.pci.pause_code, "resume_code": c.pci.resume_code}
    for key, code in codes.items():
        if not _CODE.fullmatch(code):
            out.append(f"{where}: [pci] {key} = {code!r}: expected 1 to 8 of 0-9, *, #, A-D, e.g. \"*1\"")
    taken = {"[pci] pause_code": c.pci.pause_code, "[pci] resume_code": c.pci.resume_code,
             "the revoke code": REVOKE_CODE}
    for key, code in codes.items():
        for other, other_code in taken.items():
            if other != f"[pci] {key}" and code and other_code.startswith(code):
                same = "is the same as" if code == other_code else "is a prefix of"
                out.append(f"{where}: [pci] {key} = {code!r}: {same} {other} ({other_code!r}); "
                           "choose codes that differ and none starts another, e.g. \"*1\" and \"*2\"")
    return out
