"""Solve orchestration: formulation data -> backend -> plan -> independent re-check -> Result."""

from __future__ import annotations

import dataclasses
import math
import time

from placer.backends import run_backend
from placer.errors import PlanMismatchError
from placer.evaluator import Evaluation, evaluate
from placer.formulation.data import FormulationData, build_formulation
from placer.formulation.terms import objective_terms, primary_term
from placer.problem import Problem
from placer.result import BackendSolution, Result, SolveStatus
from placer.schema import Parallelism, Plan, Stage

#: Agreement required between the solver's objective terms and the evaluator's (integer scaling
#: rounds every coefficient up by < 1 ns or < 1 kB).
RELATIVE_TOLERANCE = 1e-5


def plan_from_solution(data: FormulationData, solution: BackendSolution) -> Plan:
    """Turn the chosen configuration and stage starts into a plan document."""
    assert solution.config_index is not None
    config = data.configs[solution.config_index]
    starts = list(solution.stage_starts) + [data.num_layers]
    stages = [Stage(layers=(starts[s], starts[s + 1] - 1)) for s in range(config.par.pp)]
    return Plan(
        name=f"{data.problem.name}-{solution.backend}",
        instance=data.problem.name,
        hardware=data.problem.hardware.name,
        gpus=config.gpus,
        parallelism=config.par,
        stages=stages,
    )


def terms_from_evaluation(data: FormulationData, evaluation: Evaluation) -> dict[str, float]:
    """The objective terms recomputed from the evaluator's figures, never from solver variables."""
    phase = data.problem.objective.throughput_phase
    if phase == "prefill":
        gpu_seconds = data.prefill_tokens / (evaluation.prefill_tokens_per_ms_per_gpu * 1e3)
    else:
        gpu_seconds = data.decode_tokens / (evaluation.decode_tokens_per_ms_per_gpu * 1e3)
    return {
        "min_gpus": float(evaluation.gpus),
        "max_throughput_per_gpu": gpu_seconds,
        "min_cross_node_traffic": evaluation.cross_node_bytes_per_token,
        "min_ttft": evaluation.ttft_s,
    }


def _check_agreement(solution: BackendSolution, recomputed: dict[str, float], evaluation: Evaluation) -> None:
    if not evaluation.feasible:
        broken = [c.name for c in evaluation.slo + evaluation.rules if not c.ok]
        raise PlanMismatchError(f"{solution.backend} returned a plan the evaluator rejects: {broken}")
    for name, value in solution.terms.items():
        other = recomputed[name]
        if not math.isclose(value, other, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6):
            raise PlanMismatchError(f"{solution.backend}: objective term {name} is {value} in the solver but {other} in the evaluator")


def warm_start(problem: Problem, max_gpus: int | None) -> tuple[Parallelism, tuple[int, ...]] | None:
    """Greedy incumbent: a small family of plans (one replica, EP over the whole stage, the widest
    TP that divides the heads inside a node) in increasing GPU count, each with its exact best
    partition; the first that fits. Its GPU count bounds the model's search space, which stays
    exact for the fewest-GPUs objective (no plan with more GPUs can beat it), and it is the
    backends' first hint, so an interrupted search has a plan to return."""
    from placer.backends.exhaustive import evaluate_config
    from placer.formulation.data import build_config, formulation_data, gpu_cap, layer_classes

    cap, _ = gpu_cap(problem, max_gpus)
    model = problem.model
    classes, names = layer_classes(problem)
    shell = formulation_data(problem, (), cap, "")
    candidates = []
    width = 1
    while width <= cap:
        tp = max(d for d in range(1, min(width, problem.fabric.gpus_per_node) + 1) if width % d == 0 and model.attention.num_heads % d == 0)
        ep = width if model.moe is not None and width <= model.moe.num_experts else 1
        for pp in range(1, min(model.num_layers, cap // width) + 1):
            candidates.append(Parallelism(pp=pp, tp=tp, dp_attn=width // tp, ep=ep, tp_moe=width // ep))
        width *= 2
    for par in sorted(candidates, key=lambda p: (p.gpus, p.pp)):
        config = build_config(problem, par, classes, len(names))
        scored = evaluate_config(shell, config)
        if scored is not None:
            return par, scored[1]
    return None


def solve(
    problem: Problem,
    backend: str = "cpsat",
    time_limit_s: float = 60.0,
    workers: int = 1,
    seed: int = 0,
    max_gpus: int | None = None,
) -> Result:
    """Find the best plan for ``problem`` under its objective, and prove it (or give the gap)."""
    started = time.perf_counter()
    cap_reason = "--max-gpus"
    warm = warm_start(problem, max_gpus)
    incumbent, incumbent_starts = warm if warm is not None else (None, ())
    if incumbent is not None and primary_term(problem.objective) == "min_gpus":
        if max_gpus is None or incumbent.gpus < max_gpus:
            max_gpus = incumbent.gpus
            cap_reason = "warm-start incumbent: a feasible plan with this many GPUs exists"
    data = build_formulation(problem, max_gpus, cap_reason)
    hint = next((i for i, c in enumerate(data.configs) if c.par == incumbent), None)
    data = dataclasses.replace(data, hint_config=hint, hint_starts=incumbent_starts if hint is not None else ())
    search = {
        "configurations_enumerated": data.considered,
        "configurations_in_model": len(data.configs),
        "fixed_by_presolve": data.presolved_out,
        "gpu_cap": data.gpu_cap,
        "gpu_cap_reason": data.gpu_cap_reason,
        "build_s": time.perf_counter() - started,
        "warm_start_gpus": None if incumbent is None else incumbent.gpus,
    }
    solution = run_backend(backend, data, max(0.1, time_limit_s - search["build_s"]), workers, seed)
    wall = time.perf_counter() - started
    search["interrupted"] = solution.interrupted
    primary = objective_terms(data)[0]
    if solution.config_index is None:
        from placer.explain import explain_infeasible

        explanation = explain_infeasible(data) if solution.status == SolveStatus.INFEASIBLE else []
        return Result(
            solution.status,
            backend,
            wall,
            explanation=explanation,
            search=search,
            objective_term=primary,
            interrupted=solution.interrupted,
        )
    plan = plan_from_solution(data, solution)
    evaluation = evaluate(problem, plan)
    recomputed = terms_from_evaluation(data, evaluation)
    _check_agreement(solution, recomputed, evaluation)
    objective = recomputed[primary]
    bound = solution.bound
    gap = None
    if bound is not None and objective:
        gap = max(0.0, (objective - bound) / abs(objective))
    if solution.status == SolveStatus.OPTIMAL:
        gap = 0.0
    plan, evaluation, placement = _place_experts(problem, plan, evaluation, backend, time_limit_s)
    if placement is not None:
        from placer.report.placement import placement_summary

        search["placement"] = placement_summary(placement)
    result = Result(
        status=solution.status,
        backend=backend,
        wall_s=wall,
        plan=plan,
        evaluation=evaluation,
        objective=objective,
        objective_term=primary,
        bound=bound,
        gap=gap,
        terms={name: recomputed[name] for name in objective_terms(data)},
        search=search,
        interrupted=solution.interrupted,
    )
    result.placement = placement  # type: ignore[attr-defined]  # read by the reports
    return result


def _place_experts(problem: Problem, plan: Plan, evaluation: Evaluation, backend: str, time_limit_s: float):  # type: ignore[no-untyped-def]
    """Placement step (docs/placement.md): place every MoE layer for the chosen degrees and keep the
    placed plan when the evaluator still accepts it. The strategy's proven terms stay as they are:
    its balanced-load expert time is a lower bound on every placement's."""
    from placer.placement.plan import apply_to_plan, place_plan

    if problem.model.moe is None:
        return plan, evaluation, None
    report = place_plan(problem, plan, backend="milp" if backend == "milp" else "cpsat", time_limit_s=min(10.0, time_limit_s / 4))
    if report is None or plan.parallelism.ep == 1:
        return plan, evaluation, report
    placed = apply_to_plan(plan, report)
    placed_eval = evaluate(problem, placed)
    if not placed_eval.feasible:
        report.notes.append("the placed plan breaks a constraint in the evaluator; the strategy plan is kept (re-solve not done)")
        return plan, evaluation, report
    return placed, placed_eval, report
