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
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Set, Tuple

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "specsweep"

# Private Ray modules (a part of the name starting with "_") that stay, each with no public
# equivalent in Ray 2.60 (the reason is also commented where it is imported): (importing
# module, Ray module).
REQUIRED_PRIVATE_RAY = {
    # Ending a stopped trial's thread before Tune syncs its folder: only the function
    # trainable's session (its ``finish``) can stop and join that thread.
    ("specsweep.trainables.trainable", "ray.train._internal.session"),
    # A local Ray on loopback after Ray was imported (ray_constants.ENABLE_RAY_CLUSTER), an
    # address resolved as ``ray.init`` resolves it (services), and Ray's configuration read
    # again once token authentication is chosen (_raylet.Config).
    ("specsweep.sweep.cluster", "ray._private"),
    ("specsweep.sweep.cluster", "ray._raylet"),
    # Joining a cluster as the ``ray`` CLI does: the address parsed as Ray parses it, the
    # token looked up where `ray start` looks, and the head's Ray and Python versions asked
    # (_raylet.GcsClient) and compared within seconds (``ray.init`` retries for minutes).
    ("specsweep.sweep.cluster", "ray._common.network_utils"),
    ("specsweep.sweep.cluster", "ray._private.authentication.authentication_token_setup"),
    ("specsweep.sweep.cluster", "ray._common.usage.usage_lib"),
    ("specsweep.sweep.cluster", "ray._private.utils"),
}
# Modules a trial stack is built from: none may reach up into the trainables.
BELOW_TRAINABLES = ("specsweep.frontends", "specsweep.backbones", "specsweep.data", "specsweep.assembly",
                    "specsweep.model", "specsweep.spec", "specsweep.tasks", "specsweep.contract", "specsweep.rundir",
                    "specsweep.layout", "specsweep.tracking")
# The packages of the sweep's driver: what runs it, what plans it, what reads its results.
DRIVER = ("specsweep.plan", "specsweep.sweep", "specsweep.results")
MAX_UNIT_LAYERS = 8


def _cycles(graph: nx.DiGraph) -> List[List[str]]:
    """The import cycles: strongly connected components of more than one node."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def _heights(graph: nx.DiGraph) -> Dict[str, int]:
    """Each node's layer: 1 plus the longest import chain below it (the nodes of a cycle
    share one layer)."""
    dag = nx.condensation(graph)
    height: Dict[int, int] = {}
    for node in reversed(list(nx.topological_sort(dag))):
        height[node] = 1 + max((height[below] for below in dag.successors(node)), default=0)
    return {member: height[node] for node, members in dag.nodes(data="members") for member in members}


@dataclass
class ImportGraph:
    """The package's modules and their imports of each other (edge attribute ``top``: some
    import of that pair sits at module level), and which modules import private Ray ones."""

    modules: nx.DiGraph
    ray_imports: Set[Tuple[str, str]] = field(default_factory=set)

    def imports_of(self, module: str) -> List[str]:
        return sorted(self.modules.successors(module))

    @staticmethod
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    def units(self) -> nx.DiGraph:
        units = nx.DiGraph()
        units.add_nodes_from(self.unit(m) for m in self.modules)
        units.add_edges_from((self.unit(a), self.unit(b)) for a, b in self.modules.edges
                             if self.unit(a) != self.unit(b))
        return units

    def back_edges(self) -> List[Tuple[str, str]]:
        """Module edges that close a cycle between units and point into a unit at least
        as high as the importer's."""
        unit_height: Dict[str, int] = {}
        for module, value in _heights(self.modules).items():
            unit_height[self.unit(module)] = max(unit_height.get(self.unit(module), 0), value)
        cycle_of = {u: i for i, c in enumerate(_cycles(self.units())) for u in c}
        return sorted(
            (a, b) for a, b in self.modules.edges
            if self.unit(a) != self.unit(b) and cycle_of.get(self.unit(a), -1) == cycle_of.get(self.unit(b), -2)
            and unit_height[self.unit(b)] >= unit_height[self.unit(a)]
        )

    def measures(self) -> Dict[str, int]:
        units = self.units()
        return {
            "modules": self.modules.number_of_nodes(),
            "layers": max(_heights(self.modules).values()),
            "edges": self.modules.number_of_edges(),
            "back edges": len(self.back_edges()),
            "cycles": len(_cycles(self.modules)),
            "units": units.number_of_nodes(),
            "unit layers": max(_heights(units).values()),
            "unit edges": units.number_of_edges(),
            "unit cycles": len(_cycles(units)),
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


def _within(module: str, parts: Tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``parts`` or inside one of them."""
    return any(module == part or module.startswith(f"{part}.") for part in parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def import_graph() -> ImportGraph:
    files = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph = ImportGraph(nx.DiGraph())
    graph.modules.add_nodes_from(sorted(files))
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        visitor = _Imports(package)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for written, name, top in visitor.found:
            if written.startswith("ray."):
                if any(part.startswith("_") for part in written.split(".")):
                    graph.ray_imports.add((module, written))
                continue
            parts = name.split(".")
            # The deepest specsweep module the name reaches (``from pkg import name`` may name
            # an attribute rather than a module).
            target = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in files), None)
            if target is None or target == module or not name.startswith("specsweep"):
                continue
            top = top or graph.modules.edges.get((module, target), {}).get("top", False)
            graph.modules.add_edge(module, target, top=top)
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
    assert graph.modules.number_of_nodes() == len(list(PACKAGE.rglob("*.py")))
    # A name imported from a module reaches that module; a module imported from a package
    # reaches the module, not the package.
    assert graph.modules.edges["specsweep.rundir", "specsweep.spec"]["top"] is True
    assert graph.modules.edges["specsweep.trainables.trainable", "specsweep.trainables.trial"]["top"] is False
    assert graph.modules.has_edge("specsweep.data.datasets", "specsweep.data.embedded.keywords")
    assert not graph.modules.has_edge("specsweep.data.datasets", "specsweep.data.embedded")


def test_no_import_cycles():
    assert _cycles(import_graph().modules) == []


def test_no_edge_against_the_layering():
    assert import_graph().back_edges() == []


def test_units_stack_in_at_most_eight_layers():
    """Each subpackage and top-level module is one unit; the longest chain of units that
    import each other (the command line over the sweep, over the plan and results, over
    the trainables, ..., over the shared contracts) is at most MAX_UNIT_LAYERS long."""
    assert import_graph().measures()["unit layers"] <= MAX_UNIT_LAYERS


def test_trials_and_their_components_never_import_the_driver():
    """Plan, sweep and results sit above everything a trial is built from: a trial worker
    never loads the driver's modules."""
    upward = [(a, b) for a, b in import_graph().modules.edges
              if not _within(a, DRIVER + ("specsweep.cli", "specsweep.__main__", "specsweep.reference", "specsweep"))
              and _within(b, DRIVER)]
    assert upward == []


# A trial config read by key: `config["train"]`, `trial.config.get("seed")`,
# `t["config"]["frontend"]`. Only the spec (its schema, TrialConfig, trial_value) and the
# plan read trial configs so; everything else goes through them.
_CONFIG_READ = re.compile(r"""(\w*config\w*|\[["']config["']\])\s*(\[|\.get\()\s*["'](task|data|frontend|backbone|train|seed)["']""")
TRIAL_CONFIG_READERS = ("specsweep.spec", "specsweep.plan")


def test_trial_configs_are_read_by_key_only_in_the_spec_and_the_plan():
    reads = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if not _within(_module_name(path), TRIAL_CONFIG_READERS)
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if _CONFIG_READ.search(line)]
    assert reads == []


def test_the_config_read_pattern_finds_what_it_names():
    found = [bool(_CONFIG_READ.search(line)) for line in (
        'epochs = config["train"]["epochs"]', 'trial.config.get("train", {})', 't["config"].get("seed")',
        'config.get("name")', 'trial_value(config, "seed")', 'params["seed"]')]
    assert found == [True, True, True, False, False, False]


def test_private_ray_modules_only_where_required():
    assert import_graph().ray_imports == REQUIRED_PRIVATE_RAY


def test_nothing_below_the_trainables_imports_them():
    upward = [(a, b) for a, b in import_graph().modules.edges
              if _within(a, BELOW_TRAINABLES) and _within(b, ("specsweep.trainables",))]
    assert upward == []


def test_launcher_reaches_the_trials_only_through_the_trainable():
    """The launcher names the Tune trainable; the trial stack (``trainables.trial``: torch,
    Lightning) loads in the trial workers."""
    graph = import_graph()
    assert [b for b in graph.imports_of("specsweep.sweep.launcher") if _within(b, ("specsweep.trainables",))] == [
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
