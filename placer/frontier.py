"""The frontier users look at: output tokens/s per GPU against tokens/s per user.

Each point is a separate optimisation, not a sweep of one plan: the instance's TPOT bound is set to
the point's value (tokens/s per user = 1,000 / TPOT in ms), the objective to the most output tokens/s
per GPU, and the concurrency to ``auto`` (the largest per replica that meets the SLOs), and
:func:`placer.solve.solve` proves the optimum over degrees, replicas, partition and concurrency.
A tighter bound only removes plans, so the optimum never rises as the bound tightens: the points
form a non-increasing curve (a test checks it). The same loop with a ``rate`` workload and the
fewest-GPUs objective gives GPUs needed against demand.

Disaggregated plans (``objective.disaggregation`` ``allow`` or ``only``, or ``--disaggregation``):
the demand points are solved with the instance's mode, so each is the better of the two kinds (or
a disaggregated plan only) and says which. The interactivity points keep one curve per kind: the
aggregated one as above (``allow``), and a disaggregated one, each point the best pair of pools with
its concurrency chosen the same way (``objective.concurrency: auto``). A tighter bound still only
removes plans, so each curve is non-increasing on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from placer.problem import Problem
from placer.result import Result, SolveStatus
from placer.schema import AnyPlan, DisaggregatedPlan
from placer.serving_disagg import DisaggPoint
from placer.solve import solve

#: TPOT bounds tried when none are given [ms]: 10 to 200 tokens/s per user.
DEFAULT_TPOT_MS = (5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0)
#: Requests in flight the solver may choose on the deployment at a frontier point (``auto``
#: concurrency is capped by ``workload.concurrency``; the instance's own value would cap the
#: frontier's loose end, so the larger of the two is the cap). KV memory caps it further.
FRONTIER_MAX_CONCURRENCY = 4096


@dataclass(frozen=True)
class FrontierPoint:
    """One optimum of the frontier, or why there is none at this bound."""

    axis: str  # "tpot_ms" (interactivity frontier) or "rate_rps" (GPUs against demand)
    value: float  # the bound or demand this point was solved at
    status: str
    gap: float | None
    gpus: int | None = None
    degrees: str | None = None  # "pp1 tp1 dp8 ep8 tpm1 x1"; disaggregated "P <prefill pool's> + D <decode pool's>"
    concurrency: float | None = None  # requests in flight on the deployment
    tpot_ms: float | None = None
    ttft_s: float | None = None
    tokens_per_s_per_user: float | None = None
    tokens_per_s_per_gpu: float | None = None
    reason: str | None = None
    #: "aggregated" or "disaggregated": the plan's kind, or (no plan) the kind the point asked for,
    #: "either" when both were allowed
    mode: str = "aggregated"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def degrees_of(plan: AnyPlan | None) -> str:
    """The plan's degrees in one line; a disaggregated plan's two pools ``P ... + D ...``."""
    if plan is None:
        return ""
    if isinstance(plan, DisaggregatedPlan):
        return f"P {plan.prefill.parallelism.label} + D {plan.decode.parallelism.label}"
    return plan.parallelism.label


def _asked_mode(problem: Problem) -> str:
    return {"off": "aggregated", "only": "disaggregated"}.get(problem.objective.disaggregation, "either")


def point_from(axis: str, value: float, result: Result, asked: str = "aggregated") -> FrontierPoint:
    """A frontier point from a solve's result (its evaluation's serving figures); ``asked`` is the
    kind the solve was allowed (the point's ``mode`` when it has no plan)."""
    evaluation = result.evaluation
    if evaluation is None or evaluation.serving is None or result.status == SolveStatus.INFEASIBLE:
        reason = result.explanation[0] if result.explanation else result.status.value
        return FrontierPoint(axis, value, result.status.value, result.gap, reason=reason, mode=asked)
    point = evaluation.serving
    disaggregated = isinstance(point, DisaggPoint)
    concurrency = point.concurrency if disaggregated else point.concurrency_per_replica * point.replicas
    return FrontierPoint(
        axis,
        value,
        result.status.value,
        result.gap,
        gpus=evaluation.gpus,
        degrees=degrees_of(result.plan),
        concurrency=concurrency,
        tpot_ms=point.tpot_s * 1e3,
        ttft_s=point.ttft_s,
        tokens_per_s_per_user=1.0 / point.tpot_s if point.tpot_s > 0 else math.inf,
        tokens_per_s_per_gpu=point.output_tokens_per_s_per_gpu,
        mode="disaggregated" if disaggregated else "aggregated",
    )


def tpot_problem(problem: Problem, tpot_ms: float) -> Problem:
    """``problem`` asking for the most output tokens/s per GPU at TPOT <= ``tpot_ms``, concurrency chosen."""
    workload = problem.workload
    cap = max(FRONTIER_MAX_CONCURRENCY, workload.concurrency or 0, workload.batch_size or 0)
    workload = workload.model_copy(update={"kind": "concurrency", "concurrency": cap, "batch_size": cap})
    objective = problem.objective.model_copy(
        update={"primary": "max_throughput_per_gpu", "concurrency": "auto", "disaggregation": "off"}
    )
    slo = problem.slo.model_copy(update={"tpot_ms": tpot_ms})
    return problem.replace(workload=workload, objective=objective, slo=slo)


def disagg_tpot_problem(problem: Problem, tpot_ms: float) -> Problem:
    """``problem`` asking for the most output tokens/s per GPU of a disaggregated plan at TPOT <=
    ``tpot_ms``, the concurrency of the pair chosen as for an aggregated point."""
    base = tpot_problem(problem, tpot_ms)
    return base.replace(objective=base.objective.model_copy(update={"disaggregation": "only"}))


def demand_problem(problem: Problem, rate_rps: float) -> Problem:
    """``problem`` asking for the fewest GPUs that serve ``rate_rps`` requests/s under its SLOs."""
    workload = problem.workload.model_copy(update={"kind": "rate", "rate_rps": rate_rps})
    objective = problem.objective.model_copy(update={"primary": "min_gpus", "concurrency": "given"})
    return problem.replace(workload=workload, objective=objective)


def _solve_point(task: tuple[Problem, str, float, float | None, str]) -> FrontierPoint:
    problem, axis, value, time_limit_s, backend = task
    result = solve(problem, backend=backend, time_limit_s=time_limit_s)
    return point_from(axis, value, result, _asked_mode(problem))


def frontier(
    problem: Problem,
    tpot_ms: Sequence[float] = DEFAULT_TPOT_MS,
    demands_rps: Sequence[float] = (),
    time_limit_s: float | None = 120.0,
    backend: str = "auto",
    jobs: int = 1,
    on_done: Callable[[FrontierPoint], None] | None = None,
) -> list[FrontierPoint]:
    """Solve every point (``jobs`` processes; each solve is deterministic, so the points do not
    depend on ``jobs``); the interactivity points first (the aggregated curve, then the
    disaggregated one, as ``objective.disaggregation`` allows), then the demand points, in input order."""
    mode = problem.objective.disaggregation
    tasks: list[tuple[Problem, str, float, float | None, str]] = []
    if mode != "only":
        tasks += [(tpot_problem(problem, t), "tpot_ms", float(t), time_limit_s, backend) for t in tpot_ms]
    if mode != "off":
        tasks += [(disagg_tpot_problem(problem, t), "tpot_ms", float(t), time_limit_s, backend) for t in tpot_ms]
    tasks += [(demand_problem(problem, d), "rate_rps", float(d), time_limit_s, backend) for d in demands_rps]
    points: list[FrontierPoint] = []
    if jobs <= 1:
        for task in tasks:
            points.append(_solve_point(task))
            if on_done is not None:
                on_done(points[-1])
        return points
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for point in pool.map(_solve_point, tasks):
            points.append(point)
            if on_done is not None:
                on_done(point)
    return points
