"""The import structure of ``models`` and ``sincfb``, read from the source with :mod:`ast` (nothing
is imported): no module imports itself back through a circle of imports, and a module of
``models`` imports only from its own floor or lower ones (``FLOORS``, as the docstring of
``models/__init__.py`` describes them).

Every import counts, those inside functions too: a lazy import still ties the two modules.
Imports made by name at run time (``importlib.import_module``) are not seen.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The floors of ``models``, bottom first; a module's floor is its sub-package, and the modules
#: directly in ``models/`` (the command line, the package's names, the old module paths) are
#: the top floor.
FLOORS = ("base", "data", "nets", "evaluation", "training", "inference", "commands", "")


def module_name(path: Path) -> str:
    """``models/data/cache.py`` -> 'models.data.cache'; a package's ``__init__`` is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    """Every module of ``package`` by its dotted name."""
    return {module_name(path): path for path in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, path: Path, known: dict) -> set[str]:
    """The modules of ``known`` that the module ``name`` at ``path`` imports: ``from X import
    y`` counts as ``X.y`` where that is a module, else as ``X``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    known = modules(package)
    return {name: imported(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of imports as ``[a, b, ..., a]``, or [] when there is none (depth-first search
    that keeps the path it is on)."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt]      # nxt is an ancestor of node
            if nxt not in state:
                cycle = visit(nxt, path + [node])
                if cycle:
                    return cycle
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [])
            if cycle:
                return cycle
    return []


def floor(name: str) -> int:
    """The floor number of a module of ``models``."""
    parts = name.split(".")
    sub = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FLOORS) else ""
    return FLOORS.index(sub)


def test_the_cycle_finder_finds_a_planted_cycle_and_only_then():
    """The checker itself: a circle of three is reported as such, a diamond is not a circle."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) in (
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []


def test_the_graph_sees_relative_lazy_and_package_imports(tmp_path, monkeypatch):
    """A lazy relative import inside a function, a ``from . import module`` and an absolute
    import are all edges; an import of another package is none."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from ..top import x\n")
    (pkg / "top.py").write_text("import pkg.sub.leaf\nimport json\nx = 1\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    graph = import_graph("pkg")
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.leaf"}, "pkg.sub.leaf": {"pkg.top"},
                     "pkg.top": {"pkg.sub.leaf"}}
    assert find_cycle(graph) in (["pkg.sub.leaf", "pkg.top", "pkg.sub.leaf"],
                                 ["pkg.top", "pkg.sub.leaf", "pkg.top"])


def test_models_has_no_import_cycle():
    cycle = find_cycle(import_graph("models"))
    assert not cycle, "import cycle in models: " + " -> ".join(cycle)


def test_sincfb_has_no_import_cycle():
    cycle = find_cycle(import_graph("sincfb"))
    assert not cycle, "import cycle in sincfb: " + " -> ".join(cycle)


def test_models_imports_only_downward():
    graph = import_graph("models")
    upward = [f"{name} (floor {FLOORS[floor(name)] or 'top'}) imports {target} "
              f"(floor {FLOORS[floor(target)] or 'top'})"
              for name, targets in sorted(graph.items()) for target in sorted(targets)
              if floor(target) > floor(name)]
    assert not upward, "imports that go up a floor:\n" + "\n".join(upward)


def test_every_module_of_models_has_a_floor_and_none_is_over_400_lines():
    """A new sub-package must be given its place in FLOORS; a module over 400 lines holds more
    than one responsibility."""
    for name, path in modules("models").items():
        floor(name)                      # ValueError for a sub-package not in FLOORS
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(ROOT)}: {lines} lines"
