"""A selection backend's answer (shared by the exhaustive scan, CP-SAT and the MILP)."""

from __future__ import annotations

import time

from placer.formulation.selection import SelectionData
from placer.result import BackendSolution, SolveStatus


def solution_for(
    data: SelectionData,
    backend: str,
    index: int,
    status: SolveStatus,
    started: float,
    passes: tuple[str, ...],
    bound: float | None = None,
    interrupted: bool = False,
) -> BackendSolution:
    """The backend's answer with terms in physical units (the candidate's values, not the rounded
    integers) and the primary bound (the optimum itself when proven)."""
    values = data.values[index]
    terms = dict(zip(data.terms, values, strict=True))
    if bound is None and status == SolveStatus.OPTIMAL:
        bound = values[0]
    if bound is not None:
        bound = min(bound, values[0])
    return BackendSolution(backend, status, index, (), terms, bound, time.perf_counter() - started, passes, interrupted)
