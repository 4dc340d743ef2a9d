"""The strategy pass: degrees and layer partition, before experts are placed.

What sits here is the solver-neutral part of a strategy solve: the warm start (a known plan before
any search, so a stopped command always has one), a bound that needs no search, turning a backend's
answer into a plan, and the check that the backend's objective terms agree with the evaluator's.
:mod:`placer.solve` runs the passes, placement and the re-solve loop around it.
"""

from __future__ import annotations

import math

from placer.costmodel.memory import fewest_gpus_for_weights
from placer.errors import PlanMismatchError
from placer.evaluator import Evaluation
from placer.formulation.data import FormulationData, build_config, formulation_data, gpu_cap, layer_classes
from placer.formulation.partition import evaluate_config
from placer.problem import Problem
from placer.result import BackendSolution
from placer.schema import Parallelism, Plan, Stage

#: Agreement required between the solver's objective terms and the evaluator's (integer scaling
#: rounds every coefficient up by < 1 ns or < 1 kB).
RELATIVE_TOLERANCE = 1e-5


def plan_from_starts(problem: Problem, par: Parallelism, starts: tuple[int, ...], backend: str) -> Plan:
    """A plan document from degrees and the first layer of each stage."""
    ends = list(starts) + [problem.model.num_layers]
    stages = [Stage(layers=(ends[s], ends[s + 1] - 1)) for s in range(par.pp)]
    return Plan(
        name=f"{problem.name}-{backend}",
        instance=problem.name,
        hardware=problem.hardware.name,
        gpus=par.gpus,
        parallelism=par,
        stages=stages,
    )


def plan_from_solution(data: FormulationData, solution: BackendSolution) -> Plan:
    """Turn the chosen configuration and stage starts into a plan document."""
    assert solution.config_index is not None
    config = data.configs[solution.config_index]
    return plan_from_starts(data.problem, config.par, solution.stage_starts, solution.backend)


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


def check_agreement(solution: BackendSolution, recomputed: dict[str, float], evaluation: Evaluation) -> None:
    """A backend's plan must pass the evaluator with the terms the backend claims (else a bug)."""
    if not evaluation.feasible:
        broken = [c.name for c in evaluation.slo + evaluation.rules if not c.ok]
        raise PlanMismatchError(f"{solution.backend} returned a plan the evaluator rejects: {broken}")
    for name, value in solution.terms.items():
        other = recomputed[name]
        if not math.isclose(value, other, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6):
            raise PlanMismatchError(
                f"{solution.backend}: objective term {name} is {value} in the solver but {other} in the evaluator"
            )


def bound_without_search(problem: Problem, term: str) -> float:
    """A lower bound on the primary term that needs no search (used when a command stops before
    any backend proved one). Fewest GPUs: :func:`placer.costmodel.memory.fewest_gpus_for_weights`;
    other terms: 0 (no claim)."""
    return float(fewest_gpus_for_weights(problem)) if term == "min_gpus" else 0.0


def warm_start(problem: Problem, max_gpus: int | None) -> tuple[Parallelism, tuple[int, ...]] | None:
    """Greedy incumbent: a small family of plans (one replica, EP over the whole stage, the widest
    TP that divides the heads inside a node) in increasing GPU count, each with its exact best
    partition; the first that fits. Its GPU count bounds the model's search space, which stays
    exact for the fewest-GPUs objective (no plan with more GPUs can beat it), and it is the
    backends' first hint, so a stopped search has a plan to return.

    It runs to completion even after Ctrl-C or the deadline: it is the plan every early stop hands
    back, and it is short (the first fitting member of a family of at most ``log2(cap) x layers``
    candidates; ``benchmarks/solve_times.py`` prints its time per instance)."""
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
