"""The JSON document of a solve: the plan with every figure, the solver's status and bound, the
search record and, under one key, the wall-clock timings.

In the report layer (not in :mod:`placer.api`, which re-exports it) so that the report's writers,
such as :mod:`placer.report.comparison`, need not import the API above them.
"""

from __future__ import annotations

from typing import Any

from placer.problem import Problem
from placer.report.objective import describe_terms, objective_phase
from placer.report.placement import placement_summary
from placer.report.plan_json import plan_with_figures, split_timings
from placer.result import Result
from placer.schema import SolverInfo


def result_document(result: Result, problem: Problem | None = None, *, timings: bool = True) -> dict[str, Any]:
    """The plan JSON of a solve (with status and solver figures), or the status and explanation.

    Every wall-clock figure sits under the one top-level key ``timings``; ``timings=False`` leaves
    it out, so two runs of a deterministic solve give the same bytes. ``problem`` (the solved one)
    names the objective's throughput phase, so each objective term is labelled with its unit and
    the GPU-seconds term with the throughput it stands for."""
    raw = result.search.to_dict()
    if result.placement is not None:
        raw["placement"] = placement_summary(result.placement)
    search, found = split_timings(raw)
    clocks: dict[str, Any] = {"solve_wall_s": result.wall_s, **found}
    placement = result.placement
    if placement is not None and getattr(placement, "wall_s", None) is not None:
        clocks["placement_wall_s"] = placement.wall_s
    clocks = {k: round(v, 3) if isinstance(v, float) else v for k, v in clocks.items()}  # milliseconds
    solver = SolverInfo(
        backend=result.backend,
        objective=result.objective,
        bound=result.bound,
        gap=result.gap,
        status=result.status.value,
    ).model_dump(mode="json", exclude={"wall_s"})
    phase = objective_phase(problem) if problem is not None else None
    if result.evaluation is None:
        document: dict[str, Any] = {
            "status": result.status.value,
            "solver": solver,
            "explanation": result.explanation,
            "search": search,
        }
    else:
        document = plan_with_figures(result.evaluation, result.status.value)
        document["solver"] = solver
        document["objective"] = {
            "primary": result.objective_term,
            "terms": dict(result.terms),
            "described": describe_terms(dict(result.terms), phase, result.evaluation),
        }
        document["search"] = search
    if timings:
        document["timings"] = clocks
    return document
