"""The classic entry point (one process per call) does not import what it never uses."""

from __future__ import annotations

import subprocess
import sys


def test_consent_path_does_not_import_pydub():
    # What the classic consent path imports: the entry point, the prompt resolver
    # (announcements.manifest.resolve) and the handlers. pydub is only for
    # generating and converting prompts (`callvault prompts ...`).
    code = (
        "import sys\n"
        "import appliance.classicagi as c\n"
        "from agi.handlers import consent, revoke, status\n"
        "from announcements.manifest import resolve\n"
        "import appliance.compose\n"
        "appliance.compose.prompt_resolver('/nonexistent')\n"
        "print(sorted(m for m in sys.modules if m == 'pydub' or m.startswith('pydub.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
