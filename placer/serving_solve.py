"""``placer solve`` for serving workloads (kinds ``concurrency``, ``offline``, ``rate``).

The decisions are the degrees and replicas, the layer partition and the concurrency per replica;
the figures come from the analytic serving model (:mod:`placer.serving`), which runs the
evaluator many times per configuration and so is an *oracle*, not a set of coefficients a solver
can combine. The solve is therefore in two steps (``docs/formulation.md``, "Serving workloads"):

1. *Score.* Every configuration the strategy formulation admits (degrees under the GPU cap,
   rules (R1)-(R7), memory presolve (F9) on the burst figures :func:`placer.evaluator.evaluate`
   still checks) gets its partition (for ``pp > 1`` the memory-feasible one minimising the
   largest decode stage time, :func:`placer.formulation.partition.best_partition`) and its
   concurrency (the workload's, the offline point, or with ``objective.concurrency = "auto"`` the
   largest meeting the SLOs, by bisection), and is judged by
   :func:`placer.serving.evaluate_serving`. Configurations are scored in increasing GPU count,
   so the fewest-GPUs objective stops after the first GPU count with a feasible plan.
2. *Select.* The feasible ones are a selection problem (:mod:`placer.formulation.selection`)
   solved by the chosen backend (exhaustive, CP-SAT, MILP: the same integer coefficients).

The chosen plan is evaluated again from scratch with :func:`placer.serving.evaluate_serving`
and every objective term recomputed from that evaluation must agree with the selection's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from placer.backends import run_selection
from placer.catalogue.engines import fixed_stage_starts
from placer.disagg_solve import PairScored, PairScoring, largest_int, score_pairs
from placer.errors import InputError, PlanMismatchError
from placer.evaluator import Evaluation, evaluate
from placer.formulation.data import Config, FormulationData, build_formulation
from placer.formulation.partition import best_partition
from placer.formulation.selection import SelectionData
from placer.formulation.terms import StageBounds, objective_terms, primary_term, terms_for
from placer.problem import Problem
from placer.result import Result, SearchInfo, SolveStatus
from placer.schema import DisaggregatedPlan, Plan
from placer.serving import ServingModel, StepTimer, evaluate_serving
from placer.serving_disagg import OneReplicaScreen, evaluate_disaggregated
from placer.stopping import StopToken
from placer.strategy import RELATIVE_TOLERANCE, plan_from_starts

#: Share of the time left that scoring may use; the selection and the re-check get the rest.
SCORING_SHARE = 0.9


def burst_surrogate(problem: Problem, batch_size: int | None = None) -> Problem:
    """The burst problem whose figures :func:`placer.evaluator.evaluate` checks for a serving
    workload (``batch_size`` resident sequences at full context), without the latency and
    throughput SLOs (the serving model judges those); ``slo.max_gpus`` is kept."""
    w = problem.workload
    workload = w.model_copy(
        update={
            "kind": "burst",
            "batch_size": w.batch_size if batch_size is None else batch_size,
            "concurrency": None,
            "rate_rps": None,
            "max_batch_size": None,
            "output_tokens_mean": None,
        }
    )
    slo = problem.slo.model_copy(
        update={
            "ttft_s": None,
            "tpot_ms": None,
            "min_prefill_tokens_per_ms_per_gpu": None,
            "min_decode_tokens_per_ms_per_gpu": None,
        }
    )
    return problem.replace(workload=workload, slo=slo)


def with_concurrency(problem: Problem, concurrency: int) -> Problem:
    """``problem`` with ``concurrency`` requests in flight on the deployment (and as many resident
    sequences for the burst figures, the schema's default for the ``concurrency`` kind)."""
    w = problem.workload.model_copy(update={"concurrency": concurrency, "batch_size": concurrency})
    return problem.replace(workload=w)


def auto_concurrency(problem: Problem) -> bool:
    """``objective.concurrency == "auto"``: the solver picks the concurrency (kind ``concurrency``)."""
    return problem.objective.concurrency == "auto"


def serving_terms(terms: list[str], evaluation: Evaluation) -> dict[str, float]:
    """Objective terms (all minimised) from an evaluation's serving figures:
    ``max_throughput_per_gpu`` as GPU-seconds per output token (``1 / tokens/s/GPU``),
    ``min_gpus`` in GPUs, ``min_cross_node_traffic`` in bytes per token, ``min_ttft`` in seconds."""
    per_gpu = evaluation.decode_tokens_per_ms_per_gpu * 1e3
    values = {
        "min_gpus": float(evaluation.gpus),
        "max_throughput_per_gpu": 1.0 / per_gpu if per_gpu > 0 else math.inf,
        "min_cross_node_traffic": evaluation.cross_node_bytes_per_token,
        "min_ttft": evaluation.ttft_s,
    }
    return {t: values[t] for t in terms}


@dataclass(frozen=True)
class Scored:
    """One configuration judged by the serving model."""

    config_index: int
    plan: Plan
    concurrency: int | None  # requests in flight on the deployment (kind concurrency), else None
    evaluation: Evaluation
    terms: dict[str, float]

    @property
    def feasible(self) -> bool:
        return self.evaluation.feasible and all(math.isfinite(v) for v in self.terms.values())

    def broken(self) -> list[str]:
        return [c.name for c in self.evaluation.slo + self.evaluation.rules if not c.ok]


def partition_for(data: FormulationData, config: Config) -> tuple[int, ...] | None:
    """Stage starts: the engine's own split where it fixes one, else the memory-feasible partition
    minimising the largest decode stage time at the surrogate's batch (``None``: none fits)."""
    pp = config.par.pp
    if pp == 1:
        return (0,)
    fixed = fixed_stage_starts(data.problem.engine, data.num_layers, pp)
    if fixed is not None:
        return fixed
    found = best_partition(data, config, StageBounds(math.inf, math.inf), "decode")
    return None if found is None else found[2]


def _meets_latency(problem: Problem, point: object) -> bool:
    """The serving point's SLO checks (stable, TTFT and TPOT at their percentiles, decode floor)."""
    slo = problem.slo
    if not point.stable:  # type: ignore[attr-defined]
        return False
    if slo.ttft_s is not None and point.ttft_at(slo.ttft_percentile) > slo.ttft_s:  # type: ignore[attr-defined]
        return False
    if slo.tpot_ms is not None and point.tpot_at(slo.tpot_percentile) * 1e3 > slo.tpot_ms:  # type: ignore[attr-defined]
        return False
    floor = slo.min_decode_tokens_per_ms_per_gpu
    return floor is None or point.output_tokens_per_s_per_gpu / 1e3 >= floor  # type: ignore[attr-defined]


def choose_concurrency(problem: Problem, plan: Plan) -> int:
    """(auto) The largest concurrency per replica, at most ``workload.concurrency / replicas`` and
    at most the offline point's requests in flight (beyond it the batch no longer grows: more
    requests only wait), whose serving point meets the SLOs and whose resident sequences fit the
    burst memory check; 0 when not one request does. Both tests are monotone in the concurrency
    (latencies grow with the batch, memory with the sequences held), so bisection finds it."""
    replicas = plan.parallelism.replicas
    assert problem.workload.concurrency is not None
    model = ServingModel(StepTimer(problem, plan))
    offline = model.offline()
    if not offline.stable:
        return 0
    hi = min(problem.workload.concurrency // replicas, max(1, math.ceil(offline.concurrency_per_replica)))

    def fits(n: int) -> bool:
        return evaluate(burst_surrogate(problem, n * replicas), plan).feasible

    def meets(n: int) -> bool:
        return _meets_latency(problem, model.closed_loop(float(n)))

    return largest_int(meets, largest_int(fits, hi))


def score(
    problem: Problem, data: FormulationData, index: int, terms: list[str], screen: OneReplicaScreen | None = None
) -> Scored | str | None:
    """The configuration's plan and figures under the serving workload (``None``: no partition fits;
    :data:`REJECTED_BY_BOUND`: proven infeasible without the full serving model)."""
    config = data.configs[index]
    starts = partition_for(data, config)
    if starts is None:
        return None
    plan = plan_from_starts(problem, config.par, starts, "serving")
    if decode_bound_rejects(problem, plan, screen):
        return REJECTED_BY_BOUND
    concurrency = problem.workload.concurrency
    judged = problem
    if auto_concurrency(problem):
        per_replica = choose_concurrency(problem, plan)
        if per_replica == 0:
            return None
        concurrency = per_replica * config.par.replicas
        judged = with_concurrency(problem, concurrency)
    evaluation = evaluate_serving(judged, plan)
    return Scored(index, plan, concurrency, evaluation, serving_terms(terms, evaluation))


#: :func:`score`'s answer for a configuration the decode-only bound proves infeasible.
REJECTED_BY_BOUND = "rejected by the decode-only bound"


def decode_bound_rejects(problem: Problem, plan: Plan, screen: OneReplicaScreen | None = None) -> bool:
    """Kind ``rate``: the plan cannot carry the arrivals within the TPOT SLO even if its steps held
    no prefill. An aggregated step is the decode step plus the prefill chunk and its KV holds the
    prefilling requests too, so its decode rate at any batch is at most the decode-only rate, its
    batch ceiling at most the decode-only ceiling and its TPOT at the arrival rate at least the
    decode-only TPOT there (decode step time non-decreasing in the batch); and the decode-only
    figures of R replicas are bounded by one replica's (:class:`OneReplicaScreen`), shared by every
    replica count. A rejection is therefore a proof, and skipping the full serving model for it
    keeps the solve exact."""
    w = problem.workload
    if w.kind != "rate" or w.serving_rate_rps is None:
        return False
    screen = screen or OneReplicaScreen(problem)
    return not screen.decode_may_serve(plan, w.serving_rate_rps, problem.slo.tpot_ms)


def _degrees(config: Config) -> str:
    return f"{config.par.label} ({config.par.gpus} GPUs)"


@dataclass(frozen=True)
class Scoring:
    """Every admitted configuration scored (or as many as the deadline allowed): the selection
    the backends solve, and what the report needs when none is feasible."""

    data: FormulationData
    terms: list[str]
    feasible: list[Scored]  # in configuration-index order: candidate i is feasible[i]
    selection: SelectionData
    scored: int
    complete: bool
    closest: Scored | None  # an infeasible configuration breaking the fewest checks
    build_s: float
    score_s: float
    bounded_out: int = 0  # configurations the decode-only bound proved infeasible (kind rate)


def score_configurations(
    problem: Problem, token: StopToken, max_gpus: int | None = None, work_limit: float | None = None
) -> Scoring:
    """Score the admitted configurations in increasing GPU count (then index) until done, the
    deadline of ``token`` or ``work_limit`` configurations; with the fewest-GPUs objective stop
    after the first GPU count that has a feasible plan (the rest need more GPUs)."""
    auto = auto_concurrency(problem)
    surrogate = burst_surrogate(problem, 1 if auto else None)
    started = time.perf_counter()
    data = build_formulation(surrogate, max_gpus, should_stop=token.share(SCORING_SHARE).should_stop)
    build_s = time.perf_counter() - started
    terms = objective_terms(data)
    primary = primary_term(problem.objective)
    order = sorted(range(len(data.configs)), key=lambda i: (data.configs[i].gpus, i))
    scoring = token.share(SCORING_SHARE)
    feasible: list[Scored] = []
    closest: Scored | None = None
    bounded_out = 0
    screen = OneReplicaScreen(problem)
    complete = data.complete
    next_gpus: int | None = None
    scored_count = 0
    for index in order:
        gpus = data.configs[index].gpus
        if primary == "min_gpus" and feasible and gpus > feasible[0].evaluation.gpus:
            break  # scored in GPU order: every configuration left needs more GPUs
        if scoring.should_stop() or (work_limit is not None and scored_count >= work_limit):
            complete = False
            next_gpus = gpus
            break
        scored = score(problem, data, index, terms, screen)
        scored_count += 1
        if scored == REJECTED_BY_BOUND:
            bounded_out += 1
            continue
        if scored is None:
            continue
        assert isinstance(scored, Scored)
        if scored.feasible:
            feasible.append(scored)
        elif closest is None or len(scored.broken()) < len(closest.broken()):
            closest = scored
    feasible.sort(key=lambda s: s.config_index)  # candidate order = configuration index (ties go low)
    bound = float(next_gpus) if not complete and primary == "min_gpus" and next_gpus is not None else None
    values = tuple(tuple(s.terms[t] for t in terms) for s in feasible)
    selection = SelectionData(tuple(terms), values, complete, bound)
    score_s = time.perf_counter() - started - build_s
    return Scoring(data, terms, feasible, selection, scored_count, complete, closest, build_s, score_s, bounded_out)


def solve_serving(
    problem: Problem,
    backend: str = "auto",
    time_limit_s: float | None = None,
    workers: int = 1,
    seed: int = 0,
    max_gpus: int | None = None,
    stop: StopToken | None = None,
    work_limit: float | None = None,
) -> Result:
    """The best serving plan over the admitted configurations, proven when every one was scored.

    ``work_limit`` caps the configurations scored (deterministic, for tests); the deadline of
    ``stop`` / ``time_limit_s`` stops scoring too, and the best plan so far comes back FEASIBLE,
    with a bound only where one is known (fewest GPUs: the GPU count of the first configuration
    not scored, every smaller one having been scored)."""
    auto = auto_concurrency(problem)
    if auto and problem.workload.kind != "concurrency":
        raise InputError.single(
            "objective.concurrency",
            f"'auto' chooses the concurrency of kind 'concurrency', not {problem.workload.kind!r}",
        )
    mode = problem.objective.disaggregation
    token = StopToken.within(stop, time_limit_s)
    started = time.perf_counter()
    pairs: PairScoring | None = None
    if mode == "off":
        scoring = score_configurations(problem, token, max_gpus, work_limit)
    elif mode == "only" or fewest_gpus_first(problem):
        # fewest GPUs first: the smallest disaggregated total caps the aggregated scan (a larger
        # aggregated deployment cannot win), which spares scoring every bigger configuration
        pairs = _score_disaggregated(problem, terms_for(problem.objective), token, max_gpus, work_limit, None)
        cap = max_gpus
        if pairs.feasible and pairs.complete:
            smallest = min(c.evaluation.gpus for c in pairs.feasible)
            cap = smallest if cap is None else min(cap, smallest)
        scoring = score_configurations(problem, token, cap, 0 if mode == "only" else work_limit)
    else:
        scoring = score_configurations(problem, token, max_gpus, work_limit)
        primary = primary_term(problem.objective)
        values = [c.terms[primary] for c in scoring.feasible if primary in c.terms]
        incumbent = min(values) if values and scoring.complete else None
        pairs = _score_disaggregated(problem, scoring.terms, token, max_gpus, work_limit, incumbent)
    candidates: list[Scored | PairScored] = [*scoring.feasible, *(pairs.feasible if pairs else [])]
    complete = (scoring.complete or mode == "only") and (pairs is None or pairs.complete)
    selection = scoring.selection
    if pairs is not None:
        values = tuple(tuple(c.terms[t] for t in scoring.terms) for c in candidates)
        bound = selection.bound if pairs.complete else None
        selection = SelectionData(tuple(scoring.terms), values, complete, bound)
    search_started = time.perf_counter()
    solution = run_selection(backend, selection, token, workers, seed)
    data = scoring.data
    scored = (0 if mode == "only" else scoring.scored) + (pairs.scored if pairs else 0)
    described = f"{len(candidates)} feasible of {scored} scored"
    if pairs is not None:
        described += (
            f" ({len(pairs.feasible)} feasible of {pairs.scored} disaggregated pairs of {pairs.pools_prefill} "
            f"prefill and {pairs.pools_decode} decode pools, {pairs.pruned} more pruned by their throughput bound)"
        )
    info = SearchInfo(
        configurations_enumerated=data.considered,
        configurations_in_model=len(data.configs),
        fixed_by_presolve=data.presolved_out,
        gpu_cap=data.gpu_cap,
        gpu_cap_reason=data.gpu_cap_reason,
        backend_choice=f"{solution.backend} selection over {described} candidates (serving model oracle)",
        passes=solution.pass_statuses,
        formulation_complete=complete,
        stopped=None if complete else (token.why() or "scoring limit reached"),
        interrupted=token.interrupted,
        build_s=scoring.build_s,
        search_wall_s=scoring.score_s + time.perf_counter() - search_started,
    )
    primary = primary_term(problem.objective)
    if solution.config_index is None:
        closest = scoring.closest if mode != "only" else None
        if pairs is not None and closest is None and pairs.closest is not None:
            closest = pairs.closest
        scoring = dataclasses.replace(scoring, complete=complete, closest=closest, scored=scored)
        return _no_plan(problem, scoring, solution.backend, started, info, primary)
    chosen = candidates[solution.config_index]
    return _result(problem, chosen, solution, selection, scoring.terms, primary, started, info)


def fewest_gpus_first(problem: Problem) -> bool:
    """The objective ranks deployments by their GPU count first: fewest GPUs, or throughput per GPU
    under a fixed arrival rate (the demand over the GPUs)."""
    primary = primary_term(problem.objective)
    return primary == "min_gpus" or (primary == "max_throughput_per_gpu" and problem.workload.kind == "rate")


def _score_disaggregated(
    problem: Problem,
    terms: list[str],
    token: StopToken,
    max_gpus: int | None,
    work_limit: float | None,
    incumbent: float | None,
) -> PairScoring:
    """Every pair of pools that can matter (each pool a configuration admitted on its own at one
    request per attention-DP rank) priced by the disaggregated serving model."""
    share = token.share(SCORING_SHARE)
    data = build_formulation(burst_surrogate(problem, 1), max_gpus, should_stop=share.should_stop)

    def plan_for(index: int) -> Plan | None:
        config = data.configs[index]
        starts = partition_for(data, config)
        return None if starts is None else plan_from_starts(problem, config.par, starts, "pool")

    gpus = {index: config.gpus for index, config in enumerate(data.configs)}
    return score_pairs(
        problem, gpus, plan_for, terms, serving_terms, share, data.gpu_cap, work_limit, incumbent, _pair_meets
    )


def _pair_meets(problem: Problem, point: object) -> bool:
    """A disaggregated point meets the SLOs and its decode pool holds the KV of its requests."""
    return _meets_latency(problem, point) and point.kv_ok  # type: ignore[attr-defined]


def _result(
    problem: Problem,
    chosen: Scored | PairScored,
    solution: object,
    selection: SelectionData,
    terms: list[str],
    primary: str,
    started: float,
    info: SearchInfo,
) -> Result:
    """Re-check the chosen plan from scratch and assemble the result with an honest status."""
    judged = problem if chosen.concurrency is None else with_concurrency(problem, chosen.concurrency)
    if isinstance(chosen.plan, DisaggregatedPlan):
        evaluation = evaluate_disaggregated(judged, chosen.plan)
    else:
        evaluation = evaluate_serving(judged, chosen.plan)
    recomputed = serving_terms(terms, evaluation)
    if not evaluation.feasible:
        raise PlanMismatchError(f"serving solve chose a plan evaluate_serving rejects: {chosen.broken()}")
    for name, value in solution.terms.items():  # type: ignore[attr-defined]
        if not math.isclose(value, recomputed[name], rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9):
            raise PlanMismatchError(f"serving solve: term {name} is {value} in the selection, {recomputed[name]}")
    objective = recomputed[primary]
    status = solution.status  # type: ignore[attr-defined]
    bound = solution.bound  # type: ignore[attr-defined]
    if not selection.complete:
        status = SolveStatus.FEASIBLE
        bound = None if selection.bound is None else min(selection.bound, objective)
    gap = max(0.0, (objective - bound) / abs(objective)) if bound is not None and objective else None
    if status == SolveStatus.OPTIMAL:
        gap = 0.0
    point = evaluation.serving
    if isinstance(chosen.plan, DisaggregatedPlan):
        plan = chosen.plan
        resolve: tuple[str, ...] = (
            f"disaggregated plan: prefill pool {plan.prefill.label}, decode pool {plan.decode.label}; "
            f"{point.rate_rps:.3g} requests/s, decode batch {point.decode_batch:.1f} per replica, "
            f"KV {point.transfer.bytes_per_request / 1e6:.1f} MB/request over {point.transfer.path.kind} "
            f"({point.transfer.mean_s * 1e3:.2f} ms), {point.output_tokens_per_s_per_gpu:.1f} output tokens/s/GPU",
            "not placed: contiguous expert maps (the serving solve prices uniform routing)",
        )
    else:
        resolve = (
            f"serving plan {_degrees_par(chosen.plan)}: concurrency {point.concurrency_per_replica:g} per replica "
            f"({point.concurrency_per_replica * point.replicas:g} on the deployment), decode batch "
            f"{point.decode_batch:.1f}, {point.output_tokens_per_s_per_gpu:.1f} output tokens/s/GPU",
            "not placed: contiguous expert map (the serving solve prices uniform routing)",
        )
    info = dataclasses.replace(info, resolve=resolve)
    return Result(
        status=status,
        backend=solution.backend,  # type: ignore[attr-defined]
        wall_s=time.perf_counter() - started,
        plan=chosen.plan,
        evaluation=evaluation,
        objective=objective,
        objective_term=primary,
        bound=bound,
        gap=gap,
        terms=recomputed,
        search=info,
        interrupted=info.interrupted,
    )


def _degrees_par(plan: Plan) -> str:
    return f"{plan.parallelism.label} ({plan.gpus} GPUs)"


def _no_plan(
    problem: Problem, scoring: Scoring, backend: str, started: float, info: SearchInfo, primary: str
) -> Result:
    """No configuration scored meets the SLOs: infeasible when every one was scored."""
    data, closest = scoring.data, scoring.closest
    if scoring.complete:
        lines = [f"no admitted configuration meets the SLOs under the serving model ({scoring.scored} scored)"]
        if isinstance(closest, PairScored):
            plan = closest.plan
            lines.append(
                f"closest: disaggregated, prefill {plan.prefill.label} + decode {plan.decode.label} "
                f"breaks {', '.join(closest.broken())}"
            )
        elif closest is not None:
            lines.append(
                f"closest: {_degrees(data.configs[closest.config_index])} breaks {', '.join(closest.broken())}"
            )
        if scoring.bounded_out:
            lines.append(
                f"{scoring.bounded_out} configurations cannot carry the arrival rate within the TPOT SLO even "
                "with no prefill in their steps (decode-only bound: capacity or TPOT at the rate)"
            )
        if not data.configs:
            lines.append("no configuration passes the engine rules and the memory presolve")
        status = SolveStatus.INFEASIBLE
    else:
        lines = [f"stopped before any plan was found: {info.stopped}"]
        status = SolveStatus.NO_PLAN
    return Result(
        status,
        backend,
        time.perf_counter() - started,
        explanation=tuple(lines),
        search=info,
        objective_term=primary,
        interrupted=info.interrupted,
    )
