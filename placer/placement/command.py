"""``placer place INSTANCE PLAN``: place the experts of a given plan's degrees, against the baselines.

Why apart from ``placer solve``: the optimum of an instance may need no all-to-all (ep = 1), while
the plan someone wants to run (seed 002's EP64 x TP2) does; this places that plan's experts on
the instance's routing statistics and prices the placed plan with the evaluator.

Computation only: the summary document and the output files are the report layer's
(:mod:`placer.report.place_outputs`), and the exact node solver is handed in by the caller, which
picks it by name with :func:`placer.backends.placement.node_solver` (placement sits below the
backends and does not import them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from placer.costmodel.dispatch import copy_bytes_per_token
from placer.errors import InputError
from placer.evaluator import Evaluation, evaluate
from placer.placement.nodemodel import NodeSolver
from placer.placement.plan import DEFAULT_TARGET, PlacementReport, apply_to_plan, place_plan
from placer.problem import Problem
from placer.schema import Plan


@dataclass(frozen=True)
class PlaceOutcome:
    """The placement of one plan and the evaluator's figures with and without it."""

    problem: Problem
    report: PlacementReport
    placed: Plan
    placed_eval: Evaluation
    contiguous_eval: Evaluation  # the plan's own expert map (contiguous when it has none)

    @property
    def copy_bytes(self) -> float:
        return copy_bytes_per_token(self.problem)


def place_for_plan(
    problem: Problem,
    plan: Plan,
    node_solver: NodeSolver | None = None,
    time_limit_s: float = 30.0,
    target: float = DEFAULT_TARGET,
    redundant_slots_per_gpu: int | tuple[int, ...] | None = None,
    stop: Callable[[], bool] | None = None,
    remaining_s: Callable[[], float] | None = None,
    in_service: Plan | None = None,
    max_moves: int = 0,
) -> PlaceOutcome | None:
    """Place every MoE layer for ``plan``'s degrees; ``None`` for a model without experts.
    ``redundant_slots_per_gpu``: a count, counts to try, or ``None``: the instance's
    ``cost_parameters.redundant_experts_per_gpu`` if set, else placer decides. ``node_solver``:
    the exact node solver (``None``: the greedy search alone). ``stop``: the command's deadline or
    Ctrl-C, ``remaining_s`` the seconds left before it (see :func:`placer.placement.plan.place_plan`).
    ``in_service``: a placed plan whose expert maps serve now; each layer is re-placed from its map
    moving at most ``max_moves`` expert copies (InputError when that plan has no expert map)."""
    maps = None
    if in_service is not None:
        if not in_service.expert_map:
            raise InputError.single("from.expert_map", "the plan in service has no expert map to re-place from")
        maps = list(in_service.expert_map)
    if redundant_slots_per_gpu is None:
        redundant_slots_per_gpu = problem.params.redundant_experts_per_gpu
    report = place_plan(
        problem,
        plan,
        node_solver=node_solver,
        time_limit_s=time_limit_s,
        target=target,
        redundant_slots_per_gpu=redundant_slots_per_gpu,
        stop=stop,
        remaining_s=remaining_s,
        in_service=maps,
        max_moves=max_moves,
    )
    if report is None:
        return None
    placed = apply_to_plan(plan, report) if plan.parallelism.ep > 1 else plan
    placed_eval = report.placed_evaluation if report.placed_evaluation is not None else evaluate(problem, placed)
    return PlaceOutcome(problem, report, placed, placed_eval, evaluate(problem, plan))
