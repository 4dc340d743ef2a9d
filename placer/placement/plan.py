"""The placement step of ``placer solve``: place every MoE layer of a chosen plan, against the
baselines, on the instance's routing statistics (uniform when none)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from placer.placement.baselines import BASELINES
from placer.placement.data import LayerPlacementProblem
from placer.placement.layout import ep_rank_nodes, host_order, rank_to_node, tp_groups_inside_nodes
from placer.placement.metrics import PlacementMetrics, placement_metrics
from placer.placement.planner import LayerPlacement, place_layer
from placer.problem import Problem
from placer.routing import RoutingStats, routing_stats
from placer.schema import ExpertLayerMap, Plan

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
    backend: str = "cpsat",
    time_limit_s: float = 10.0,
    target: float = DEFAULT_TARGET,
    redundant_slots_per_gpu: int = 1,
    stats: RoutingStats | None = None,
) -> PlacementReport | None:
    """Place the plan's MoE layers (stage 0 of replica 0 gives the EP group's node pattern)."""
    model = problem.model
    if model.moe is None:
        return None
    started = time.perf_counter()
    par = plan.parallelism
    stats = stats or routing_stats(model, problem.routing)
    rank_node = ep_rank_nodes(par, problem.fabric)
    slots = -(-model.moe.num_experts // par.ep) + (redundant_slots_per_gpu if par.ep > 1 else 0)
    per_layer = max(0.05, time_limit_s / max(1, len(stats.layers)))
    placer, baselines = [], {name: [] for name in BASELINES}
    for layer in stats.layers:
        lp = LayerPlacementProblem(layer, rank_node, slots, stats.expert_group, stats.groups_per_token)
        placer.append(place_layer(lp, target, backend=backend, time_limit_s=per_layer))
        for name, method in BASELINES.items():
            baselines[name].append(placement_metrics(method(lp), lp))
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
    )
    if par.ep == 1:
        report.notes.append("ep = 1: every GPU holds all experts; there is no all-to-all to place")
    elif int(rank_node.max()) == 0:
        report.notes.append(
            "the EP group sits in one node: no cross-node traffic whatever the placement; placement only balances"
        )
    mine = report.summary([p.metrics for p in placer])["dedup_cross"]
    ref = report.summary(baselines["EPLB-style global"])["dedup_cross"]
    if int(rank_node.max()) > 0 and ref > 0 and (ref - mine) / ref < NO_GAIN_THRESHOLD:
        report.notes.append(
            "placement cannot reduce cross-node traffic for these statistics (routing is close to "
            "independent): every balanced placement sends about the same volume"
        )
    if stats.uniform:
        report.notes.append("no routing statistics: uniform, independent routing assumed")
    return report


def apply_to_plan(plan: Plan, report: PlacementReport) -> Plan:
    """The plan with the placer's expert map and rank-to-node map."""
    maps = [
        ExpertLayerMap(layer=layer, gpus=[list(r) for r in p.placement])
        for layer, p in zip(report.layers, report.placer, strict=True)
    ]
    return plan.model_copy(update={"expert_map": maps, "rank_to_node": report.rank_to_node})
