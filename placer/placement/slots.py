"""How many redundant expert slots per GPU: memory allows some, the objective picks one.

Each redundant slot holds one more expert on every GPU of the EP group in every MoE layer: it
costs ``L_moe * expert_bytes / tp_moe`` of HBM per GPU (the evaluator's weight term, (M1) of
``docs/cost-model.md``), which is HBM no longer free for the KV cache. In exchange, more copies of
the hot experts balance the GPUs better and let more tokens find a copy in their own node.

1. Memory: the largest count r whose plan still fits in memory is found with the evaluator's own
   memory breakdown (never a duplicate formula), on a probe expert map with ``base + r``
   distinct experts on every rank (monotone in r: binary search), priced at balanced routing
   (cheap); each placed candidate is then priced with the statistics, memory included.
2. Candidates: a small bounded set (``REDUNDANT_SLOT_CANDIDATES``) under that count, each placed
   (the previous count's node homes warm-start the next) and priced by the evaluator.
3. Choice: feasible first, then the instance's objective terms in order (throughput per GPU,
   cross-node traffic, TTFT; GPUs are fixed by the plan); values within ``OBJECTIVE_TIE_REL`` tie
   and pass to the next term; last, fewer slots (more HBM left for the KV cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placer.costmodel.memory import usable_memory_bytes
from placer.evaluator import Evaluation, evaluate
from placer.problem import Problem
from placer.schema import ExpertLayerMap, Plan

#: redundant slots per GPU tried by default, in order (the first is the engines' common default
#: of one, e.g. SGLang's and vLLM's EPLB examples use 32 redundant experts on 32 GPUs); bounded
#: because each count re-places every layer within the same time limit
REDUNDANT_SLOT_CANDIDATES = (1, 2, 0)
#: relative difference below which two candidates tie on a term, so the next term decides: the
#: objective is lexicographic as in the strategy model, so only differences at the level of the
#: evaluator's rounding tie (then fewer slots win: HBM left for the KV cache)
OBJECTIVE_TIE_REL = 1e-3
#: share of the placement time limit kept for the baselines
REPORT_RESERVE = 0.1
#: share of the placement budget kept for pricing the candidates with the evaluator
PRICING_SHARE = 0.15


@dataclass(frozen=True)
class SlotCandidate:
    """One redundant-slot count: its placement's figures priced by the evaluator."""

    redundant_per_gpu: int
    slots_per_rank: int
    placed: bool = True
    reason: str = ""
    feasible: bool = False
    violation: float = 0.0  # largest relative excess over an SLO limit (0 when feasible) [-]
    throughput_tokens_per_ms_per_gpu: float = 0.0  # the instance's throughput phase
    ttft_s: float = 0.0
    cross_node_bytes_per_token: float = 0.0  # dedup, per MoE layer (evaluator)
    memory_headroom_bytes: float = 0.0  # usable HBM less the fullest GPU's total
    kv_cache_bytes: float = 0.0  # the fullest stage's KV cache per GPU
    max_over_mean_worst: float = 0.0
    max_over_mean_mean: float = 0.0
    dedup_copies_per_token: float = 0.0  # placement metrics, mean over layers


def probe_plan(plan: Plan, moe_layers: list[int], num_experts: int, redundant: int) -> Plan:
    """``plan`` with ``base + redundant`` distinct experts on every EP rank (memory probe only)."""
    ep = plan.parallelism.ep
    base = -(-num_experts // ep)
    width = min(num_experts, base + redundant)
    gpus = [[(r * base + j) % num_experts for j in range(width)] for r in range(ep)]
    return plan.model_copy(update={"expert_map": [ExpertLayerMap(layer=layer, gpus=gpus) for layer in moe_layers]})


def _fits(problem: Problem, plan: Plan) -> bool:
    # balanced: the weights do not depend on routing, and pricing the probe's traffic on the
    # traces costs seconds; the placed plan's own pricing re-checks memory with the statistics
    ev = evaluate(problem, plan, balanced=True)
    return next(c.ok for c in ev.slo if c.name == "memory_per_gpu")


def largest_fitting(problem: Problem, plan: Plan) -> int:
    """Most redundant slots per GPU whose plan fits in memory (-1: not even none fits)."""
    moe = problem.model.moe
    assert moe is not None
    layers, experts = problem.model.moe_layers, moe.num_experts
    lo, hi = 0, experts - -(-experts // plan.parallelism.ep)
    if not _fits(problem, probe_plan(plan, layers, experts, 0)):
        return -1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(problem, probe_plan(plan, layers, experts, mid)):
            lo = mid
        else:
            hi = mid - 1
    return lo


def candidate_counts(requested: int | tuple[int, ...] | None, memory_max: int, ep: int, experts: int) -> list[int]:
    """Counts to place, in order: the requested ones, else the defaults that fit in memory."""
    if ep == 1:
        return [0]
    if isinstance(requested, int):
        return [requested]
    base = -(-experts // ep)
    wanted = requested if requested is not None else REDUNDANT_SLOT_CANDIDATES
    counts = [r for r in dict.fromkeys(wanted) if 0 <= r <= experts - base]
    if requested is None:
        counts = [r for r in counts if r <= memory_max] or [0]
    return counts or [0]


def price_candidate(
    problem: Problem,
    placed: Plan,
    redundant: int,
    base: int,
    layers: list,  # type: ignore[type-arg]
) -> tuple[SlotCandidate, Evaluation]:
    """The evaluator's figures for one placed plan, and the placement's balance and traffic."""
    ev = evaluate(problem, placed)
    worst = max(p.metrics.max_over_mean for p in layers)
    return SlotCandidate(
        redundant,
        base + redundant,
        feasible=ev.feasible,
        violation=max([0.0] + [-c.slack for c in ev.slo if not c.ok]),
        throughput_tokens_per_ms_per_gpu=_throughput(problem, ev),
        ttft_s=ev.ttft_s,
        cross_node_bytes_per_token=ev.cross_node_bytes_per_token,
        memory_headroom_bytes=usable_memory_bytes(problem) - ev.memory_bytes_per_gpu_max,
        kv_cache_bytes=max(st.memory.kv_cache_bytes for st in ev.stages),
        max_over_mean_worst=worst,
        max_over_mean_mean=float(np.mean([p.metrics.max_over_mean for p in layers])),
        dedup_copies_per_token=float(np.mean([p.metrics.dedup_cross for p in layers])),
    ), ev


def _throughput(problem: Problem, ev: Evaluation) -> float:
    if problem.objective.throughput_phase == "prefill":
        return ev.prefill_tokens_per_ms_per_gpu
    return ev.decode_tokens_per_ms_per_gpu


def _term_values(problem: Problem, c: SlotCandidate) -> list[float]:
    """The instance's objective terms, each to minimise (GPUs are fixed by the plan: skipped)."""
    objective = problem.objective
    terms = ["max_throughput_per_gpu" if objective.primary != "min_gpus" else "min_gpus", *objective.tie_breaks]
    values = {
        "max_throughput_per_gpu": -c.throughput_tokens_per_ms_per_gpu,
        "min_cross_node_traffic": c.cross_node_bytes_per_token,
        "min_ttft": c.ttft_s,
    }
    return [values[t] for t in dict.fromkeys(terms) if t in values]


def _better(problem: Problem, a: SlotCandidate, b: SlotCandidate) -> bool:
    if a.feasible != b.feasible:
        return a.feasible
    if not a.feasible and abs(a.violation - b.violation) > OBJECTIVE_TIE_REL * max(a.violation, b.violation):
        return a.violation < b.violation  # neither meets the SLOs: the nearer one (the re-solve measures it)
    for va, vb in zip(_term_values(problem, a), _term_values(problem, b), strict=True):
        if abs(va - vb) > OBJECTIVE_TIE_REL * max(abs(va), abs(vb), 1e-30):
            return va < vb
    return a.redundant_per_gpu < b.redundant_per_gpu


def choose(problem: Problem, trade: list[SlotCandidate]) -> SlotCandidate:
    """The best placed candidate by :func:`_better` (feasible, else the smallest SLO violation;
    then the objective terms; then fewer slots)."""
    placed = [c for c in trade if c.placed]
    best = placed[0]
    for c in placed[1:]:
        if _better(problem, c, best):
            best = c
    return best
