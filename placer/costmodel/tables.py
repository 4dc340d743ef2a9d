"""Per-layer cost tables: the interface between the cost model and everything that composes it.

For one set of degrees and one stage position, :func:`layer_costs` returns arrays over *all*
layers (weights, KV, prefill and decode time per micro-batch) as if that layer sat in that stage.
The evaluator slices them by the plan's partition; the optimiser's formulation uses them as
coefficients of its layer-to-stage variables. Both therefore see the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from placer.costmodel.comm import allgather_time_s, allreduce_time_s, p2p_time_s
from placer.costmodel.layers import (
    LayerContext,
    LayerPhaseCost,
    Op,
    attention_dims,
    layer_kv_bytes,
    layer_phase_cost,
    layer_weight_bytes,
    op_time_s,
)
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
    with_imbalance,
)
from placer.problem import Problem
from placer.routing.stats import RoutingStats
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
    embed_prefill_s: float
    embed_decode_s: float
    head_prefill_s: float
    head_decode_s: float
    send_prefill_s: float  # per micro-batch per boundary, inside a domain
    send_prefill_cross_s: float  # same, leaving the domain
    send_decode_s: float
    send_decode_cross_s: float
    workspace_bytes: float  # activation workspace on every GPU
    logits_bytes: float  # extra workspace on the last stage


def default_expert_maps(problem: Problem, par: Parallelism) -> ExpertMaps:
    """Contiguous placement for every MoE layer (the default when a plan gives none)."""
    model = problem.model
    if model.moe is None:
        return {}
    base = contiguous_map(model.moe.num_experts, par.ep)
    return {layer: base for layer in model.moe_layers}


def busiest_rank_pairs(expert_map: tuple[tuple[int, ...], ...], ep: int, loads: np.ndarray) -> float:
    """Largest expected (token, expert) pairs one EP rank serves per stage token, all ranks in one
    domain (the workspace sizing of (M4), where the domain split does not matter much)."""
    present = np.zeros((loads.size, ep), dtype=bool)
    for rank, experts in enumerate(expert_map):
        present[list(experts), rank] = True
    return float(rank_pair_loads(serving_weights(present, np.zeros(ep, dtype=int)), loads).max())


def phase_shapes(problem: Problem, par: Parallelism) -> tuple[PhaseShape, PhaseShape]:
    return prefill_shape(problem.workload, par, problem.params), decode_shape(problem.workload, par, problem.params)


def layer_costs(
    problem: Problem,
    par: Parallelism,
    pattern: StagePattern,
    expert_maps: ExpertMaps,
    routing: RoutingStats | None = None,
) -> LayerCosts:
    """Weights, KV and per-micro-batch times of every layer for a stage with ``pattern``.

    ``routing`` (statistics, one entry per MoE layer in order) sets each GPU's expert load and the
    all-to-all reach from the measured or synthetic routing; ``None`` is uniform routing, which is
    also what the strategy model uses (its balanced load is a lower bound on the busiest GPU's,
    ``docs/formulation.md``)."""
    model = problem.model
    pre, dec = phase_shapes(problem, par)
    seqs = seqs_per_dp_rank(problem.workload, par)
    context = problem.workload.max_context_tokens
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
    pre_ctx = LayerContext(shape=pre, **ctx_args)  # type: ignore[arg-type]
    dec_ctx = LayerContext(shape=dec, **ctx_args)  # type: ignore[arg-type]
    kv_layer = layer_kv_bytes(model, par, seqs, context)
    moe_index = {layer: i for i, layer in enumerate(model.moe_layers)} if model.moe is not None else {}
    # A layer's cost depends on the layer only through its kind (dense or MoE), its expert map and
    # its routing statistics: cost each kind once, then lay the kinds out over the layers.
    kind_of_layer = []
    first_layer: dict[tuple[bool, object, int], int] = {}
    for layer in range(model.num_layers):
        is_moe = layer in moe_index
        stats = routing.layers[moe_index[layer]] if routing is not None and is_moe else None
        kind = (is_moe, expert_maps.get(layer) if is_moe else None, id(stats))
        first_layer.setdefault(kind, layer)
        kind_of_layer.append(kind)
    per_kind: dict[tuple[bool, object, int], tuple[LayerTraffic | None, float, LayerPhaseCost, LayerPhaseCost]] = {}
    for kind, layer in first_layer.items():
        traffic = None
        distinct = 0
        if kind[0]:
            assert model.moe is not None
            stats = routing.layers[moe_index[layer]] if routing is not None else None
            traffic = layer_traffic(expert_maps[layer], pattern.domains, par.tp_moe, model.moe.top_k, routing=stats)
            if stats is None:
                traffic = with_imbalance(traffic, problem.params.expert_load_imbalance)
            distinct = max(traffic.gpu_distinct_experts)
        per_kind[kind] = (
            traffic,
            layer_weight_bytes(model, layer, par, distinct),
            _memo_phase_cost(problem, pre_ctx, layer, traffic),
            _memo_phase_cost(problem, dec_ctx, layer, traffic),
        )
    rows = [per_kind[kind] for kind in kind_of_layer]
    weights = [r[1] for r in rows]
    kvs = [kv_layer] * len(rows)
    pre_d = [r[2] for r in rows]
    dec_d = [r[3] for r in rows]
    pre_t = [c.time_s for c in pre_d]
    dec_t = [c.time_s for c in dec_d]
    traffic_list = [r[0] for r in rows]
    return LayerCosts(
        np.asarray(weights),
        np.asarray(kvs),
        np.asarray(pre_t),
        np.asarray(dec_t),
        tuple(traffic_list),
        tuple(pre_d),
        tuple(dec_d),
    )


_PHASE_COST_CACHE: dict[int, tuple[Problem, dict[tuple[object, ...], LayerPhaseCost]]] = {}


def _memo_phase_cost(problem: Problem, ctx: LayerContext, layer: int, traffic: LayerTraffic | None) -> LayerPhaseCost:
    """Layer cost memoised per problem: it depends on the degrees only through the stage's
    width split, the micro-batch shape and the placement, which many configurations share."""
    entry = _PHASE_COST_CACHE.get(id(problem))
    if entry is None or entry[0] is not problem:
        if len(_PHASE_COST_CACHE) > 8:
            _PHASE_COST_CACHE.clear()
        entry = (problem, {})
        _PHASE_COST_CACHE[id(problem)] = entry
    par = ctx.par
    key = (
        par.tp,
        par.dp_attn,
        par.ep,
        par.tp_moe,
        ctx.shape,
        ctx.tp_crosses_domain,
        ctx.stage_crosses_domain,
        ctx.model.is_moe_layer(layer),
        traffic,
    )
    cache = entry[1]
    if key not in cache:
        cache[key] = layer_phase_cost(ctx, layer, traffic)
    return cache[key]


def edge_costs(
    problem: Problem, par: Parallelism, expert_maps: ExpertMaps, routing: RoutingStats | None = None
) -> EdgeCosts:
    """(O9) Embedding and LM head, (C4) pipeline sends, (M4) activation workspace.

    The MoE workspace holds the busiest GPU's (token, expert) pairs: with ``routing``, from the
    statistics and the expert map by the (T3) local-first rule, else uniform."""
    model, hw, fabric, params = problem.model, problem.hardware, problem.fabric, problem.params
    h, vocab = model.hidden_size, model.vocab_size
    w_bytes = DTYPE_BYTES[model.precision.weights]
    a_bytes = DTYPE_BYTES[model.precision.activations]
    precision = COMPUTE_PRECISION[model.precision.weights]
    pre, dec = phase_shapes(problem, par)
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
        return gemm + gather

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
                    with_imbalance(
                        layer_traffic(m, tuple([0] * par.stage_width), par.tp_moe, moe.top_k),
                        params.expert_load_imbalance,
                    ).gpu_pairs_per_token
                )
                for m in set(expert_maps.values())
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
        embed_prefill_s=embed_s(pre),
        embed_decode_s=embed_s(dec),
        head_prefill_s=head_s(pre),
        head_decode_s=head_s(dec),
        send_prefill_s=send(pre, False),
        send_prefill_cross_s=send(pre, True),
        send_decode_s=send(dec, False),
        send_decode_cross_s=send(dec, True),
        workspace_bytes=workspace,
        logits_bytes=logits,
    )
