"""The independent evaluator: a plan in, every figure and every constraint check out.

It reads only the problem and the plan (never solver variables), so it is the referee for every
plan a backend returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from placer.costmodel.dispatch import copy_bytes_per_token
from placer.costmodel.memory import usable_memory_bytes
from placer.costmodel.pipeline import prefill_period_s, tokens_per_ms_per_gpu, tpot_s, ttft_s
from placer.costmodel.rules import RuleInput, applicable_rules
from placer.costmodel.tables import (
    ExpertMaps,
    LayerCosts,
    StagePattern,
    default_expert_maps,
    edge_costs,
    layer_costs,
    phase_shapes,
    stage_pattern,
)
from placer.plancheck import check_plan_fits_model
from placer.problem import Problem
from placer.schema import Parallelism, Plan, SLOs
from placer.topology import RankLayout, default_layout

GB = 1e9


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes on the fullest GPU of one stage."""

    weights_bytes: float
    kv_cache_bytes: float
    activation_bytes: float
    runtime_reserve_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.runtime_reserve_bytes


@dataclass(frozen=True)
class StageReport:
    """One pipeline stage: its layers, memory and time per micro-batch (busiest replica)."""

    index: int
    layers: tuple[int, int]
    memory: MemoryBreakdown
    prefill_s: float
    decode_s: float


@dataclass(frozen=True)
class Check:
    """One constraint: ``value`` against ``limit``; ``slack`` is relative (negative = violated)."""

    name: str
    value: float
    limit: float
    sense: str  # "<=" or ">="
    unit: str

    @property
    def ok(self) -> bool:
        return self.value <= self.limit * (1 + 1e-9) if self.sense == "<=" else self.value >= self.limit * (1 - 1e-9)

    @property
    def slack(self) -> float:
        if self.limit == 0:
            return math.inf
        gap = self.limit - self.value if self.sense == "<=" else self.value - self.limit
        return gap / abs(self.limit)

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.value,
            "limit": self.limit,
            "sense": self.sense,
            "unit": self.unit,
            "slack": self.slack,
            "ok": self.ok,
        }


class Checked:
    """The verdict of a dataclass holding ``slo`` and ``rules`` checks (an evaluation of either kind
    of plan): feasible when every check holds, and the one that binds."""

    slo: tuple[Check, ...]
    rules: tuple[Check, ...]

    @property
    def feasible(self) -> bool:
        return all(c.ok for c in self.slo) and all(c.ok for c in self.rules)

    @property
    def binding(self) -> Check | None:
        """The constraint with the least relative slack (the one that binds)."""
        checks = [c for c in self.slo + self.rules if math.isfinite(c.slack)]
        return min(checks, key=lambda c: c.slack) if checks else None


@dataclass(frozen=True)
class Evaluation(Checked):
    """Everything the evaluator computed for one plan."""

    plan: Plan
    gpus: int
    nodes: int
    stages: tuple[StageReport, ...]
    ttft_s: float
    tpot_s: float
    prefill_tokens_per_ms_per_gpu: float
    decode_tokens_per_ms_per_gpu: float
    cross_node_bytes_per_token: float
    cross_node_bytes_per_token_plain: float
    load_imbalance_max: float
    slo: tuple[Check, ...]
    rules: tuple[Check, ...]
    rule_messages: tuple[str, ...]
    uniform_routing: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: For a serving workload (kind other than ``burst``): the analytic steady state
    #: (``placer.serving.ServingPoint``) that ``ttft_s``, ``tpot_s``, the decode throughput and their
    #: SLO checks were taken from by ``placer.serving.evaluate_serving``; ``None`` for ``burst``.
    serving: object | None = None

    @property
    def memory_bytes_per_gpu_max(self) -> float:
        return max(stage.memory.total_bytes for stage in self.stages)

    def metrics(self) -> dict[str, float]:
        return {
            "ttft_s": self.ttft_s,
            "tpot_ms": self.tpot_s * 1e3,
            "prefill_tokens_per_ms_per_gpu": self.prefill_tokens_per_ms_per_gpu,
            "decode_tokens_per_ms_per_gpu": self.decode_tokens_per_ms_per_gpu,
            "memory_bytes_per_gpu_max": self.memory_bytes_per_gpu_max,
            "cross_node_bytes_per_token": self.cross_node_bytes_per_token,
            "cross_node_bytes_per_token_plain": self.cross_node_bytes_per_token_plain,
            "load_imbalance_max": self.load_imbalance_max,
        }


def plan_expert_maps(problem: Problem, plan: Plan) -> ExpertMaps:
    maps = default_expert_maps(problem, plan.parallelism)
    for entry in plan.expert_map or []:
        maps[entry.layer] = tuple(tuple(experts) for experts in entry.gpus)
    return maps


def evaluate(problem: Problem, plan: Plan, balanced: bool = False) -> Evaluation:
    """Compute every figure of ``plan`` on ``problem`` and check every constraint.

    Expert load and all-to-all traffic come from the plan's expert map (contiguous when it has
    none) and the instance's routing statistics (uniform when it has none). ``balanced=True``
    ignores the statistics: the strategy model's figures, which ``placer solve`` uses to check
    that a backend's objective terms agree with the cost model before placing experts."""
    check_plan_fits_model(problem, plan)
    par = plan.parallelism
    layout = default_layout(par, problem.fabric, plan.rank_to_node)
    maps = plan_expert_maps(problem, plan)
    routing = None if balanced else problem.routing_stats
    edges = edge_costs(problem, par, maps, routing)
    pre_shape, dec_shape = phase_shapes(problem, par)
    cache: dict[StagePattern, LayerCosts] = {}

    def costs_for(pattern: StagePattern) -> LayerCosts:
        if pattern not in cache:
            cache[pattern] = layer_costs(problem, par, pattern, maps, routing)
        return cache[pattern]

    stages: list[StageReport] = []
    sends_pre = sends_dec = 0.0
    cross_dedup: list[float] = []
    cross_plain: list[float] = []
    imbalance = 1.0
    reserve = problem.hardware.runtime_reserve_gb * GB
    for s, stage in enumerate(plan.stages):
        lo, hi = stage.first, stage.last + 1
        patterns = [stage_pattern(layout, r, s) for r in range(par.replicas)]
        per_replica = [costs_for(p) for p in patterns]
        pre_s = max(float(c.prefill_s[lo:hi].sum()) for c in per_replica)
        dec_s = max(float(c.decode_s[lo:hi].sum()) for c in per_replica)
        weights = float(per_replica[0].weight_bytes[lo:hi].sum())
        kv = float(per_replica[0].kv_bytes[lo:hi].sum())
        activation = edges.workspace_bytes
        if s == 0:
            weights += edges.embed_weight_bytes
            pre_s += edges.embed_s["prefill"]
            dec_s += edges.embed_s["decode"]
        if s == par.pp - 1:
            weights += edges.head_weight_bytes
            activation += edges.logits_bytes
            pre_s += edges.head_s["prefill"]
            dec_s += edges.head_s["decode"]
        if s < par.pp - 1:
            crosses = any(p.next_stage_crosses for p in patterns)
            sends_pre += edges.send_cross_s["prefill"] if crosses else edges.send_s["prefill"]
            sends_dec += edges.send_cross_s["decode"] if crosses else edges.send_s["decode"]
        stages.append(StageReport(s, stage.layers, MemoryBreakdown(weights, kv, activation, reserve), pre_s, dec_s))
        for costs in per_replica:
            for traffic in costs.traffic[lo:hi]:
                if traffic is not None:
                    cross_dedup.append(traffic.dedup_scaleout)
                    cross_plain.append(traffic.plain_scaleout)
                    imbalance = max(imbalance, traffic.imbalance)

    pre_times = [st.prefill_s for st in stages]
    dec_times = [st.decode_s for st in stages]
    gpus = plan.gpus
    workload = problem.workload
    ttft = ttft_s(pre_times, sends_pre, pre_shape.micro_batches)
    period = prefill_period_s(pre_times, pre_shape.micro_batches)
    # A decode step emits ``output_tokens_per_step`` tokens per sequence (1 without drafts): TPOT is
    # the step time per emitted token.
    tpot = tpot_s(dec_times, sends_dec, dec_shape.micro_batches) / workload.output_tokens_per_step
    prefill_tp = tokens_per_ms_per_gpu(workload.batch_size * workload.prompt_tokens.max, period, gpus)
    decode_tp = tokens_per_ms_per_gpu(workload.batch_size, tpot, gpus)
    copy_bytes = copy_bytes_per_token(problem)
    nodes = layout.num_nodes
    slo = _slo_checks(problem, plan, ttft, tpot, prefill_tp, decode_tp, stages)
    rules, messages = _rule_checks(problem, par, layout, tuple(stage.num_layers for stage in plan.stages))
    return Evaluation(
        plan=plan,
        gpus=gpus,
        nodes=nodes,
        stages=tuple(stages),
        ttft_s=ttft,
        tpot_s=tpot,
        prefill_tokens_per_ms_per_gpu=prefill_tp,
        decode_tokens_per_ms_per_gpu=decode_tp,
        cross_node_bytes_per_token=copy_bytes * (sum(cross_dedup) / len(cross_dedup)) if cross_dedup else 0.0,
        cross_node_bytes_per_token_plain=copy_bytes * (sum(cross_plain) / len(cross_plain)) if cross_plain else 0.0,
        load_imbalance_max=imbalance,
        slo=slo,
        rules=rules,
        rule_messages=messages,
        uniform_routing=routing is None,
        notes=_provenance_notes(problem, plan),
    )


def _provenance_notes(problem: Problem, plan: Plan) -> tuple[str, ...]:
    """A plan names the instance and hardware it was written for; evaluating it on others is
    allowed (comparing hardware does just that) but worth saying, since the figures are the
    instance's, not the plan's."""
    notes = []
    if plan.hardware and plan.hardware != problem.hardware.name:
        notes.append(
            f"the plan was written for hardware {plan.hardware!r}; these figures are for "
            f"{problem.hardware.name!r}, the instance's"
        )
    if plan.instance and plan.instance != problem.name:
        notes.append(f"the plan names instance {plan.instance!r}; evaluated on {problem.name!r}")
    return tuple(notes)


def _slo_checks(
    problem: Problem,
    plan: Plan,
    ttft: float,
    tpot: float,
    prefill_tp: float,
    decode_tp: float,
    stages: list[StageReport],
) -> tuple[Check, ...]:
    slo = problem.slo
    checks = [
        Check(
            "memory_per_gpu",
            max(st.memory.total_bytes for st in stages) / GB,
            usable_memory_bytes(problem) / GB,
            "<=",
            "GB",
        )
    ]
    checks += slo_limit_checks(slo, ttft, tpot, prefill_tp, decode_tp, plan.gpus)
    return tuple(checks)


def slo_limit_checks(
    slo: SLOs, ttft_s: float, tpot_s: float, prefill_tp: float | None, decode_tp: float, gpus: int
) -> list[Check]:
    """The checks of the SLOs the instance states, in report order: TTFT, TPOT, the throughput
    floors (prefill only when ``prefill_tp`` is given) and the GPU budget; throughputs in
    tokens/ms/GPU. Shared by the evaluator and the disaggregated evaluation."""
    checks = []
    if slo.ttft_s is not None:
        checks.append(Check("ttft", ttft_s, slo.ttft_s, "<=", "s"))
    if slo.tpot_ms is not None:
        checks.append(Check("tpot", tpot_s * 1e3, slo.tpot_ms, "<=", "ms"))
    if prefill_tp is not None and slo.min_prefill_tokens_per_ms_per_gpu is not None:
        checks.append(
            Check("prefill_throughput", prefill_tp, slo.min_prefill_tokens_per_ms_per_gpu, ">=", "tokens/ms/GPU")
        )
    if slo.min_decode_tokens_per_ms_per_gpu is not None:
        checks.append(
            Check("decode_throughput", decode_tp, slo.min_decode_tokens_per_ms_per_gpu, ">=", "tokens/ms/GPU")
        )
    if slo.max_gpus is not None:
        checks.append(Check("gpu_budget", gpus, slo.max_gpus, "<=", "GPUs"))
    return checks


def _rule_checks(
    problem: Problem, par: Parallelism, layout: RankLayout, stage_layers: tuple[int, ...]
) -> tuple[tuple[Check, ...], tuple[str, ...]]:
    """Engine rules (R1)-(R7) on the plan's own layout and stages, from their one definition in
    :mod:`placer.costmodel.rules`; a plan that breaks one cannot launch (on the instance's engine, for R7)."""
    x = RuleInput(
        problem.model,
        problem.fabric,
        par,
        layout,
        problem.engine,
        stage_layers,
        problem.workload.decode_tokens_per_step,
    )
    checks: list[Check] = []
    messages: list[str] = []
    for rule in applicable_rules(x):
        ok = rule.holds(x)
        if rule.count is not None:
            count = rule.count(x)
            checks.append(Check(rule.name, count.value, count.limit, "<=", count.unit))
        else:
            checks.append(Check(rule.name, 0.0 if ok else 1.0, 0.0, "<=", "violations"))
        if not ok:
            messages.append(rule.message(x))
    return tuple(checks), tuple(messages)
