"""The selection problem (:mod:`placer.formulation.selection`) in every backend.

A selection chooses one of a finite list of already-scored candidates, minimising its terms in
lexicographic order, ties to the lowest index. The exhaustive scan is the reference; CP-SAT and
the MILP solve the same integer coefficients as a one-hot choice (``placer.backends.cpsat.selection``,
``placer.backends.milp.selection``), so the three must return the same candidate (a test checks it).
The proof each gives is of the selection only: that the candidates hold every admissible
configuration is the caller's to say (``SelectionData.complete``).
"""

from __future__ import annotations

import time

from placer.backends.selection_answer import solution_for
from placer.formulation.selection import SelectionData
from placer.result import BackendSolution, SolveStatus
from placer.stopping import StopToken

SELECTION_BACKENDS = ("auto", "exhaustive", "cpsat", "milp")


def select(
    name: str, data: SelectionData, stop: StopToken | None = None, workers: int = 1, seed: int = 0
) -> BackendSolution:
    """Choose the best candidate of ``data`` with backend ``name`` (``auto``: the exhaustive scan,
    a few hundred comparisons at most)."""
    if name in ("auto", "exhaustive"):
        return select_exhaustive(data)
    if name == "cpsat":
        from placer.backends.cpsat.selection import select as cpsat_select

        return cpsat_select(data, stop=stop, workers=workers, seed=seed)
    if name == "milp":
        from placer.backends.milp.selection import select as milp_select

        return milp_select(data, stop=stop, workers=workers, seed=seed)
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(SELECTION_BACKENDS)}")


def select_exhaustive(data: SelectionData) -> BackendSolution:
    """Lexicographic minimum over (integer costs, index): a scan, proven by construction."""
    started = time.perf_counter()
    best = data.best_reference()
    if best is None:
        return BackendSolution("exhaustive", SolveStatus.INFEASIBLE, None, (), {}, None, time.perf_counter() - started)
    return solution_for(data, "exhaustive", best, SolveStatus.OPTIMAL, started, (f"scanned {len(data)} candidates",))
