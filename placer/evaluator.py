"""The independent evaluator: a plan in, every figure and every constraint check out.

It reads only the problem and the plan (never solver variables), so it is the referee for every
plan a backend returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from placer.costmodel.pipeline import prefill_period_s, tokens_per_ms_per_gpu, tpot_s, ttft_s
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
from placer.errors import InputError
from placer.problem import Problem
from placer.schema import DTYPE_BYTES, Parallelism, Plan
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


@dataclass(frozen=True)
class Evaluation:
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

    @property
    def memory_bytes_per_gpu_max(self) -> float:
        return max(stage.memory.total_bytes for stage in self.stages)

    @property
    def feasible(self) -> bool:
        return all(c.ok for c in self.slo) and all(c.ok for c in self.rules)

    @property
    def binding(self) -> Check | None:
        """The constraint with the least relative slack (the one that binds)."""
        checks = [c for c in self.slo + self.rules if math.isfinite(c.slack)]
        return min(checks, key=lambda c: c.slack) if checks else None

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


def check_plan_fits_model(problem: Problem, plan: Plan, source: str | None = None) -> None:
    """Input errors that need the model: layer coverage and the expert map's shape.

    ``source`` (the plan file, if any) is named in the messages.
    """
    model = problem.model
    if plan.num_layers != model.num_layers:
        raise InputError.single(
            f"stages[{len(plan.stages) - 1}].layers",
            f"the partition ends at layer {plan.num_layers - 1} but {model.name} has layers 0..{model.num_layers - 1}",
            source,
        )
    if plan.expert_map is None:
        return
    moe = model.moe
    if moe is None:
        raise InputError.single("expert_map", f"{model.name} has no MoE layers", source)
    for index, entry in enumerate(plan.expert_map):
        where = f"expert_map[{index}]"
        if not model.is_moe_layer(entry.layer):
            raise InputError.single(f"{where}.layer", f"layer {entry.layer} is not an MoE layer", source)
        if len(entry.gpus) != plan.parallelism.ep:
            raise InputError.single(
                f"{where}.gpus", f"{len(entry.gpus)} EP ranks listed for ep = {plan.parallelism.ep}", source
            )
        seen: set[int] = set()
        for rank, experts in enumerate(entry.gpus):
            if len(set(experts)) != len(experts):
                raise InputError.single(f"{where}.gpus[{rank}]", "an expert appears twice on one GPU", source)
            bad = [e for e in experts if not 0 <= e < moe.num_experts]
            if bad:
                raise InputError.single(
                    f"{where}.gpus[{rank}]", f"expert {bad[0]} is out of range 0..{moe.num_experts - 1}", source
                )
            seen.update(experts)
        if len(seen) != moe.num_experts:
            missing = sorted(set(range(moe.num_experts)) - seen)[:5]
            raise InputError.single(f"{where}.gpus", f"experts {missing} have no slot", source)


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
            pre_s += edges.embed_prefill_s
            dec_s += edges.embed_decode_s
        if s == par.pp - 1:
            weights += edges.head_weight_bytes
            activation += edges.logits_bytes
            pre_s += edges.head_prefill_s
            dec_s += edges.head_decode_s
        if s < par.pp - 1:
            crosses = any(p.next_stage_crosses for p in patterns)
            sends_pre += edges.send_prefill_cross_s if crosses else edges.send_prefill_s
            sends_dec += edges.send_decode_cross_s if crosses else edges.send_decode_s
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
    rules, messages = _rule_checks(problem, par, layout)
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
    )


def copy_bytes_per_token(problem: Problem) -> float:
    """Bytes of one token's hidden state sent out (dispatch) and back (combine)."""
    model, params = problem.model, problem.params
    act = model.precision.activations
    return model.hidden_size * (DTYPE_BYTES[params.dispatch_dtype or act] + DTYPE_BYTES[params.combine_dtype or act])


def usable_memory_bytes(problem: Problem) -> float:
    """HBM a plan may fill: capacity less the stated margin (M5)."""
    return problem.hardware.hbm_bytes * (1 - problem.params.memory_margin_fraction)


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
    if slo.ttft_s is not None:
        checks.append(Check("ttft", ttft, slo.ttft_s, "<=", "s"))
    if slo.tpot_ms is not None:
        checks.append(Check("tpot", tpot * 1e3, slo.tpot_ms, "<=", "ms"))
    if slo.min_prefill_tokens_per_ms_per_gpu is not None:
        checks.append(
            Check("prefill_throughput", prefill_tp, slo.min_prefill_tokens_per_ms_per_gpu, ">=", "tokens/ms/GPU")
        )
    if slo.min_decode_tokens_per_ms_per_gpu is not None:
        checks.append(
            Check("decode_throughput", decode_tp, slo.min_decode_tokens_per_ms_per_gpu, ">=", "tokens/ms/GPU")
        )
    if slo.max_gpus is not None:
        checks.append(Check("gpu_budget", plan.gpus, slo.max_gpus, "<=", "GPUs"))
    return tuple(checks)


def _rule_checks(problem: Problem, par: Parallelism, layout: RankLayout) -> tuple[tuple[Check, ...], tuple[str, ...]]:
    """Engine rules (R1)-(R6) of ``docs/formulation.md``; a plan that breaks one cannot launch."""
    model, fabric = problem.model, problem.fabric
    att = model.attention
    checks: list[Check] = []
    messages: list[str] = []

    def rule(name: str, ok: bool, message: str) -> None:
        checks.append(Check(name, 0.0 if ok else 1.0, 0.0, "<=", "violations"))
        if not ok:
            messages.append(message)

    rule(
        "tp_divides_heads",
        att.num_heads % par.tp == 0,
        f"tp = {par.tp} does not divide {att.num_heads} attention heads",
    )
    if att.kind != "mla":
        kv = att.kv_heads
        rule(
            "tp_kv_heads",
            kv % par.tp == 0 or par.tp % kv == 0,
            f"tp = {par.tp} neither divides nor is a multiple of {kv} KV heads",
        )
    tp_inside = all(len(set(layout.domain_of[i : i + par.tp])) == 1 for i in range(0, par.gpus, par.tp))
    rule("tp_group_in_node", tp_inside, f"a TP group of {par.tp} GPUs spans NVLink domains")
    moe = model.moe
    if moe is not None:
        rule("ep_within_experts", par.ep <= moe.num_experts, f"ep = {par.ep} exceeds the {moe.num_experts} experts")
        rule(
            "tp_moe_divides_ffn",
            moe.expert_ffn_size % par.tp_moe == 0,
            f"tp_moe = {par.tp_moe} does not divide expert FFN {moe.expert_ffn_size}",
        )
    else:
        rule("no_moe_degrees", par.ep == 1 and par.tp_moe == par.tp * par.dp_attn, "ep > 1 on a model without experts")
    if fabric.max_gpus is not None:
        checks.append(Check("cluster_gpus", par.gpus, fabric.max_gpus, "<=", "GPUs"))
        if par.gpus > fabric.max_gpus:
            messages.append(f"{par.gpus} GPUs exceed the cluster's {fabric.max_gpus}")
    return tuple(checks), tuple(messages)
