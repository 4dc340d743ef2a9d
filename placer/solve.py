"""Solve orchestration: warm start -> formulation -> backend -> plan -> placement -> independent
re-check -> Result, every step under one :class:`~placer.stopping.StopToken`.

A ``time_limit_s`` bounds the whole call, Ctrl-C (with :func:`placer.stopping.sigint_stops`
installed by the caller) may come at any moment, and in both cases the best plan known so far
comes back with its status and gap: the warm start's plan before any search has finished, the
backend's incumbent after. "No plan" only when none is known.
"""

from __future__ import annotations

import dataclasses
import math
import time

from placer.backends import choose_backend, run_backend
from placer.errors import InputError
from placer.evaluator import Evaluation, evaluate
from placer.formulation.data import Config, FormulationData, build_formulation, formulation_data, gpu_cap
from placer.formulation.partition import evaluate_config
from placer.formulation.terms import objective_terms, primary_term
from placer.placement.feedback import measured_factors, scale_config
from placer.problem import Problem
from placer.result import BackendSolution, Result, SearchInfo, SolveStatus
from placer.schema import Parallelism, Plan
from placer.stopping import StopToken
from placer.strategy import (
    RELATIVE_TOLERANCE,
    bound_without_search,
    check_agreement,
    plan_from_solution,
    plan_from_starts,
    terms_from_evaluation,
    warm_start,
)

#: strategy solves at most, when placed plans keep breaking an SLO (the re-solve loop)
DEFAULT_RESOLVE_ROUNDS = 4
#: Share of the time left that the formulation build may use: the rest is for the search and
#: placement (a build stopped early leaves the warm start's plan as the answer).
BUILD_SHARE = 0.6
#: Share of the time left (after the build) for the strategy search; placement and the re-check
#: get the rest, with placement's work budget at most ``PLACEMENT_MAX_S``.
SEARCH_SHARE = 0.75
PLACEMENT_MAX_S = 10.0
#: Share of the time left that placement's work budget may take: its pricing, baselines and the
#: memory probe for redundant slots run outside the budget (about 0.7 s on DeepSeek-V3 at ep 64).
PLACEMENT_SHARE = 0.5
#: Wall-clock allowance of placement over its work budget before the deadline cuts it short (a
#: loaded machine runs the same work slower; the deadline keeps the command's promise).
PLACEMENT_OVERRUN = 1.1


@dataclasses.dataclass
class _Round:
    """One strategy solve and what placement did to its plan (reported in ``search.resolve``)."""

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
    return f"{par.label} ({par.gpus} GPUs)"


def solve(
    problem: Problem,
    backend: str = "auto",
    time_limit_s: float | None = None,
    workers: int = 1,
    seed: int = 0,
    max_gpus: int | None = None,
    max_rounds: int = DEFAULT_RESOLVE_ROUNDS,
    stop: StopToken | None = None,
    work_limit: float | None = None,
) -> Result:
    """Find the best plan for ``problem`` under its objective, and prove it (or give the gap).

    Strategy, then placement, then the evaluator with the routing statistics; when the placed
    plan breaks an SLO, cut its configuration and solve again, at most ``max_rounds`` times
    (``docs/formulation.md``, re-solve loop). ``time_limit_s`` (wall clock, ``None`` for none)
    and ``stop`` (Ctrl-C, an outer deadline) bound the whole call; ``work_limit`` bounds each
    search in deterministic units (CP-SAT deterministic time, exhaustive configurations scored),
    so tests stop at the same point on any machine."""
    if problem.workload.kind == "burst" and problem.objective.concurrency == "auto":
        raise InputError.single(
            "objective.concurrency", "'auto' chooses a serving concurrency: it needs workload.kind 'concurrency'"
        )
    if problem.workload.kind != "burst":
        # serving kinds: configurations scored by the serving model, then a selection (docs/formulation.md)
        from placer.serving_solve import solve_serving

        return solve_serving(problem, backend, time_limit_s, workers, seed, max_gpus, stop, work_limit)
    token = StopToken.within(stop, time_limit_s)
    started = time.perf_counter()
    info: dict[str, object] = {}
    cap_reason = "--max-gpus"
    max_gpus_given = max_gpus
    user_cap, _ = gpu_cap(problem, max_gpus)
    cut_degrees: set[Parallelism] = set()
    warm = warm_start(problem, max_gpus)
    info["warm_start_wall_s"] = time.perf_counter() - started
    incumbent, incumbent_starts = warm if warm is not None else (None, ())
    info["warm_start_gpus"] = None if incumbent is None else incumbent.gpus
    primary = primary_term(problem.objective)
    if incumbent is not None and primary == "min_gpus":
        if max_gpus is None or incumbent.gpus < max_gpus:
            max_gpus = incumbent.gpus
            cap_reason = "warm-start incumbent: a feasible plan with this many GPUs exists"
    build_started = time.perf_counter()
    data = build_formulation(problem, max_gpus, cap_reason, should_stop=token.share(BUILD_SHARE).should_stop)
    info["build_s"] = time.perf_counter() - build_started
    info.update(
        configurations_enumerated=data.considered,
        configurations_in_model=len(data.configs),
        fixed_by_presolve=data.presolved_out,
        gpu_cap=data.gpu_cap,
        gpu_cap_reason=data.gpu_cap_reason,
        formulation_complete=data.complete,
    )
    hint = next((i for i, c in enumerate(data.configs) if c.par == incumbent), None)
    data = dataclasses.replace(data, hint_config=hint, hint_starts=incumbent_starts if hint is not None else ())
    chosen, why = choose_backend(backend, data)
    info["backend_choice"] = why
    partial = not data.complete
    if partial:
        info["stopped"] = token.why() or "time limit reached"
        if not data.configs or token.interrupted:
            return _incumbent_result(problem, data, incumbent, incumbent_starts, chosen, None, token, started, info)
        # Search the configurations costed so far for a better plan than the warm start's; no
        # bound it finds holds for the ones never costed, so the answer is feasible, not proven.
    rounds: list[_Round] = []
    heuristic_cuts = 0
    search_wall_s = placement_wall_s = 0.0
    for index in range(1, max(1, max_rounds) + 1):
        search_started = time.perf_counter()
        solution = run_backend(chosen, data, token.share(SEARCH_SHARE), workers, seed, work_limit)
        if solution.config_index is None and cut_degrees and data.gpu_cap < user_cap and not token.should_stop():
            # The warm-start cap was set on the balanced model; the cuts removed every plan under
            # it, so lift it to the caller's cap and keep the cuts.
            data = build_formulation(problem, max_gpus_given, "cap lifted after re-solve cuts", token.should_stop)
            kept = tuple(c for c in data.configs if c.par not in cut_degrees)
            data = dataclasses.replace(data, configs=kept)
            rounds[-1].cut = (rounds[-1].cut or "") + f"; GPU cap lifted to {data.gpu_cap}"
            solution = run_backend(chosen, data, token.share(SEARCH_SHARE), workers, seed, work_limit)
        search_wall_s += time.perf_counter() - search_started
        info["passes"] = solution.pass_statuses
        info["search_wall_s"] = search_wall_s
        if solution.config_index is None:
            if not rounds and (partial or solution.status == SolveStatus.NO_PLAN) and incumbent is not None:
                # Stopped before the search found a plan: the warm start's plan is the answer.
                info["stopped"] = token.why() or "search limit reached"
                return _incumbent_result(
                    problem, data, incumbent, incumbent_starts, chosen, solution, token, started, info
                )
            info["interrupted"] = solution.interrupted
            return _no_plan(problem, data, solution, chosen, started, info, primary, rounds, heuristic_cuts)
        plan = plan_from_solution(data, solution)
        # The backend's terms are checked against the balanced (strategy-model) figures ...
        model_eval = evaluate(problem, plan, balanced=True)
        recomputed = terms_from_evaluation(data, model_eval)
        check_agreement(solution, recomputed, model_eval)
        bound = solution.bound
        model_objective = recomputed[primary]
        step = _Round(index, _degrees(plan.parallelism), solution.status.value)
        rounds.append(step)
        # ... then the plan is placed and priced with the routing statistics (the truth).
        placement_started = time.perf_counter()
        placed, evaluation, placement = _place_experts(problem, plan, chosen, token, step)
        placement_wall_s += time.perf_counter() - placement_started
        info["placement_wall_s"] = placement_wall_s
        stop_now = solution.interrupted or token.should_stop() or partial
        if evaluation.feasible or stop_now or index == max(1, max_rounds):
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
    recomputed = terms_from_evaluation(data, evaluation)
    objective = recomputed[primary]
    if partial:
        # only part of the search space was costed: the bound is the one that needs no search
        bound = min(bound_without_search(problem, primary), objective)
    status, gap, reason = _honest_status(solution, evaluation, objective, model_objective, bound, heuristic_cuts)
    if partial and status == SolveStatus.OPTIMAL:
        status = SolveStatus.FEASIBLE
        gap = max(0.0, (objective - bound) / abs(objective)) if objective else None
        reason = "not proven: the build was stopped before every configuration was costed"
    if reason is None and len(rounds) > 1:
        reason = "optimal for the strategy model with the placed figures of the cut configurations"
    resolve = [r.line() for r in rounds] + ([reason] if reason else [])
    if token.should_stop() and not solution.interrupted and status != SolveStatus.OPTIMAL:
        info["stopped"] = token.why()
    if placement is not None:
        placement.notes.extend(resolve)
    info["resolve"] = tuple(resolve)
    interrupted = solution.interrupted or token.interrupted
    info["interrupted"] = interrupted
    return Result(
        status=status,
        explanation=(reason,) if status == SolveStatus.NO_PLAN and reason else (),
        backend=chosen,
        wall_s=time.perf_counter() - started,
        plan=placed,
        evaluation=evaluation,
        objective=objective,
        objective_term=primary,
        bound=bound,
        gap=gap,
        terms={name: recomputed[name] for name in objective_terms(data)},
        search=_search_info(info),
        interrupted=interrupted,
        placement=placement,
    )


def _search_info(info: dict[str, object]) -> SearchInfo:
    known = {f.name for f in dataclasses.fields(SearchInfo)}
    return SearchInfo(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in info.items() if k in known})


def _incumbent_result(
    problem: Problem,
    data: FormulationData,
    par: Parallelism | None,
    starts: tuple[int, ...],
    backend: str,
    solution: BackendSolution | None,
    token: StopToken,
    started: float,
    info: dict[str, object],
) -> Result:
    """The warm start's plan as the answer of a command stopped before any search finished: not
    placed (contiguous expert map), re-checked by the evaluator, with the best bound known."""
    primary = primary_term(problem.objective)
    interrupted = token.interrupted or (solution is not None and solution.interrupted)
    info["interrupted"] = interrupted
    if par is None:
        info["resolve"] = ("stopped before the warm start found a plan",)
        return Result(
            SolveStatus.NO_PLAN,
            backend,
            time.perf_counter() - started,
            explanation=("stopped before any plan was found: " + (token.why() or "no time left"),),
            search=_search_info(info),
            objective_term=primary,
            interrupted=interrupted,
        )
    plan = plan_from_starts(problem, par, starts, "warm-start")
    evaluation = evaluate(problem, plan)
    shell = data if data.configs else formulation_data(problem, (), data.gpu_cap, data.gpu_cap_reason)
    recomputed = terms_from_evaluation(shell, evaluation)
    objective = recomputed[primary]
    candidates = [bound_without_search(problem, primary)]
    if solution is not None and solution.bound is not None:
        candidates.append(solution.bound)
    bound = min(max(candidates), objective)
    gap = max(0.0, (objective - bound) / abs(objective)) if objective else None
    note = f"stopped ({info.get('stopped')}): the warm start's plan, not placed (contiguous expert map)"
    info["resolve"] = (note,)
    status = SolveStatus.FEASIBLE if evaluation.feasible else SolveStatus.NO_PLAN
    return Result(
        status=status,
        backend=backend,
        wall_s=time.perf_counter() - started,
        plan=plan,
        evaluation=evaluation,
        objective=objective,
        objective_term=primary,
        bound=bound,
        gap=gap,
        terms={name: recomputed[name] for name in objective_terms(shell)},
        explanation=() if evaluation.feasible else (note + "; it breaks a constraint with the routing statistics",),
        search=_search_info(info),
        interrupted=interrupted,
    )


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
    info: dict[str, object],
    primary: str,
    rounds: list[_Round],
    heuristic_cuts: int,
) -> Result:
    """The strategy model has no plan (first round: infeasible or out of time; later: every
    configuration left was cut after placement)."""
    explanation: list[str] = []
    status = solution.status
    if rounds:
        info["resolve"] = tuple(r.line() for r in rounds)
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
        time.perf_counter() - started,
        explanation=tuple(explanation),
        search=_search_info(info),
        objective_term=primary,
        interrupted=solution.interrupted,
    )


def _place_experts(problem: Problem, plan: Plan, backend: str, token: StopToken, step: _Round):  # type: ignore[no-untyped-def]
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
    budget_s = min(PLACEMENT_MAX_S, token.remaining_s() * PLACEMENT_SHARE)
    if token.should_stop() or budget_s <= 0.05:
        step.outcome = f"placement skipped ({token.why() or 'no time left'}): contiguous expert map"
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
        time_limit_s=budget_s,
        stop=token.share(1.0, budget_s * PLACEMENT_OVERRUN).should_stop,
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
