"""``placer place INSTANCE PLAN``: place the experts of a given plan's degrees, against the baselines.

Why apart from ``placer solve``: the optimum of an instance may need no all-to-all (ep = 1), while
the plan someone wants to run (seed 002's EP64 x TP2) does; this places that plan's experts on
the instance's routing statistics and prices the placed plan with the evaluator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placer.evaluator import Evaluation, copy_bytes_per_token, evaluate
from placer.files import write_atomic
from placer.placement.plan import DEFAULT_TARGET, PlacementReport, apply_to_plan, place_plan
from placer.problem import Problem
from placer.report.plan_json import dumps
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
    backend: str = "cpsat",
    time_limit_s: float = 30.0,
    target: float = DEFAULT_TARGET,
    redundant_slots_per_gpu: int | tuple[int, ...] | None = None,
) -> PlaceOutcome | None:
    """Place every MoE layer for ``plan``'s degrees; ``None`` for a model without experts.
    ``redundant_slots_per_gpu``: a count, counts to try, or ``None``: the instance's
    ``cost_parameters.redundant_experts_per_gpu`` if set, else placer decides."""
    if redundant_slots_per_gpu is None:
        redundant_slots_per_gpu = problem.params.redundant_experts_per_gpu
    report = place_plan(
        problem,
        plan,
        backend=backend,
        time_limit_s=time_limit_s,
        target=target,
        redundant_slots_per_gpu=redundant_slots_per_gpu,
    )
    if report is None:
        return None
    placed = apply_to_plan(plan, report) if plan.parallelism.ep > 1 else plan
    placed_eval = report.placed_evaluation if report.placed_evaluation is not None else evaluate(problem, placed)
    return PlaceOutcome(problem, report, placed, placed_eval, evaluate(problem, plan))


def _figures(ev: Evaluation) -> dict[str, Any]:
    return {**ev.metrics(), "feasible": ev.feasible, "broken": [c.name for c in ev.slo + ev.rules if not c.ok]}


def place_document(outcome: PlaceOutcome) -> dict[str, Any]:
    """JSON-able summary: placement vs baselines, and the evaluator's figures before and after."""
    from placer.report.placement import placement_summary

    return {
        "instance": outcome.problem.name,
        "plan": outcome.placed.name,
        "placement": placement_summary(outcome.report),
        "copy_bytes_per_token": outcome.copy_bytes,
        "evaluation_placed": _figures(outcome.placed_eval),
        "evaluation_plan_map": _figures(outcome.contiguous_eval),
    }


def write_outputs(outcome: PlaceOutcome, out_dir: Path) -> list[Path]:
    """The placed plan (a plan document ``placer evaluate`` reads) and SGLang's expert-location map."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    plan_path = out_dir / f"{outcome.placed.name or 'plan'}-placed.json"
    write_atomic(plan_path, dumps(outcome.placed.model_dump(mode="json", exclude_none=True)))
    written.append(plan_path)
    if outcome.placed.expert_map and outcome.problem.model.moe is not None:
        from placer.export.common import ExportInput, equal_slots_per_rank
        from placer.export.sglang import expert_location

        data = ExportInput(outcome.problem, outcome.placed)
        if equal_slots_per_rank(data):
            map_path = out_dir / "sglang-expert-location.json"
            write_atomic(map_path, json.dumps(expert_location(data)) + "\n")
            written.append(map_path)
    return written
