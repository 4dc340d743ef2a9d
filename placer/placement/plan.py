"""The placement step of ``placer solve`` and ``placer place``: place every MoE layer of a chosen
plan, against the baselines, on the instance's routing statistics (uniform when none), and decide
the number of redundant slots per GPU (:mod:`placer.placement.slots`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from placer.costmodel.params import ffn_params
from placer.errors import InputError
from placer.evaluator import Evaluation
from placer.placement.balance import balance_lower_bound
from placer.placement.baselines import BASELINES
from placer.placement.data import LayerPlacementProblem, Placement
from placer.placement.improve import migrate_layer
from placer.placement.layout import ep_rank_nodes, host_order, rank_to_node, tp_groups_inside_nodes
from placer.placement.metrics import PlacementMetrics, placement_metrics
from placer.placement.nodemodel import NodeSolver
from placer.placement.planner import LayerPlacement, place_layer, place_layers
from placer.placement.slots import (
    PRICING_SHARE,
    REPORT_RESERVE,
    SlotCandidate,
    candidate_counts,
    choose,
    largest_fitting,
    price_candidate,
)
from placer.problem import Problem
from placer.routing import RoutingStats, uniform_stats
from placer.schema import DTYPE_BYTES, ExpertLayerMap, Plan

#: balance target of the placement (max/mean expert load per GPU); overridable per call
DEFAULT_TARGET = 1.05
#: relative traffic difference below which the report says placement cannot reduce traffic
NO_GAIN_THRESHOLD = 0.02


@dataclass
class PlacementReport:
    stats_source: str
    uniform: bool
    target: float
    slots_per_rank: int
    layers: list[int]
    placer: list[LayerPlacement]
    baselines: dict[str, list[PlacementMetrics]]
    host_order: list[str]
    rank_to_node: list[int]
    tp_inside_nodes: bool
    wall_s: float
    notes: list[str] = field(default_factory=list)
    redundant_per_gpu: int = 0
    slot_trade: list[SlotCandidate] = field(default_factory=list)
    memory_max_redundant: int | None = None  # most redundant slots per GPU the memory holds
    time_limit_s: float | None = None
    placed_evaluation: Evaluation | None = None  # the evaluator's figures of the placed plan

    @property
    def timed_out_layers(self) -> int:
        return sum(1 for p in self.placer if p.timed_out)

    @property
    def balance_bound(self) -> float:
        """(B1) worst layer: no placement with these slots is more balanced."""
        return max((p.balance_bound for p in self.placer), default=1.0)

    def summary(self, metrics: list[PlacementMetrics]) -> dict[str, float]:
        return {
            "max_over_mean_worst": max(m.max_over_mean for m in metrics),
            "dedup_cross": float(np.mean([m.dedup_cross for m in metrics])),
            "plain_cross": float(np.mean([m.plain_cross for m in metrics])),
            "wasted_slots": float(sum(m.wasted_slots for m in metrics)),
            "empty_slots": float(sum(m.empty_slots for m in metrics)),
        }

    @property
    def gap(self) -> float | None:
        gaps = [p.gap for p in self.placer if p.gap is not None]
        return max(gaps) if gaps else None


def place_plan(
    problem: Problem,
    plan: Plan,
    node_solver: NodeSolver | None = None,
    time_limit_s: float = 10.0,
    target: float = DEFAULT_TARGET,
    redundant_slots_per_gpu: int | tuple[int, ...] | None = None,
    stats: RoutingStats | None = None,
    stop: Callable[[], bool] | None = None,
    remaining_s: Callable[[], float] | None = None,
    method: str = "search",
    in_service: list[ExpertLayerMap] | None = None,
    max_moves: int = 0,
) -> PlacementReport | None:
    """Place the plan's MoE layers (stage 0 of replica 0 gives the EP group's node pattern).

    ``redundant_slots_per_gpu``: one count, or the counts to try (``None``: the default bounded
    candidates that fit in memory); each is placed, priced by the evaluator and the best by the
    instance's objective terms is kept. ``time_limit_s`` covers the whole call: the candidates,
    layers and steps share it (``REPORT_RESERVE`` of it is kept for the baselines and pricing).
    ``node_solver``: the exact solver of the node models (``None``: the greedy search alone); the
    caller picks it by name with :func:`placer.backends.placement.node_solver`. ``stop`` (the
    command's deadline or Ctrl-C, polled between steps) cuts the work short: no further slot-count
    candidate, and each layer left gets the greedy construction of its first step only.
    ``remaining_s`` (seconds left before that deadline) paces the layers: a layer stops early when
    the time left would not cover the layers after it (:func:`placement.planner.place_layers`).
    ``method``: "search" (local search seeded by EPLB's map; ``node_solver`` unused) or "model"
    (the node-model ladder with ``node_solver``), see :func:`placement.planner.place_layer`.
    ``in_service``: the expert maps serving now (one per MoE layer); each layer is then re-placed
    from its map moving at most ``max_moves`` expert copies (:func:`placement.improve.migrate_layer`)
    with the map's slots per rank, and the notes give the copies and bytes moved."""
    model = problem.model
    if model.moe is None:
        return None
    started = time.perf_counter()
    # Deterministic budgets (no decision reads the clock): the limit less the shares kept for the
    # baselines and for pricing, split evenly over the slot-count candidates, then the layers.
    work_s = time_limit_s * (1 - REPORT_RESERVE) * (1 - PRICING_SHARE)
    par = plan.parallelism
    moe = model.moe
    stats = stats or problem.routing_stats or uniform_stats(moe.num_experts, moe.top_k, len(model.moe_layers))
    rank_node = ep_rank_nodes(par, problem.fabric)
    base = -(-model.moe.num_experts // par.ep)
    memory_max = largest_fitting(problem, plan) if par.ep > 1 else 0
    counts = candidate_counts(redundant_slots_per_gpu, memory_max, par.ep, model.moe.num_experts)
    trade: list[SlotCandidate] = []
    runs: dict[int, list[LayerPlacement]] = {}
    evaluations: dict[int, Evaluation] = {}
    warm: list[np.ndarray | None] = [None] * len(stats.layers)
    share = work_s / max(1, len(counts))
    moved = None
    if in_service is not None:
        maps = _in_service_maps(in_service, model.moe_layers, par.ep, moe.num_experts)
        r = max(len(rank) for m in maps for rank in m) - base
        layers, moved = _migrated_layers(stats, rank_node, base + r, target, maps, max_moves, work_s, stop)
        runs[r] = layers
        candidate, evaluations[r] = price_candidate(
            problem, _with_map(plan, model.moe_layers, layers, par, problem), r, base, layers
        )
        trade.append(candidate)
        counts = []
    for i, r in enumerate(counts):
        if i > 0 and (share < MIN_SECONDS_PER_LAYER * len(stats.layers) or (stop is not None and stop())):
            trade.append(SlotCandidate(r, base + r, placed=False, reason="skipped: time limit"))
            continue
        layers = _place_layers(
            problem, stats, rank_node, base + r, target, node_solver, share, warm, stop, remaining_s, method
        )
        warm = [p.node_assign for p in layers]
        runs[r] = layers
        candidate, evaluations[r] = price_candidate(
            problem, _with_map(plan, model.moe_layers, layers, par, problem), r, base, layers
        )
        trade.append(candidate)
    chosen = choose(problem, trade)
    slots = base + chosen.redundant_per_gpu
    placer = runs[chosen.redundant_per_gpu]
    baselines: dict[str, list[PlacementMetrics]] = {name: [] for name in BASELINES}
    # Uniform routing gives every layer the same statistics, so each baseline is placed once and
    # its metrics serve every layer (as the placer's own placement does in _place_layers).
    distinct = stats.layers[:1] if stats.uniform else stats.layers
    for layer in distinct:
        lp = LayerPlacementProblem(layer, rank_node, slots, stats.expert_group, stats.groups_per_token)
        for name, method in BASELINES.items():
            baselines[name].append(placement_metrics(method(lp), lp))
    if stats.uniform:
        baselines = {name: rows * len(stats.layers) for name, rows in baselines.items()}
    report = PlacementReport(
        stats.source,
        stats.uniform,
        target,
        slots,
        model.moe_layers,
        placer,
        baselines,
        host_order(par, problem.fabric),
        rank_to_node(par, problem.fabric),
        tp_groups_inside_nodes(par, problem.fabric),
        time.perf_counter() - started,
        redundant_per_gpu=chosen.redundant_per_gpu,
        slot_trade=trade,
        memory_max_redundant=memory_max,
        time_limit_s=time_limit_s,
        placed_evaluation=evaluations[chosen.redundant_per_gpu],
    )
    _add_notes(report, par.ep, rank_node, stats)
    if moved is not None:
        copy_bytes = ffn_params(model.hidden_size, moe.expert_ffn_size, moe.gated, moe.expert_bias)
        copy_bytes *= DTYPE_BYTES[model.precision.of("experts")] / par.tp_moe
        report.notes.insert(
            0,
            f"re-placed from the map in service with at most {max_moves} copies moved per layer: {sum(moved)} "
            f"copies moved in all ({sum(moved) * copy_bytes / 1e9:.2f} GB of expert weights per GPU shard, "
            f"{copy_bytes / 1e6:.1f} MB each)",
        )
    return report


def _in_service_maps(maps: list[ExpertLayerMap], layers: list[int], ep: int, experts: int) -> list[Placement]:
    """The maps in service, one per MoE layer in order; InputError naming what does not fit."""
    by_layer = {m.layer: m.gpus for m in maps}
    problems = []
    missing = [layer for layer in layers if layer not in by_layer]
    if missing:
        problems.append(("from.expert_map", f"no map for MoE layers {missing[:5]}"))
    out = []
    for layer in layers:
        gpus = by_layer.get(layer)
        if gpus is None:
            continue
        if len(gpus) != ep:
            problems.append(("from.expert_map", f"layer {layer}: {len(gpus)} ranks, the plan has ep = {ep}"))
        if any(not 0 <= e < experts for rank in gpus for e in rank):
            problems.append(("from.expert_map", f"layer {layer}: expert ids outside 0..{experts - 1}"))
        if len({e for rank in gpus for e in rank}) < experts:
            problems.append(("from.expert_map", f"layer {layer}: not every expert has a slot"))
        out.append(tuple(tuple(rank) for rank in gpus))
    if problems:
        raise InputError(problems)
    return out


def _migrated_layers(stats, rank_node, slots, target, maps, max_moves, work_s, stop):  # type: ignore[no-untyped-def]
    """Each layer re-placed from its map in service (at most ``max_moves`` copies moved)."""
    out, moved = [], []
    for layer, current in zip(stats.layers, maps, strict=True):
        lp = LayerPlacementProblem(layer, rank_node, slots, stats.expert_group, stats.groups_per_token)
        result = migrate_layer(lp, current, max_moves, target, work_s / len(maps), stop)
        bound = balance_lower_bound(layer.loads, lp.num_ranks, slots).max_over_mean
        status = f"migrated ({result.copies_moved} copies)"
        out.append(LayerPlacement(result.placement, result.metrics, status, 0.0, None, result.wall_s, bound))
        moved.append(result.copies_moved)
    return out, moved


#: share of a layer's time slice left for the balance-only fallback after the ladder
FALLBACK_SHARE = 0.25

#: least seconds per layer worth starting another slot-count candidate with (one greedy step)
MIN_SECONDS_PER_LAYER = 0.02


def _place_layers(
    problem, stats, rank_node, slots, target, node_solver, budget_s, warm, stop=None, remaining_s=None, method="search"
):  # type: ignore[no-untyped-def]
    """Every layer with ``slots`` per rank, each with an equal share of ``budget_s`` of work
    (:func:`~placer.placement.planner.place_layers`, paced by ``remaining_s`` when given).

    Without statistics every layer has the same uniform routing, so one placement serves all."""
    n = len(stats.layers)
    if stats.uniform and n > 0:
        lp = LayerPlacementProblem(stats.layers[0], rank_node, slots, stats.expert_group, stats.groups_per_token)
        return [place_layer(lp, target, node_solver, time_limit_s=budget_s, warm=warm[0], stop=stop, method=method)] * n
    problems = [
        LayerPlacementProblem(layer, rank_node, slots, stats.expert_group, stats.groups_per_token)
        for layer in stats.layers
    ]
    return place_layers(problems, target, node_solver, budget_s, stop, remaining_s, warm, method)


def _with_map(plan: Plan, layers: list[int], placed: list[LayerPlacement], par, problem: Problem) -> Plan:  # type: ignore[no-untyped-def]
    if par.ep == 1:
        return plan
    maps = [
        ExpertLayerMap(layer=layer, gpus=[list(r) for r in p.placement])
        for layer, p in zip(layers, placed, strict=True)
    ]
    return plan.model_copy(update={"expert_map": maps, "rank_to_node": rank_to_node(par, problem.fabric)})


def _add_notes(report: PlacementReport, ep: int, rank_node: np.ndarray, stats: RoutingStats) -> None:
    placer, baselines = report.placer, report.baselines
    if ep == 1:
        report.notes.append("ep = 1: every GPU holds all experts; there is no all-to-all to place")
    elif int(rank_node.max()) == 0:
        report.notes.append(
            "the EP group sits in one node: no cross-node traffic whatever the placement; placement only balances"
        )
    mine = report.summary([p.metrics for p in placer])["dedup_cross"]
    ref = report.summary(baselines["EPLB global"])["dedup_cross"]
    if int(rank_node.max()) > 0 and ref > 0 and (ref - mine) / ref < NO_GAIN_THRESHOLD:
        report.notes.append(
            "placement cannot reduce cross-node traffic for these statistics (routing is close to "
            "independent): every balanced placement sends about the same volume"
        )
    worst = max(p.metrics.max_over_mean for p in placer)
    if ep > 1 and worst > report.target + 1e-9:
        layer = max(placer, key=lambda p: p.metrics.max_over_mean)
        report.notes.append(
            f"max/mean {report.target:g} not reached with {report.slots_per_rank} slots per rank: best found "
            f"{worst:.3f} (worst layer); bound (B1) {layer.balance_bound:.3f} from the hottest load per copy allowed; "
            "the rest is packing copies of unequal load into few slots per rank"
        )
    spilled = sum(p.spilled_experts for p in placer)
    searched = any(p.status.startswith("search") for p in placer)
    if spilled:
        why = "local-first serving keeps their tokens in the node" if searched else "more than one node's load"
        report.notes.append(f"{spilled} expert-layers have copies on several nodes ({why})")
    if report.timed_out_layers:
        what = "local searches were cut short by" if searched else "node models were not proven optimal within"
        report.notes.append(
            f"{report.timed_out_layers} layers' {what} their share of the {report.time_limit_s:g} s work budget "
            "(or the deadline): the best placement found is returned"
        )
    statuses: dict[str, int] = {}
    for p in placer:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    if searched:
        report.notes.append("layers by method: " + ", ".join(f"{n} {s}" for s, n in statuses.items()))
    skipped = [c.redundant_per_gpu for c in report.slot_trade if not c.placed]
    if skipped:
        report.notes.append(f"redundant-slot counts {skipped} not tried: time limit")
    if stats.uniform:
        report.notes.append("no routing statistics: uniform, independent routing assumed")


def apply_to_plan(plan: Plan, report: PlacementReport) -> Plan:
    """The plan with the placer's expert map and rank-to-node map."""
    maps = [
        ExpertLayerMap(layer=layer, gpus=[list(r) for r in p.placement])
        for layer, p in zip(report.layers, report.placer, strict=True)
    ]
    return plan.model_copy(update={"expert_map": maps, "rank_to_node": report.rank_to_node})
