"""Per-layer cost tables: the interface between the cost model and everything that composes it.

For one set of degrees and one stage position, :func:`layer_costs` returns arrays over *all*
layers (weights, KV, prefill and decode time per micro-batch) as if that layer sat in that stage.
The evaluator slices them by the plan's partition; the optimiser's formulation uses them as
coefficients of its layer-to-stage variables. Both therefore see the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from placer.costmodel.comm import allgather_time_s, allreduce_time_s, p2p_time_s
from placer.costmodel.layers import (
    LayerContext,
    LayerPhaseCost,
    Op,
    attention_dims,
    kv_tokens_held,
    layer_kv_bytes,
    layer_phase_cost,
    layer_weight_bytes,
    op_time_s,
)
from placer.costmodel.phase import PerPhase
from placer.costmodel.shapes import (
    PhaseShape,
    activation_tokens_per_rank,
    decode_shape,
    prefill_shape,
    seqs_per_dp_rank,
)
from placer.costmodel.traffic import (
    LayerTraffic,
    contiguous_map,
    layer_traffic,
    rank_pair_loads,
    serving_weights,
    uniform_layer_traffic,
)
from placer.problem import Problem
from placer.routing.stats import LayerRouting, RoutingStats
from placer.schema import DTYPE_BYTES, Parallelism
from placer.schema.base import COMPUTE_PRECISION
from placer.topology import RankLayout

ExpertMaps = dict[int, tuple[tuple[int, ...], ...]]  # MoE layer -> experts per EP rank


@dataclass(frozen=True)
class StagePattern:
    """How one stage's GPUs sit across NVLink domains (relabelled 0, 1, ...)."""

    domains: tuple[int, ...]
    next_stage_crosses: bool  # the send to the next stage leaves the domain

    @property
    def crosses_domain(self) -> bool:
        return len(set(self.domains)) > 1


def stage_pattern(layout: RankLayout, replica: int, stage: int) -> StagePattern:
    """The domain pattern of ``(replica, stage)``."""
    par = layout.parallelism
    if layout.regular_domain_gpus is not None:  # the default fill order: memoised by stage offset
        domain = layout.regular_domain_gpus
        start = layout.rank(replica, stage, 0)
        return _regular_pattern(start % domain, par.stage_width, domain, stage + 1 < par.pp)
    raw = layout.stage_domains(replica, stage)
    relabel: dict[int, int] = {}
    domains = tuple(relabel.setdefault(d, len(relabel)) for d in raw)
    crosses = False
    if stage + 1 < par.pp:
        nxt = layout.stage_domains(replica, stage + 1)
        crosses = any(a != b for a, b in zip(raw, nxt, strict=True))
    return StagePattern(domains, crosses)


@lru_cache(maxsize=4096)
def _regular_pattern(offset: int, width: int, domain: int, has_next: bool) -> StagePattern:
    """Pattern of ranks ``offset .. offset + width - 1`` when rank ``i`` sits in domain ``i // domain``."""
    raw = [(offset + w) // domain for w in range(width)]
    relabel: dict[int, int] = {}
    domains = tuple(relabel.setdefault(d, len(relabel)) for d in raw)
    crosses = has_next and any((offset + w) // domain != (offset + width + w) // domain for w in range(width))
    return StagePattern(domains, crosses)


def stage_domain_patterns(layout: RankLayout) -> frozenset[tuple[int, ...]]:
    """The distinct domain patterns over every ``(replica, stage)`` (R5 asks for exactly one)."""
    par = layout.parallelism
    if layout.regular_domain_gpus is not None:
        return _regular_patterns(par.stage_width, par.pp * par.replicas, layout.regular_domain_gpus)
    return frozenset(stage_pattern(layout, r, s).domains for r in range(par.replicas) for s in range(par.pp))


@lru_cache(maxsize=65536)
def _regular_patterns(width: int, stages: int, domain: int) -> frozenset[tuple[int, ...]]:
    """Stage ``k`` (``k = replica * pp + stage``) starts at rank ``k * width``; its pattern depends
    only on that start modulo the domain size."""
    offsets = {(k * width) % domain for k in range(stages)}
    return frozenset(_regular_pattern(offset, width, domain, False).domains for offset in offsets)


def boundary_crossings(layout: RankLayout) -> tuple[bool, ...]:
    """Per pipeline boundary (stage ``s`` to ``s + 1``), whether its send leaves the NVLink domain
    in any replica: a boundary is as slow as its slowest replica (the evaluator takes the same max)."""
    par = layout.parallelism
    if layout.regular_domain_gpus is not None:
        return _regular_crossings(par.stage_width, par.pp, par.replicas, layout.regular_domain_gpus)
    return tuple(
        any(stage_pattern(layout, r, s).next_stage_crosses for r in range(par.replicas)) for s in range(par.pp - 1)
    )


@lru_cache(maxsize=65536)
def _regular_crossings(width: int, pp: int, replicas: int, domain: int) -> tuple[bool, ...]:
    def crosses(stage: int) -> bool:
        return _regular_pattern(stage * width % domain, width, domain, True).next_stage_crosses

    return tuple(any(crosses(r * pp + s) for r in range(replicas)) for s in range(pp - 1))


def tp_crosses(domains: tuple[int, ...], group: int) -> bool:
    """Whether any run of ``group`` consecutive GPUs spans two domains."""
    return any(len(set(domains[i : i + group])) > 1 for i in range(0, len(domains), group))


@dataclass(frozen=True)
class LayerCosts:
    """Arrays over all layers for one stage pattern (one GPU: the busiest of the stage)."""

    weight_bytes: np.ndarray
    kv_bytes: np.ndarray
    prefill_s: np.ndarray  # per micro-batch
    decode_s: np.ndarray  # per micro-batch
    traffic: tuple[LayerTraffic | None, ...]
    prefill_detail: tuple[LayerPhaseCost, ...]
    decode_detail: tuple[LayerPhaseCost, ...]


@dataclass(frozen=True)
class EdgeCosts:
    """Embedding (first stage) and LM head (last stage), and the pipeline sends."""

    embed_weight_bytes: float
    head_weight_bytes: float
    embed_s: PerPhase[float]  # per micro-batch, by phase
    head_s: PerPhase[float]
    send_s: PerPhase[float]  # per micro-batch per boundary, inside a domain
    send_cross_s: PerPhase[float]  # same, leaving the domain
    workspace_bytes: float  # activation workspace on every GPU
    logits_bytes: float  # extra workspace on the last stage


def default_expert_maps(problem: Problem, par: Parallelism) -> ExpertMaps:
    """Contiguous placement for every MoE layer (the default when a plan gives none)."""
    model = problem.model
    if model.moe is None:
        return {}
    base = contiguous_map(model.moe.num_experts, par.ep)
    return {layer: base for layer in model.moe_layers}


def _distinct(maps: Iterable[tuple[tuple[int, ...], ...]]) -> list[tuple[tuple[int, ...], ...]]:
    """The distinct expert maps, compared by identity first: the default maps are one shared tuple,
    and hashing a map walks every expert id (a set of 58 copies of a 256-expert map costs more
    than the layer it describes)."""
    maps = tuple(maps)
    if maps and maps.count(maps[0]) == len(maps):  # count() tries identity before equality
        return [maps[0]]
    out: list[tuple[tuple[int, ...], ...]] = []
    for m in maps:
        if not any(m is seen or m == seen for seen in out):
            out.append(m)
    return out


def busiest_rank_pairs(expert_map: tuple[tuple[int, ...], ...], ep: int, loads: np.ndarray) -> float:
    """Largest expected (token, expert) pairs one EP rank serves per stage token, all ranks in one
    domain (the workspace sizing of (M4), where the domain split does not matter much)."""
    present = np.zeros((loads.size, ep), dtype=bool)
    for rank, experts in enumerate(expert_map):
        present[list(experts), rank] = True
    return float(rank_pair_loads(serving_weights(present, np.zeros(ep, dtype=int)), loads).max())


def phase_shapes(problem: Problem, par: Parallelism) -> PerPhase[PhaseShape]:
    """The micro-batch shape of each phase (unpacks as ``prefill, decode``)."""
    return PerPhase(
        prefill_shape(problem.workload, par, problem.params), decode_shape(problem.workload, par, problem.params)
    )


class PhaseCostMemo:
    """Layer phase costs of *one* problem, memoised by value for a caller that costs many degree sets.

    A layer's cost depends on the degrees only through the stage's width split, the micro-batch
    shape, whether its groups leave the NVLink domain and the layer's traffic, which many
    configurations share. The memo holds its problem and refuses any other, so a key never
    outlives the data it was computed from (the caller owns its lifetime: one formulation build).
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self._costs: dict[tuple[object, ...], LayerPhaseCost] = {}

    def phase_cost(self, ctx: LayerContext, layer: int, traffic: LayerTraffic | None) -> LayerPhaseCost:
        par, shape = ctx.par, ctx.shape
        key = (
            par.tp,
            par.dp_attn,
            par.ep,
            par.tp_moe,
            # the shape fields a layer reads (micro-batch count and sequences per replica are not)
            shape.phase,
            shape.seqs_per_rank,
            shape.tokens_per_rank,
            shape.tokens_per_stage,
            shape.context_tokens,
            shape.forwards_per_micro_batch,
            ctx.tp_crosses_domain,
            ctx.stage_crosses_domain,
            ctx.model.is_moe_layer(layer),
            ctx.model.attention.layer_kind(layer),
            traffic,
        )
        cost = self._costs.get(key)
        if cost is None:
            cost = self._costs[key] = layer_phase_cost(ctx, layer, traffic)
        return cost


@dataclass(frozen=True)
class LayerRow:
    """One layer's figures for one stage pattern (a row of :class:`LayerCosts`)."""

    traffic: LayerTraffic | None
    weight_bytes: float
    prefill: LayerPhaseCost
    decode: LayerPhaseCost


@dataclass(frozen=True)
class StageContexts:
    """What every layer of one stage shares: the two phase contexts and the KV bytes per layer."""

    prefill: LayerContext
    decode: LayerContext
    kv_bytes: float


def stage_contexts(problem: Problem, par: Parallelism, pattern: StagePattern) -> StageContexts:
    """Phase contexts of a stage with ``pattern`` (shapes from the workload, crossings from the pattern)."""
    model = problem.model
    pre, dec = phase_shapes(problem, par)
    seqs = seqs_per_dp_rank(problem.workload, par)
    tp_x = tp_crosses(pattern.domains, par.tp) or tp_crosses(pattern.domains, par.tp_moe)
    ctx_args = dict(
        model=model,
        hardware=problem.hardware,
        fabric=problem.fabric,
        params=problem.params,
        par=par,
        tp_crosses_domain=tp_x,
        stage_crosses_domain=pattern.crosses_domain,
    )
    return StageContexts(
        LayerContext(shape=pre, **ctx_args),  # type: ignore[arg-type]
        LayerContext(shape=dec, **ctx_args),  # type: ignore[arg-type]
        layer_kv_bytes(model, par, seqs, problem.workload.max_context_tokens),
    )


def layer_placement(
    problem: Problem,
    par: Parallelism,
    pattern: StagePattern,
    layer: int,
    expert_map: tuple[tuple[int, ...], ...] | None,
    stats: LayerRouting | None = None,
) -> tuple[LayerTraffic | None, float]:
    """Traffic (MoE layers, ``expert_map`` given) and weight bytes of ``layer``: what its memory
    needs, before any timing. Without routing statistics the MoE load is uniform, raised by
    ``expert_load_imbalance`` (T5)."""
    model = problem.model
    traffic = None
    distinct = 0
    if expert_map is not None:
        assert model.moe is not None
        if stats is None:
            imbalance = problem.params.expert_load_imbalance
            traffic = uniform_layer_traffic(expert_map, pattern.domains, par.tp_moe, model.moe.top_k, imbalance)
        else:
            traffic = layer_traffic(expert_map, pattern.domains, par.tp_moe, model.moe.top_k, routing=stats)
        distinct = max(traffic.gpu_distinct_experts)
    return traffic, layer_weight_bytes(model, layer, par, distinct)


def layer_times(
    problem: Problem,
    contexts: StageContexts,
    layer: int,
    traffic: LayerTraffic | None,
    memo: PhaseCostMemo | None = None,
) -> tuple[LayerPhaseCost, LayerPhaseCost]:
    """Prefill and decode cost of ``layer`` per micro-batch, through ``memo`` when given."""
    if memo is None:
        return layer_phase_cost(contexts.prefill, layer, traffic), layer_phase_cost(contexts.decode, layer, traffic)
    assert memo.problem is problem, "a phase-cost memo serves one problem"
    return memo.phase_cost(contexts.prefill, layer, traffic), memo.phase_cost(contexts.decode, layer, traffic)


def layer_row(
    problem: Problem,
    contexts: StageContexts,
    pattern: StagePattern,
    layer: int,
    expert_map: tuple[tuple[int, ...], ...] | None,
    stats: LayerRouting | None = None,
    memo: PhaseCostMemo | None = None,
) -> LayerRow:
    """Weights, traffic and both phase costs of ``layer`` (``expert_map`` given for MoE layers)."""
    traffic, weight_bytes = layer_placement(problem, contexts.prefill.par, pattern, layer, expert_map, stats)
    pre, dec = layer_times(problem, contexts, layer, traffic, memo)
    return LayerRow(traffic, weight_bytes, pre, dec)


def layer_costs(
    problem: Problem,
    par: Parallelism,
    pattern: StagePattern,
    expert_maps: ExpertMaps,
    routing: RoutingStats | None = None,
    memo: PhaseCostMemo | None = None,
) -> LayerCosts:
    """Weights, KV and per-micro-batch times of every layer for a stage with ``pattern``.

    ``routing`` (statistics, one entry per MoE layer in order) sets each GPU's expert load and the
    all-to-all reach from the measured or synthetic routing; ``None`` is uniform routing, which is
    also what the strategy model uses (its balanced load is a lower bound on the busiest GPU's,
    ``docs/formulation.md``). ``memo`` shares layer costs across calls for the same problem."""
    model = problem.model
    contexts = stage_contexts(problem, par, pattern)
    moe_index = {layer: i for i, layer in enumerate(model.moe_layers)} if model.moe is not None else {}
    # A layer's cost depends on the layer only through its kind (dense or MoE), its expert map and
    # its routing statistics (one entry per MoE layer): cost each kind once, then lay the kinds out.
    # Sliding-window and chunked layers are a kind of their own (their attention span differs).
    kind_of_layer: list[tuple[bool, object, int | None, str]] = []
    rows: dict[tuple[bool, object, int | None, str], LayerRow] = {}
    for layer in range(model.num_layers):
        is_moe = layer in moe_index
        kind = (
            is_moe,
            expert_maps.get(layer) if is_moe else None,
            moe_index[layer] if routing is not None and is_moe else None,
            model.attention.layer_kind(layer),
        )
        if kind not in rows:
            stats = routing.layers[moe_index[layer]] if routing is not None and is_moe else None
            expert_map = expert_maps[layer] if is_moe else None
            rows[kind] = layer_row(problem, contexts, pattern, layer, expert_map, stats, memo)
        kind_of_layer.append(kind)
    laid = [rows[kind] for kind in kind_of_layer]
    context = problem.workload.max_context_tokens
    kv = [
        contexts.kv_bytes
        if model.attention.window(layer) is None
        else contexts.kv_bytes * kv_tokens_held(model, layer, context) / context
        for layer in range(model.num_layers)
    ]
    return LayerCosts(
        np.asarray([r.weight_bytes for r in laid]),
        np.asarray(kv),
        np.asarray([r.prefill.time_s for r in laid]),
        np.asarray([r.decode.time_s for r in laid]),
        tuple(r.traffic for r in laid),
        tuple(r.prefill for r in laid),
        tuple(r.decode for r in laid),
    )


def edge_costs_key(par: Parallelism, pre: PhaseShape, dec: PhaseShape) -> tuple[int | bool, ...]:
    """Everything :func:`edge_costs` reads of the degrees and the two phase shapes (keep the two in
    step): for one problem and one set of expert maps, equal keys give equal edge costs. The
    micro-batch count and the replica count enter only through these shape fields."""
    return (
        par.tp,
        par.dp_attn,
        par.ep,
        par.tp_moe,
        par.pp == 1,  # tied embeddings share the table only without a pipeline
        pre.seqs_per_rank,
        pre.tokens_per_rank,  # also sets the activation workspace (S7)
        pre.forwards_per_micro_batch,
        dec.seqs_per_rank,
        dec.tokens_per_rank,
        dec.forwards_per_micro_batch,
    )


def edge_costs(
    problem: Problem, par: Parallelism, expert_maps: ExpertMaps, routing: RoutingStats | None = None
) -> EdgeCosts:
    """(O9) Embedding and LM head, (C4) pipeline sends, (M4) activation workspace.

    The MoE workspace holds the busiest GPU's (token, expert) pairs: with ``routing``, from the
    statistics and the expert map by the (T3) local-first rule, else uniform."""
    model, hw, fabric, params = problem.model, problem.hardware, problem.fabric, problem.params
    h, vocab = model.hidden_size, model.vocab_size
    w_bytes = DTYPE_BYTES[model.precision.of("embeddings")]
    a_bytes = DTYPE_BYTES[model.precision.activations]
    precision = COMPUTE_PRECISION[model.precision.of("embeddings")]
    shapes = phase_shapes(problem, par)
    pre, dec = shapes
    table_bytes = vocab * h / par.tp * w_bytes  # vocab-parallel over the TP group
    embed_w = table_bytes
    head_w = 0.0 if (model.tie_embeddings and par.pp == 1) else table_bytes

    def embed_s(shape: PhaseShape) -> float:
        gather = op_time_s(Op("embed", 0.0, shape.tokens_per_rank * h * (w_bytes + a_bytes), "gemm"), hw, precision)
        reduce = allreduce_time_s(
            shape.tokens_per_rank * h * a_bytes, par.tp, fabric, False, params.allreduce_algorithm
        )
        return gather + reduce

    def head_s(shape: PhaseShape) -> float:
        # Prefill computes logits for the last token of each sequence only.
        tokens = shape.seqs_per_rank if shape.phase == "prefill" else shape.tokens_per_rank
        flops = 2 * tokens * h * vocab / par.tp
        moved = shape.forwards_per_micro_batch * table_bytes + tokens * vocab / par.tp * 4
        gemm = op_time_s(Op("lm_head", flops, moved, "gemm"), hw, precision)
        gather = allgather_time_s(tokens * vocab * 4, par.tp, fabric, False)
        # the engine's fixed time per step (sampling, scheduler) rides with the LM head: once per forward
        return gemm + gather + params.step_overhead_us * 1e-6

    def send(shape: PhaseShape, crosses: bool) -> float:
        return p2p_time_s(shape.tokens_per_rank * h * a_bytes / par.tp, fabric, crosses)

    act_tokens = activation_tokens_per_rank(problem.workload, par, params)
    dims = attention_dims(model, par.tp)
    widths = [dims.heads * (dims.qk_dim_prefill + dims.v_dim_prefill)]
    if model.ffn_size is not None:
        widths.append(model.ffn_size / par.tp)
    workspace = act_tokens * a_bytes * (params.activation_buffers_per_token * h + 2 * max(widths))
    if model.moe is not None:
        moe = model.moe
        if routing is None:
            pairs_max = max(
                max(
                    uniform_layer_traffic(
                        m, tuple([0] * par.stage_width), par.tp_moe, moe.top_k, params.expert_load_imbalance
                    ).gpu_pairs_per_token
                )
                for m in _distinct(expert_maps.values())
            )
        else:
            pairs_max = max(
                busiest_rank_pairs(expert_maps[layer], par.ep, stats.loads)
                for layer, stats in zip(model.moe_layers, routing.layers, strict=True)
            )
        workspace += act_tokens * par.dp_attn * pairs_max * (h + 2 * moe.expert_ffn_size / par.tp_moe) * a_bytes
        if moe.num_shared_experts:
            workspace += act_tokens * a_bytes * 2 * moe.num_shared_experts * moe.shared_ffn_size / par.tp
    logits = max(pre.seqs_per_rank, dec.tokens_per_rank) * vocab / par.tp * 4
    return EdgeCosts(
        embed_weight_bytes=embed_w,
        head_weight_bytes=head_w,
        embed_s=shapes.map(embed_s),
        head_s=shapes.map(head_s),
        send_s=shapes.map(lambda shape: send(shape, False)),
        send_cross_s=shapes.map(lambda shape: send(shape, True)),
        workspace_bytes=workspace,
        logits_bytes=logits,
    )
