"""Imports point one way: appliance -> agi, archiver, announcements -> storage.

``storage`` imports none of our packages; ``agi`` and ``archiver`` never import
each other (they meet through interfaces that ``appliance`` wires); only
modules under ``storage/age/`` import ``cryptography``. Inside a package, modules import
each other without cycles; production modules never import the test lab
(``appliance.lab``) or a CLI module.
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


# --- The module import graph: cycles, and production code reaching test/CLI code ---
#
# Nodes are our modules (``appliance.web.admin``; a package is its ``__init__``).
# An edge a -> b means a's source imports b somewhere: at module level or inside a
# function (a lazy import is still a dependency), but not under ``if TYPE_CHECKING:``
# unless asked. ``import a.b.c`` and ``from a.b import c`` point at the most specific
# module that exists (``a.b.c`` when c is a submodule, else ``a.b``); relative imports
# are resolved against the importing module's package. Importing ``a.b.c`` also runs
# ``a/__init__`` and ``a/b/__init__``; those implicit edges are left out, as import
# linters do, or every package would be "in a cycle" with its own submodules.


def module_files(root: Path, packages) -> dict[str, Path]:
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """(requested module, names imported from it, line) for each import statement."""

    def __init__(self, package: str, type_checking: bool):
        self.package = package  # the package relative imports resolve against
        self.type_checking = type_checking
        self.found: list[tuple[str, list[str], int]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test) and not self.type_checking:
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.extend((alias.name, [], node.lineno) for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level - 1 >= len(base):
                raise AssertionError(f"relative import beyond the top package at line {node.lineno}")
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module
        self.found.append((module, [alias.name for alias in node.names], node.lineno))


def import_graph(root: Path, packages, *, type_checking: bool = False
                 ) -> dict[str, dict[str, list[int]]]:
    """module -> {imported module of ours -> [lines]}."""
    modules = module_files(root, packages)

    def most_specific(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, list[int]]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        visitor = _Imports(module if is_package else module.rpartition(".")[0], type_checking)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        edges = graph.setdefault(module, {})
        for requested, names, line in visitor.found:
            targets = [f"{requested}.{n}" for n in names if f"{requested}.{n}" in modules]
            if len(targets) < len(names) or not names:  # some names are attributes of `requested`
                targets.append(requested)
            for target in filter(None, map(most_specific, targets)):
                if target != module:
                    edges.setdefault(target, []).append(line)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """Tarjan's algorithm; the components with more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[str]:
    """Each import cycle as ``a -> b -> a``: per strongly connected component, the
    shortest cycle through each of its edges (so every import that closes a cycle
    shows up in at least one line), without repeats."""
    lines = []
    for component in strongly_connected(graph):
        members = set(component)
        shown: list[str] = []
        for u in component:
            for v in sorted(w for w in graph[u] if w in members):
                # shortest path v ~> u inside the component (breadth first)
                came_from = {v: None}
                queue = [v]
                while u not in came_from:
                    nxt = []
                    for x in queue:
                        for y in sorted(graph[x]):
                            if y in members and y not in came_from:
                                came_from[y] = x
                                nxt.append(y)
                    queue = nxt
                path = [u]
                while path[-1] != v:
                    path.append(came_from[path[-1]])
                ring = [u] + path[::-1][:-1]  # u -> v -> ... (u not repeated)
                start = ring.index(min(ring))
                ring = ring[start:] + ring[:start]
                text = " -> ".join(ring + ring[:1])
                if text not in shown:
                    shown.append(text)
        lines.append(f"{len(component)} modules: {', '.join(component)}")
        lines.extend(f"  {text}" for text in shown)
    return lines


def test_no_import_cycles():
    found = cycles(import_graph(ROOT, sorted(OURS)))
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_cycle_checker_finds_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")  # `from . import submodule`
    (pkg / "b.py").write_text("def f():\n    from .sub.c import thing\n")  # lazy, relative
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import x\nthing = 1\n")  # `..` resolves to pkg
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("import pkg.d\n")
    (pkg / "f.py").write_text("from pkg import g\n")  # `from pkg import submodule`
    (pkg / "g.py").write_text("import pkg.f\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b": [1]}
    assert graph["pkg.b"] == {"pkg.sub.c": [2]}
    assert graph["pkg.sub.c"] == {"pkg.a": [1]}
    assert graph["pkg.d"] == {}  # a type-only import is no runtime dependency
    assert cycles(graph) == [
        "3 modules: pkg.a, pkg.b, pkg.sub.c",
        "  pkg.a -> pkg.b -> pkg.sub.c -> pkg.a",
        "2 modules: pkg.f, pkg.g",
        "  pkg.f -> pkg.g -> pkg.f",
    ]


# Test-lab and CLI code is a leaf: what the appliance runs in production never needs it.
LAB = "appliance.lab"
CLI_MODULES = {"appliance.cli", "appliance.__main__"}


def is_lab(module: str) -> bool:
    return module == LAB or module.startswith(LAB + ".")


def is_cli(module: str) -> bool:
    return module in CLI_MODULES or module.startswith("appliance.cli.")


def lab_or_cli_imports(root: Path, packages) -> list[str]:
    graph = import_graph(root, packages, type_checking=True)
    files = module_files(root, packages)
    bad = []
    for module, edges in sorted(graph.items()):
        if is_lab(module) or is_cli(module):
            continue
        for target, lines in sorted(edges.items()):
            if is_lab(target) or is_cli(target):
                where = ", ".join(str(n) for n in lines)
                bad.append(f"{files[module].relative_to(root)}:{where} ({module}) imports {target}")
    return bad


def test_production_code_imports_no_lab_or_cli_module():
    bad = lab_or_cli_imports(ROOT, sorted(OURS))
    assert not bad, "production code depends on the lab or the CLI:\n" + "\n".join(bad)


def test_the_lab_and_cli_checker_sees_a_violation(tmp_path):
    app = tmp_path / "appliance"
    for d in ("lab", "cli", "web"):
        (app / d).mkdir(parents=True)
        (app / d / "__init__.py").write_text("")
    (app / "__init__.py").write_text("")
    (app / "lab" / "harness.py").write_text("LAB_CONTEXT = 'x'\n")
    (app / "cli" / "recordings.py").write_text("from ..lab.harness import LAB_CONTEXT\n")  # allowed
    (app / "cli" / "__init__.py").write_text("from . import recordings\n")  # allowed
    (app / "web" / "admin.py").write_text("def f():\n    from appliance.lab.harness import LAB_CONTEXT\n")
    (app / "web" / "retrieval.py").write_text("from appliance.cli import common\n")
    (app / "cli" / "common.py").write_text("")
    (app / "service.py").write_text("from .cli import recordings\n")
    assert lab_or_cli_imports(tmp_path, ["appliance"]) == [
        "appliance/service.py:1 (appliance.service) imports appliance.cli.recordings",
        "appliance/web/admin.py:2 (appliance.web.admin) imports appliance.lab.harness",
        "appliance/web/retrieval.py:1 (appliance.web.retrieval) imports appliance.cli.common",
    ]
