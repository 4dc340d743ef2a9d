"""Solve orchestration: formulation data -> backend -> plan -> independent re-check -> Result."""

from __future__ import annotations

import dataclasses
import math
import time

from placer.backends import run_backend
from placer.errors import PlanMismatchError
from placer.evaluator import Evaluation, evaluate
from placer.formulation.data import Config, FormulationData, build_formulation, gpu_cap
from placer.formulation.terms import objective_terms, primary_term
from placer.placement.feedback import measured_factors, scale_config
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
            raise PlanMismatchError(
                f"{solution.backend}: objective term {name} is {value} in the solver but {other} in the evaluator"
            )


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
        tp = max(
            d
            for d in range(1, min(width, problem.fabric.gpus_per_node) + 1)
            if width % d == 0 and model.attention.num_heads % d == 0
        )
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


#: strategy solves at most, when placed plans keep breaking an SLO (the re-solve loop)
DEFAULT_RESOLVE_ROUNDS = 4


@dataclasses.dataclass
class _Round:
    """One strategy solve and what placement did to its plan (reported in ``search["resolve"]``)."""

    index: int
    degrees: str
    status: str
    outcome: str = ""
    broken: list[str] = dataclasses.field(default_factory=list)
    factors: tuple[float, float] | None = None
    cut: str | None = None

    def line(self) -> str:
        text = f"round {self.index}: {self.status} strategy plan {self.degrees}; {self.outcome}"
        if self.factors is not None:
            text += f"; measured MoE-time factors prefill x{self.factors[0]:.3f}, decode x{self.factors[1]:.3f}"
        if self.cut:
            text += f"; {self.cut}"
        return text


def _degrees(par: Parallelism) -> str:
    return f"pp{par.pp} tp{par.tp} dp{par.dp_attn} ep{par.ep} tpm{par.tp_moe} x{par.replicas} ({par.gpus} GPUs)"


def solve(
    problem: Problem,
    backend: str = "cpsat",
    time_limit_s: float = 60.0,
    workers: int = 1,
    seed: int = 0,
    max_gpus: int | None = None,
    max_rounds: int = DEFAULT_RESOLVE_ROUNDS,
) -> Result:
    """Find the best plan for ``problem`` under its objective, and prove it (or give the gap).

    Strategy, then placement, then the evaluator with the routing statistics; when the placed
    plan breaks an SLO, cut its configuration and solve again, at most ``max_rounds`` times
    (``docs/formulation.md``, re-solve loop)."""
    started = time.perf_counter()
    cap_reason = "--max-gpus"
    max_gpus_given = max_gpus
    user_cap, _ = gpu_cap(problem, max_gpus)
    cut_degrees: set[Parallelism] = set()
    warm = warm_start(problem, max_gpus)
    incumbent, incumbent_starts = warm if warm is not None else (None, ())
    if incumbent is not None and primary_term(problem.objective) == "min_gpus":
        if max_gpus is None or incumbent.gpus < max_gpus:
            max_gpus = incumbent.gpus
            cap_reason = "warm-start incumbent: a feasible plan with this many GPUs exists"
    data = build_formulation(problem, max_gpus, cap_reason)
    hint = next((i for i, c in enumerate(data.configs) if c.par == incumbent), None)
    data = dataclasses.replace(data, hint_config=hint, hint_starts=incumbent_starts if hint is not None else ())
    search: dict[str, object] = {
        "configurations_enumerated": data.considered,
        "configurations_in_model": len(data.configs),
        "fixed_by_presolve": data.presolved_out,
        "gpu_cap": data.gpu_cap,
        "gpu_cap_reason": data.gpu_cap_reason,
        "build_s": time.perf_counter() - started,
        "warm_start_gpus": None if incumbent is None else incumbent.gpus,
    }
    primary = objective_terms(data)[0]
    rounds: list[_Round] = []
    heuristic_cuts = 0
    for index in range(1, max(1, max_rounds) + 1):
        remaining = max(0.1, time_limit_s - (time.perf_counter() - started))
        solution = run_backend(backend, data, remaining, workers, seed)
        search["interrupted"] = solution.interrupted
        if solution.config_index is None and cut_degrees and data.gpu_cap < user_cap:
            # The warm-start cap was set on the balanced model; the cuts removed every plan under
            # it, so lift it to the caller's cap and keep the cuts.
            data = build_formulation(problem, max_gpus_given, "cap lifted after re-solve cuts")
            kept = tuple(c for c in data.configs if c.par not in cut_degrees)
            data = dataclasses.replace(data, configs=kept)
            rounds[-1].cut = (rounds[-1].cut or "") + f"; GPU cap lifted to {data.gpu_cap}"
            solution = run_backend(backend, data, remaining, workers, seed)
        if solution.config_index is None:
            return _no_plan(problem, data, solution, backend, started, search, primary, rounds, heuristic_cuts)
        plan = plan_from_solution(data, solution)
        # The backend's terms are checked against the balanced (strategy-model) figures ...
        model_eval = evaluate(problem, plan, balanced=True)
        recomputed = terms_from_evaluation(data, model_eval)
        _check_agreement(solution, recomputed, model_eval)
        bound = solution.bound
        model_objective = recomputed[primary]
        step = _Round(index, _degrees(plan.parallelism), solution.status.value)
        rounds.append(step)
        # ... then the plan is placed and priced with the routing statistics (the truth).
        placed, evaluation, placement = _place_experts(problem, plan, backend, time_limit_s, step)
        if evaluation.feasible or solution.interrupted or index == max(1, max_rounds):
            break
        config = data.configs[solution.config_index]
        factors = measured_factors(problem, placed)
        step.factors = (factors.prefill, factors.decode)
        data, proven = _cut(data, solution.config_index, scale_config(config, data.class_names, factors))
        cut_degrees.add(config.par)
        heuristic_cuts += not proven
        step.cut = (
            "cut: no partition of these degrees meets the SLOs at the measured figures (valid cut)"
            if proven
            else "cut: configuration excluded (heuristic: another partition might meet the SLOs)"
        )
    wall = time.perf_counter() - started
    recomputed = terms_from_evaluation(data, evaluation)
    objective = recomputed[primary]
    status, gap, reason = _honest_status(solution, evaluation, objective, model_objective, bound, heuristic_cuts)
    if reason is None and len(rounds) > 1:
        reason = "optimal for the strategy model with the placed figures of the cut configurations"
    search["resolve"] = [r.line() for r in rounds] + ([reason] if reason else [])
    if placement is not None:
        from placer.report.placement import placement_summary

        placement.notes.extend(search["resolve"])  # type: ignore[arg-type]
        search["placement"] = placement_summary(placement)
    result = Result(
        status=status,
        explanation=[reason] if status == SolveStatus.NO_PLAN and reason else [],
        backend=backend,
        wall_s=wall,
        plan=placed,
        evaluation=evaluation,
        objective=objective,
        objective_term=primary,
        bound=bound,
        gap=gap,
        terms={name: recomputed[name] for name in objective_terms(data)},
        search=search,
        interrupted=solution.interrupted,
        placement=placement,
    )
    return result


def _honest_status(
    solution: BackendSolution,
    evaluation: Evaluation,
    objective: float,
    model_objective: float,
    bound: float | None,
    heuristic_cuts: int,
) -> tuple[SolveStatus, float | None, str | None]:
    """Optimal only when the last strategy solve was proven, its placed plan meets every
    constraint at the model's objective value, and every cut was valid for the measured factors."""
    gap = None
    if bound is not None and objective:
        gap = max(0.0, (objective - bound) / abs(objective))
    same = math.isclose(objective, model_objective, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9)
    if not evaluation.feasible:
        broken = [c.name for c in evaluation.slo + evaluation.rules if not c.ok]
        # Not a solution: no status that reads as one (the plan is kept for inspection only).
        return (
            SolveStatus.NO_PLAN,
            None,
            f"re-solve rounds exhausted: no placed plan met the constraints; the last one breaks {broken}",
        )
    if solution.status != SolveStatus.OPTIMAL:
        return solution.status, gap, None
    if heuristic_cuts:
        return (
            SolveStatus.FEASIBLE,
            gap,
            (
                f"not proven: {heuristic_cuts} configuration(s) excluded on a heuristic "
                "placement's figures, not on a bound"
            ),
        )
    if not same:
        return (
            SolveStatus.FEASIBLE,
            gap,
            (
                f"not proven: placement moved the objective from {model_objective:.6g} "
                f"(balanced model) to {objective:.6g}; the balanced optimum is the bound"
            ),
        )
    return SolveStatus.OPTIMAL, 0.0, None


def _cut(data: FormulationData, index: int, scaled: Config) -> tuple[FormulationData, bool]:
    """Drop configuration ``index``; the cut is proven when its scaled copy fits no partition."""
    from placer.backends.exhaustive import evaluate_config

    # With one stage the partition is unique: the placed plan's figures are the configuration's.
    proven = scaled.par.pp == 1 or evaluate_config(data, scaled) is None
    configs = data.configs[:index] + data.configs[index + 1 :]
    hint = data.hint_config
    if hint is not None:
        hint = None if hint == index else hint - (hint > index)
    return dataclasses.replace(
        data, configs=configs, hint_config=hint, hint_starts=data.hint_starts if hint is not None else ()
    ), proven


def _no_plan(
    problem: Problem,
    data: FormulationData,
    solution: BackendSolution,
    backend: str,
    started: float,
    search: dict[str, object],
    primary: str,
    rounds: list[_Round],
    heuristic_cuts: int,
) -> Result:
    """The strategy model has no plan (first round: infeasible or out of time; later: every
    configuration left was cut after placement)."""
    wall = time.perf_counter() - started
    explanation: list[str] = []
    status = solution.status
    if rounds:
        search["resolve"] = [r.line() for r in rounds]
        explanation = [r.line() for r in rounds] + ["no configuration left whose placed plan meets the SLOs"]
        if heuristic_cuts and status == SolveStatus.INFEASIBLE:
            status = SolveStatus.NO_PLAN
            explanation.append("not proven infeasible: some cuts rest on a heuristic placement")
    elif solution.status == SolveStatus.INFEASIBLE:
        from placer.explain import explain_infeasible

        explanation = explain_infeasible(data)
    return Result(
        status,
        backend,
        wall,
        explanation=explanation,
        search=search,
        objective_term=primary,
        interrupted=solution.interrupted,
    )


def _place_experts(problem: Problem, plan: Plan, backend: str, time_limit_s: float, step: _Round):  # type: ignore[no-untyped-def]
    """Placement step (docs/placement.md): place every MoE layer for the chosen degrees and price
    the placed plan with the routing statistics. Returns (plan, its evaluation, placement report).
    The placed plan is kept when it meets every constraint; else the contiguous plan when that
    one does; else the placed plan (broken: the caller re-solves)."""
    from placer.backends.placement import node_solver
    from placer.placement.plan import apply_to_plan, place_plan

    flat_eval = evaluate(problem, plan)
    if problem.model.moe is None:
        step.outcome = "no MoE layers: nothing to place"
        return plan, flat_eval, None
    # With routing statistics placer decides the redundant slots per GPU within memory (the
    # evaluator prices each count) unless cost_parameters.redundant_experts_per_gpu fixes it.
    # Without statistics routing is uniform: a redundant copy cannot improve balance and only
    # costs memory and weight reads, so none is added and the placed plan keeps the figures the
    # strategy model proved.
    report = place_plan(
        problem,
        plan,
        node_solver=node_solver("milp" if backend == "milp" else "cpsat"),
        time_limit_s=min(10.0, time_limit_s / 4),
        redundant_slots_per_gpu=problem.params.redundant_experts_per_gpu if problem.routing is not None else 0,
    )
    if report is None or plan.parallelism.ep == 1:
        step.outcome = "ep = 1: placement trivial" + ("" if flat_eval.feasible else f"; breaks {_broken(flat_eval)}")
        return plan, flat_eval, report
    placed = apply_to_plan(plan, report)
    placed_eval = report.placed_evaluation if report.placed_evaluation is not None else evaluate(problem, placed)
    if placed_eval.feasible:
        step.outcome = f"placed plan meets every constraint (max/mean load {placed_eval.load_imbalance_max:.3f})"
        return placed, placed_eval, report
    if flat_eval.feasible:
        step.outcome = f"placed plan breaks {_broken(placed_eval)}; the contiguous map meets them and is kept"
        report.notes.append("the placed plan breaks a constraint in the evaluator; the contiguous expert map is kept")
        return plan, flat_eval, report
    step.outcome = (
        f"placed plan breaks {_broken(placed_eval)} (max/mean load {placed_eval.load_imbalance_max:.3f}; "
        f"contiguous map too)"
    )
    return placed, placed_eval, report


def _broken(evaluation: Evaluation) -> list[str]:
    return [c.name for c in evaluation.slo + evaluation.rules if not c.ok]
