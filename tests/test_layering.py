"""Imports point one way: appliance -> agi, archiver, announcements -> storage.

``storage`` imports none of our packages; ``agi`` and ``archiver`` never import
each other (they meet through interfaces that ``appliance`` wires); only
modules under ``storage/age/`` import ``cryptography``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"agi", "archiver", "announcements", "storage", "appliance"}
ALLOWED = {
    "appliance": {"agi", "archiver", "announcements", "storage"},
    "agi": {"storage"},
    "archiver": {"storage"},
    "announcements": {"storage"},
    "storage": set(),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(OURS))
def test_imports_point_downwards(package):
    bad = []
    for path in sources(package):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_only_the_trust_boundary_imports_cryptography():
    importers = [str(p.relative_to(ROOT)) for pkg in OURS for p in sources(pkg)
                 if any(n.split(".")[0] == "cryptography" for n in imports_of(p))]
    assert importers, "no module imports cryptography: the check would pass vacuously"
    outside = [p for p in importers if not p.startswith("storage/age/")]
    assert not outside, "cryptography imported outside storage/age/:\n" + "\n".join(sorted(outside))


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("import appliance.cli\nfrom agi import server\n")
    assert {"appliance.cli", "agi"} <= imports_of(bad)
