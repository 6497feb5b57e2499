"""The import graph of the ``specsweep`` package, read from its source with ``ast``.

Every ``import`` counts, at module level (``if TYPE_CHECKING:`` blocks included) and inside
functions, because a deferred import is still a dependency. An edge runs from a module to
the deepest ``specsweep`` module it names (``from specsweep.data import cache`` reaches
``specsweep.data.cache``). Modules group into *units*: each subpackage of ``specsweep``
(``frontends``, ``data``, ...) is one unit, each top-level module another. An edge runs
*against the layering* when it closes a cycle between units and points into a unit at least
as high as its own (a unit's height: the longest import chain below any of its modules).

``python tests/test_layering.py`` prints the measures.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parent.parent / "specsweep"

# Private Ray modules that stay, each with no public equivalent in Ray 2.60 (the reason is
# also commented where it is imported): (importing module, Ray module).
REQUIRED_PRIVATE_RAY = {
    # Ending a stopped trial's thread before Tune syncs its folder: only the function
    # trainable's session (its ``finish``) can stop and join that thread.
    ("specsweep.trainables.trainable", "ray.train._internal.session"),
}
# Modules a trial stack is built from: none may reach up into the trainables.
BELOW_TRAINABLES = ("specsweep.frontends", "specsweep.backbones", "specsweep.data", "specsweep.assembly",
                    "specsweep.model", "specsweep.spec", "specsweep.tasks", "specsweep.contract", "specsweep.rundir",
                    "specsweep.layout")


@dataclass
class ImportGraph:
    """Modules of the package, their imports of each other and of Ray."""

    modules: List[str]
    # (importer, imported) -> True when some import of that pair sits at module level.
    edges: Dict[Tuple[str, str], bool] = field(default_factory=dict)
    ray_imports: Set[Tuple[str, str]] = field(default_factory=set)

    def imports_of(self, module: str) -> List[str]:
        return sorted(b for a, b in self.edges if a == module)

    def unit(self, module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2])

    def cycles(self, nodes: List[str], edges: Set[Tuple[str, str]]) -> List[List[str]]:
        """The strongly connected components of more than one node (Tarjan)."""
        index: Dict[str, int] = {}
        low: Dict[str, int] = {}
        stack: List[str] = []
        on_stack: Set[str] = set()
        found: List[List[str]] = []
        succ: Dict[str, List[str]] = {n: [] for n in nodes}
        for a, b in edges:
            succ[a].append(b)

        def visit(node: str) -> None:
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
            for nxt in succ[node]:
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        for node in nodes:
            if node not in index:
                visit(node)
        return found

    def heights(self, nodes: List[str], edges: Set[Tuple[str, str]]) -> Dict[str, int]:
        """Each node's layer: 1 plus the longest import chain below it (the nodes of a
        cycle share one layer)."""
        cyclic = {n: tuple(c) for c in self.cycles(nodes, edges) for n in c}
        succ: Dict[str, Set[str]] = {n: set() for n in nodes}
        for a, b in edges:
            succ[a].add(b)
        memo: Dict[str, int] = {}

        def height(node: str) -> int:
            if node not in memo:
                group = cyclic.get(node, (node,))
                below = {b for a in group for b in succ[a]} - set(group)
                value = 1 + max((height(b) for b in below), default=0)
                memo.update(dict.fromkeys(group, value))
            return memo[node]

        return {n: height(n) for n in nodes}

    def unit_graph(self) -> Tuple[List[str], Set[Tuple[str, str]]]:
        units = sorted({self.unit(m) for m in self.modules})
        return units, {(self.unit(a), self.unit(b)) for a, b in self.edges if self.unit(a) != self.unit(b)}

    def back_edges(self) -> List[Tuple[str, str]]:
        """Module edges that close a cycle between units and point into a unit at least
        as high as the importer's."""
        unit_height: Dict[str, int] = {}
        for module, value in self.heights(self.modules, set(self.edges)).items():
            unit_height[self.unit(module)] = max(unit_height.get(self.unit(module), 0), value)
        units, unit_edges = self.unit_graph()
        in_cycle = {u: i for i, c in enumerate(self.cycles(units, unit_edges)) for u in c}
        return sorted(
            (a, b) for a, b in self.edges
            if self.unit(a) != self.unit(b) and in_cycle.get(self.unit(a), -1) == in_cycle.get(self.unit(b), -2)
            and unit_height[self.unit(b)] >= unit_height[self.unit(a)]
        )

    def measures(self) -> Dict[str, int]:
        units, unit_edges = self.unit_graph()
        return {
            "modules": len(self.modules),
            "layers": max(self.heights(self.modules, set(self.edges)).values()),
            "edges": len(self.edges),
            "back edges": len(self.back_edges()),
            "cycles": len(self.cycles(self.modules, set(self.edges))),
            "units": len(units),
            "unit layers": max(self.heights(units, unit_edges).values()),
            "unit edges": len(unit_edges),
            "unit cycles": len(self.cycles(units, unit_edges)),
        }


class _Imports(ast.NodeVisitor):
    """What a module imports: (the module as written, the dotted name it reaches, whether
    the import sits at module level)."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: List[Tuple[str, str, bool]] = []
        self.depth = 0

    def _scoped(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        self.found.extend((alias.name, alias.name, self.depth == 0) for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        # ``from pkg import name``: the module pkg.name, or an attribute of pkg.
        self.found.extend((source, f"{source}.{alias.name}", self.depth == 0) for alias in node.names)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def import_graph() -> ImportGraph:
    files = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph = ImportGraph(sorted(files))
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        visitor = _Imports(package)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for written, name, top in visitor.found:
            if written.startswith("ray."):
                if "._internal" in written:
                    graph.ray_imports.add((module, written))
                continue
            parts = name.split(".")
            # The deepest specsweep module the name reaches (``from pkg import name`` may name
            # an attribute rather than a module).
            target = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in files), None)
            if target is None or target == module or not name.startswith("specsweep"):
                continue
            graph.edges[(module, target)] = graph.edges.get((module, target), False) or top
    return graph


def _read(source: str, package: str = "specsweep.data") -> List[Tuple[str, str, bool]]:
    visitor = _Imports(package)
    visitor.visit(ast.parse(source))
    return visitor.found


def test_reader_sees_every_import_form():
    source = """
import specsweep.spec
from specsweep.data import cache
from . import loaders
from .datasets import describe_dataset
if TYPE_CHECKING:
    from specsweep.model import SpectrogramModel
def f():
    from ray.train._internal.session import get_session
"""
    assert _read(source) == [
        ("specsweep.spec", "specsweep.spec", True),
        ("specsweep.data", "specsweep.data.cache", True),
        ("specsweep.data", "specsweep.data.loaders", True),
        ("specsweep.data.datasets", "specsweep.data.datasets.describe_dataset", True),
        ("specsweep.model", "specsweep.model.SpectrogramModel", True),
        ("ray.train._internal.session", "ray.train._internal.session.get_session", False),
    ]


def test_graph_holds_every_module_and_its_imports():
    graph = import_graph()
    assert len(graph.modules) == len(list(PACKAGE.rglob("*.py")))
    # A name imported from a module reaches that module; a module imported from a package
    # reaches the module, not the package.
    assert graph.edges[("specsweep.rundir", "specsweep.spec")] is True
    assert graph.edges[("specsweep.trainables.trainable", "specsweep.trainables.trial")] is False
    assert ("specsweep.data.datasets", "specsweep.data.embedded.keywords") in graph.edges
    assert ("specsweep.data.datasets", "specsweep.data.embedded") not in graph.edges


def test_no_import_cycles():
    graph = import_graph()
    assert graph.cycles(graph.modules, set(graph.edges)) == []


def test_no_edge_against_the_layering():
    assert import_graph().back_edges() == []


def test_private_ray_modules_only_where_required():
    assert import_graph().ray_imports <= REQUIRED_PRIVATE_RAY


def test_nothing_below_the_trainables_imports_them():
    upward = [(a, b) for a, b in import_graph().edges
              if a.startswith(BELOW_TRAINABLES) and b.startswith("specsweep.trainables")]
    assert upward == []


def test_launcher_reaches_the_trials_only_through_the_trainable():
    """The launcher names the Tune trainable; the trial stack (``trainables.trial``: torch,
    Lightning) loads in the trial workers."""
    graph = import_graph()
    assert [b for b in graph.imports_of("specsweep.launcher") if b.startswith("specsweep.trainables")] == [
        "specsweep.trainables.trainable"]


def test_trainable_and_its_output_capture_load_without_torch():
    """A trial worker loads the trainable and captures the trial's output (naming its log
    file) before torch and Lightning, so their notices reach the trial's log."""
    modules = ["specsweep.trainables.trainable", "specsweep.trainables.output", "specsweep.layout"]
    code = (f"import sys, {', '.join(modules)}; "
            "print(sorted(m for m in ('torch', 'lightning', 'pyarrow', 'specsweep.spec') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert out.stdout.strip() == "[]"


if __name__ == "__main__":
    graph = import_graph()
    for key, value in graph.measures().items():
        print(f"{key}: {value}")
    for a, b in graph.back_edges():
        print(f"against the layering: {a} -> {b}")
    for a, b in sorted(graph.ray_imports):
        print(f"private Ray: {a} -> {b}")
