"""Place every MoE layer: copies per expert, copies to nodes (greedy, then an exact backend),
node copies to ranks; then measure. The backends are imported lazily (only they import solvers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from placer.placement.baselines import replicate
from placer.placement.data import LayerPlacementProblem, Placement
from placer.placement.greedy import greedy_assign
from placer.placement.metrics import PlacementMetrics, placement_metrics
from placer.placement.nodemodel import NodeModel, build_node_model
from placer.placement.packing import pack_ranks

#: node-level share of the balance allowance tried in turn until the ranks meet the target
NODE_SLACK_STEPS = (0.8, 0.5, 0.2, 0.0)


@dataclass(frozen=True)
class NodeSolution:
    """What a backend returns for the node-level model (objective: kept weight, maximised)."""

    assign: np.ndarray
    status: str  # "optimal", "feasible", "hint" (solver found nothing better than the warm start)
    objective: float
    bound: float | None
    wall_s: float


@dataclass(frozen=True)
class LayerPlacement:
    placement: Placement
    metrics: PlacementMetrics
    status: str
    objective: float  # kept excess co-activation weight (node model)
    bound: float | None
    wall_s: float

    @property
    def gap(self) -> float | None:
        if self.bound is None:
            return None
        if self.bound <= 1e-12:
            return 0.0
        return max(0.0, (self.bound - self.objective) / self.bound)


def solve_node_model(
    model: NodeModel, hint: np.ndarray, backend: str | None, time_limit_s: float, workers: int = 1, seed: int = 0
) -> NodeSolution:
    if backend is None or model.num_nodes == 1 or time_limit_s <= 0:
        return NodeSolution(hint, "greedy", model.kept(hint), None, 0.0)
    if backend == "cpsat":
        from placer.backends.cpsat.placement import solve_node_model as run
    elif backend == "milp":
        from placer.backends.milp.placement import solve_node_model as run
    else:
        raise ValueError(f"placement backend {backend!r}: choose cpsat or milp")
    return run(model, hint, time_limit_s=time_limit_s, workers=workers, seed=seed)


def assemble(problem: LayerPlacementProblem, model: NodeModel, assign: np.ndarray) -> Placement:
    """Pack each node's copies onto its ranks."""
    ranks: dict[int, list[int]] = {}
    loads = problem.routing.loads
    for node in range(problem.num_nodes):
        homed = np.flatnonzero(assign[:, node])
        node_ranks = [int(r) for r in np.flatnonzero(problem.rank_node == node)]
        counts = replicate(loads[homed], len(node_ranks) * problem.slots_per_rank, max_copies=len(node_ranks))
        experts = np.repeat(homed, counts)
        weights = np.repeat(loads[homed] / counts, counts)
        packs = pack_ranks(experts, weights, len(node_ranks), problem.slots_per_rank)
        for rank, pack in zip(node_ranks, packs, strict=True):
            ranks[rank] = sorted(int(experts[i]) for i in pack)
    return tuple(tuple(ranks[r]) for r in range(problem.num_ranks))


def place_layer(
    problem: LayerPlacementProblem,
    target_max_over_mean: float = 1.05,
    backend: str | None = "cpsat",
    time_limit_s: float = 1.0,
    workers: int = 1,
    seed: int = 0,
) -> LayerPlacement:
    """Least-traffic placement of one layer whose busiest rank is within ``target`` of the mean,
    or the best-balanced one found when the target cannot be met."""
    started = time.perf_counter()
    best: LayerPlacement | None = None
    for slack in NODE_SLACK_STEPS:
        model = build_node_model(problem, target_max_over_mean, node_slack=slack)
        hint = greedy_assign(model)
        node = solve_node_model(model, hint, backend, time_limit_s, workers, seed)
        placement = assemble(problem, model, node.assign)
        metrics = placement_metrics(placement, problem)
        # every edge kept is a valid bound on the kept weight; the solver's bound may be tighter
        bound = float(model.edge_weight.sum()) if model.num_nodes > 1 else node.objective
        if node.bound is not None:
            bound = min(bound, node.bound)
        candidate = LayerPlacement(placement, metrics, node.status, node.objective, bound, 0.0)
        if best is None or _better(candidate, best, target_max_over_mean):
            best = candidate
        if metrics.max_over_mean <= target_max_over_mean + 1e-9:
            break
    assert best is not None
    return LayerPlacement(
        best.placement, best.metrics, best.status, best.objective, best.bound, time.perf_counter() - started
    )


def _better(a: LayerPlacement, b: LayerPlacement, target: float) -> bool:
    a_ok = a.metrics.max_over_mean <= target + 1e-9
    b_ok = b.metrics.max_over_mean <= target + 1e-9
    if a_ok != b_ok:
        return a_ok
    if not a_ok:
        return a.metrics.max_over_mean < b.metrics.max_over_mean
    return a.metrics.dedup_cross < b.metrics.dedup_cross
