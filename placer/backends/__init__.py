"""Solver backends. Only this package imports ``ortools`` or ``pulp``; each is imported lazily.

``auto`` is a portfolio over the same mathematics: the exhaustive branch and bound when its work
(DP cells, :func:`placer.backends.exhaustive.dp_cells`) is small enough to finish in seconds, else
CP-SAT. The choice is made from the instance's size alone, never from the clock, so the same input
picks the same backend (and gets the same plan) on any machine.
"""

from __future__ import annotations

from collections.abc import Callable

from placer.formulation.data import FormulationData
from placer.formulation.selection import SelectionData
from placer.result import BackendSolution
from placer.stopping import StopToken

BACKENDS = ("auto", "cpsat", "milp", "exhaustive")

#: Largest exhaustive scan (DP cells) ``auto`` runs instead of CP-SAT. One cell is one
#: (stage, first layer, last layer) entry of the partition DP; measured on this project's 2-core
#: machine, a scan runs about 1e9 cells in a second (``benchmarks/solve_times.py`` prints both
#: backends' times per instance), and branch and bound usually scores a small fraction of the
#: configurations. CP-SAT took 13 s on DeepSeek-V3 (3,704 configurations, 0.2e9 cells) where the
#: scan took under a second.
AUTO_EXHAUSTIVE_MAX_CELLS = 2e10


def get_backend(name: str) -> Callable[..., BackendSolution]:
    """The ``solve(data, time_limit_s=, workers=, seed=, stop=, work_limit=)`` function of a backend."""
    if name == "cpsat":
        from placer.backends.cpsat import solve
    elif name == "milp":
        from placer.backends.milp import solve
    elif name == "exhaustive":
        from placer.backends.exhaustive import solve
    else:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return solve


def choose_backend(name: str, data: FormulationData) -> tuple[str, str]:
    """The backend that runs for ``name`` on ``data``, and why (``auto`` picks by size)."""
    if name != "auto":
        return name, f"{name} (asked for)"
    from placer.backends.exhaustive import dp_cells

    cells = dp_cells(data)
    if cells <= AUTO_EXHAUSTIVE_MAX_CELLS:
        limit = f"{AUTO_EXHAUSTIVE_MAX_CELLS:.0e}"
        return "exhaustive", f"auto: exhaustive branch and bound ({cells:.3g} DP cells <= {limit})"
    return "cpsat", f"auto: CP-SAT ({cells:.3g} DP cells > {AUTO_EXHAUSTIVE_MAX_CELLS:.0e} for the exhaustive scan)"


def run_backend(
    name: str,
    data: FormulationData,
    stop: StopToken | None = None,
    workers: int = 1,
    seed: int = 0,
    work_limit: float | None = None,
) -> BackendSolution:
    """Solve ``data`` with backend ``name`` (``auto`` resolved by :func:`choose_backend` first)."""
    chosen, _ = choose_backend(name, data)
    return get_backend(chosen)(data, workers=workers, seed=seed, stop=stop, work_limit=work_limit)


def run_selection(
    name: str, data: SelectionData, stop: StopToken | None = None, workers: int = 1, seed: int = 0
) -> BackendSolution:
    """Choose among pre-scored candidates (``placer.backends.selection``) with backend ``name``."""
    from placer.backends.selection import select

    return select(name, data, stop, workers, seed)
