"""The house: placer's layers, read from the imports of every module under ``placer/``.

Rules, from the bottom up (``LAYERS``): a module may import a module of a lower layer, or one of its
own group; never one of a higher layer, nor one of another group of its own layer (siblings stay
independent: the evaluator re-checks what the formulation built, so neither imports the other).
Only ``placer/backends/`` imports the solver packages (``ortools``, ``pulp``), and the layers above
reach the backends through their entry points (``placer.backends``, ``placer.backends.placement``)
only, never a backend's own modules. No import cycle among placer's modules.

Why this order, where the code needs it: the placement sits below the backends (the exact node
solvers implement ``placement.nodemodel``'s contract; the planner is handed a solver, it imports
none) and above the evaluator (it prices candidate slot counts); ``result`` records an evaluation
and a placement report and is what the backends return, so it sits between the placement and the
backends; the strategy pass (warm start, plan from a backend's answer) is the backends' sibling:
the solve orchestration above runs both. ``stopping`` (deadline and Ctrl-C flag) imports nothing
and every step may ask it.

What counts as an import: every ``import`` and ``from ... import`` anywhere in a module (module
level, inside functions, under ``if TYPE_CHECKING:``) and ``importlib.import_module`` /
``__import__`` with a literal name. A TYPE_CHECKING-only import counts like any other: a lower
layer naming a higher layer's types still depends on them (a move or rename upstairs breaks it),
so no typing-only exception is made. ``from placer.report import plots`` is an import of
``placer.report.plots``. Tests and benchmarks are outside the house and may import anything.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "placer"

#: bottom to top; each layer maps group names to the module prefixes in it
LAYERS: tuple[dict[str, tuple[str, ...]], ...] = (
    {
        "foundation": (
            "placer",
            "placer.errors",
            "placer.files",
            "placer.stopping",
            "placer.schema",
            "placer.data",
            "placer.executors",
        )
    },
    {
        "inputs": (
            "placer.catalogue",
            "placer.validation",
            "placer.hf",
            "placer.loading",
            "placer.routing",
            "placer.topology",
            "placer.workload_files",
        )
    },
    {"problem": ("placer.problem", "placer.plancheck")},
    {"cost model": ("placer.costmodel",)},
    {
        "formulation": ("placer.formulation",),
        "evaluator": ("placer.evaluator", "placer.serving", "placer.serving_disagg"),
    },
    {"placement": ("placer.placement",), "explain": ("placer.explain",)},
    {"result": ("placer.result",)},
    {"backends": ("placer.backends",), "strategy": ("placer.strategy",)},
    {"solve": ("placer.solve", "placer.serving_solve", "placer.disagg_solve")},
    {
        "compare": ("placer.compare", "placer.sweep"),  # a sweep solves like compare, on its executors
        "fidelity": ("placer.fidelity", "placer.fidelity_broad"),
        "simulate": ("placer.simulate", "placer.simulate_disagg"),
        "frontier": ("placer.frontier",),
        "calibrate": ("placer.calibrate",),
        "export": ("placer.export",),
    },
    {"report": ("placer.report",)},
    {"api": ("placer.api",)},
    {"cli": ("placer.cli", "placer.__main__")},
)

SOLVER_PACKAGES = ("ortools", "pulp")
BACKENDS = "placer.backends"
#: the only backend modules the layers above may import
BACKEND_ENTRY_POINTS = ("placer.backends", "placer.backends.placement")


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is written."""

    source: str  # importing module
    target: str  # imported module (a placer module resolved as far as it exists, else the name)
    path: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def modules(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The longest known module that ``name`` names or lies in (``a.b.C`` -> ``a.b``), else ``name``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return name


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def read_imports(root: Path, package: str) -> list[Import]:
    """Every import of every module of ``package`` (see the module docstring for what counts)."""
    known = modules(root, package)
    found: list[Import] = []
    for module, path in known.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        rel = path.relative_to(root)
        is_package = path.name == "__init__.py"

        def add(name: str, node: ast.AST, module: str = module, rel: Path = rel, lines: list[str] = lines) -> None:
            line = getattr(node, "lineno", 0)
            text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            found.append(Import(module, _resolve(name, known), rel, line, text))

        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node)
                for alias in node.names:
                    # ``from placer.report import plots`` imports the module placer.report.plots
                    sub = f"{base}.{alias.name}"
                    add(sub if sub in known else base, node)
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                    add(node.args[0].value, node)
    return found


def _in(module: str, prefix: str) -> bool:
    # the root package is matched exactly, or it would hold every module
    return module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def place(module: str) -> tuple[int, str] | None:
    """(layer index, group) of a placer module: the longest matching prefix in ``LAYERS``."""
    best: tuple[int, int, str] | None = None
    for index, layer in enumerate(LAYERS):
        for group, prefixes in layer.items():
            for prefix in prefixes:
                if _in(module, prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), index, group)
    return None if best is None else (best[1], best[2])


def _layer_name(index: int) -> str:
    return "/".join(LAYERS[index])


def unplaced(root: Path, package: str) -> list[str]:
    return [module for module in modules(root, package) if place(module) is None]


def upward_imports(imports: list[Import], package: str) -> list[str]:
    """Imports of a higher layer, or of another group of the same layer, with where they are."""
    bad = []
    for imp in imports:
        if not _inside(imp.target, package) or imp.target == imp.source:
            continue
        src, dst = place(imp.source), place(imp.target)
        if src is None or dst is None:
            continue  # reported by the placement test
        if dst[0] > src[0]:
            bad.append(f"{imp.where()}  ({_layer_name(src[0])} imports {imp.target}, layer {_layer_name(dst[0])})")
        elif dst[0] == src[0] and dst[1] != src[1]:
            bad.append(f"{imp.where()}  ({src[1]} imports its sibling {dst[1]}: {imp.target})")
    return bad


def solver_imports(imports: list[Import]) -> list[str]:
    """Imports of a solver package from outside the backends."""
    return [
        f"{imp.where()}  (only {BACKENDS} may import {imp.target.split('.')[0]})"
        for imp in imports
        if imp.target.split(".")[0] in SOLVER_PACKAGES and not _in(imp.source, BACKENDS)
    ]


def backend_internals(imports: list[Import]) -> list[str]:
    """Imports of a backend's own modules from outside the backends (the entry points are the way in)."""
    return [
        f"{imp.where()}  (use {' or '.join(BACKEND_ENTRY_POINTS)}, not {imp.target})"
        for imp in imports
        if _in(imp.target, BACKENDS) and imp.target not in BACKEND_ENTRY_POINTS and not _in(imp.source, BACKENDS)
    ]


def import_cycles(imports: list[Import], package: str) -> list[str]:
    """Each cycle among the package's modules, with the import statements that close it."""
    graph = nx.DiGraph()
    where: dict[tuple[str, str], list[str]] = {}
    for imp in imports:
        if _inside(imp.target, package) and imp.target != imp.source:
            graph.add_edge(imp.source, imp.target)
            where.setdefault((imp.source, imp.target), []).append(imp.where())
    found: list[str] = []
    for cycle in nx.simple_cycles(graph):
        start = cycle.index(min(cycle))  # one way to write each cycle, whatever order networkx finds it in
        cycle = cycle[start:] + cycle[:start]
        ring = cycle + cycle[:1]
        steps = "; ".join(where[(a, b)][0] for a, b in zip(ring, ring[1:], strict=False))
        found.append(f"{' -> '.join(ring)}: {steps}")
    return sorted(found)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return read_imports(ROOT, PACKAGE)


def test_every_module_has_a_layer():
    missing = unplaced(ROOT, PACKAGE)
    assert not missing, "modules with no layer in tests/test_layers.py LAYERS: " + ", ".join(missing)


def test_no_import_cycle(imports):
    cycles = import_cycles(imports, PACKAGE)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_upward_import(imports):
    bad = upward_imports(imports, PACKAGE)
    assert not bad, "imports up the layers:\n" + "\n".join(bad)


def test_only_backends_import_solvers(imports):
    bad = solver_imports(imports)
    assert not bad, "solver imports outside placer/backends/:\n" + "\n".join(bad)


def test_backends_entered_through_their_entry_points(imports):
    bad = backend_internals(imports)
    assert not bad, "imports of a backend's internals:\n" + "\n".join(bad)


def test_the_checks_see_a_planted_violation(tmp_path):
    """The checker itself: a small tree with a cycle, an upward lazy import, a TYPE_CHECKING import
    of a sibling, a solver import outside the backends and a backend internal, each one found."""
    files = {
        "placer/__init__.py": "",
        "placer/errors.py": "",
        "placer/problem.py": "def f():\n    from placer import solve\n",
        "placer/solve.py": "from placer.problem import f\nfrom placer.backends.exhaustive import g\n",
        "placer/evaluator.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from placer.formulation.data import D\n"
        ),
        "placer/formulation/__init__.py": "",
        "placer/formulation/data.py": "import importlib\nimportlib.import_module('pulp')\n",
        "placer/backends/__init__.py": "",
        "placer/backends/exhaustive.py": "from ortools.sat.python import cp_model\nfrom placer.errors import X\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = read_imports(tmp_path, PACKAGE)
    cycles = import_cycles(found, PACKAGE)
    assert cycles == [
        "placer.problem -> placer.solve -> placer.problem: placer/problem.py:2: from placer import solve; "
        "placer/solve.py:1: from placer.problem import f"
    ]
    upward = upward_imports(found, PACKAGE)
    assert [line.split("  ")[0] for line in upward] == [
        "placer/evaluator.py:3: from placer.formulation.data import D",
        "placer/problem.py:2: from placer import solve",
    ]
    assert [line.split("  ")[0] for line in solver_imports(found)] == [
        "placer/formulation/data.py:2: importlib.import_module('pulp')"
    ]
    assert [line.split("  ")[0] for line in backend_internals(found)] == [
        "placer/solve.py:2: from placer.backends.exhaustive import g"
    ]
