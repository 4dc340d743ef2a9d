"""Baseline placements, for comparison in the report (written from the published ideas).

* contiguous: rank r holds experts [r*E/R, (r+1)*E/R); redundant slots stay empty.
* round-robin: expert e on rank e mod R; redundant slots stay empty.
* balanced packer in the style of DeepSeek's EPLB:
  - replicate: hand the redundant slots one at a time to the expert with the largest load per
    copy;
  - pack: copies in decreasing load, each onto the least-loaded rank with a free slot. Like
    EPLB, it does not check whether that rank already holds the expert, so a redundant slot can
    be wasted on a second copy on one rank;
  - global: replicate and pack over the whole EP group (balance only);
  - hierarchical: first pack whole expert groups onto nodes (equal group counts per node,
    balanced by group load), then replicate and pack inside each node. Used only when the groups
    divide evenly over the nodes; otherwise it is the global packer, as in EPLB.
"""

from __future__ import annotations

import numpy as np

from placer.placement.data import LayerPlacementProblem, Placement


def contiguous(problem: LayerPlacementProblem) -> Placement:
    per_rank = -(-problem.num_experts // problem.num_ranks)
    return tuple(
        tuple(range(r * per_rank, min(problem.num_experts, (r + 1) * per_rank))) for r in range(problem.num_ranks)
    )


def round_robin(problem: LayerPlacementProblem) -> Placement:
    return tuple(tuple(range(r, problem.num_experts, problem.num_ranks)) for r in range(problem.num_ranks))


def replicate(loads: np.ndarray, slots: int, max_copies: int | None = None) -> np.ndarray:
    """Copies per expert: one each, then each extra slot to the largest load per copy (at most
    ``max_copies`` copies of one expert; slots beyond that stay empty)."""
    counts = np.ones(loads.size, dtype=np.int64)
    if loads.size == 0:
        return counts
    for _ in range(max(0, slots - loads.size)):
        per_copy = np.where(counts < (max_copies or slots), loads / counts, -np.inf)
        best = int(np.argmax(per_copy))
        if not np.isfinite(per_copy[best]):
            break
        counts[best] += 1
    return counts


def balanced_pack(weights: np.ndarray, bins: int, capacity: int) -> list[list[int]]:
    """Items in decreasing weight, each into the lightest bin that has room (ties: lowest index)."""
    packs: list[list[int]] = [[] for _ in range(bins)]
    totals = np.zeros(bins)
    for item in np.argsort(-weights, kind="stable"):
        room = np.array([len(p) < capacity for p in packs])
        target = int(np.argmin(np.where(room, totals, np.inf)))
        packs[target].append(int(item))
        totals[target] += weights[item]
    return packs


def _replicate_and_pack(
    experts: np.ndarray, loads: np.ndarray, ranks: list[int], slots_per_rank: int
) -> dict[int, list[int]]:
    counts = replicate(loads[experts], len(ranks) * slots_per_rank)
    items = np.repeat(experts, counts)
    weights = np.repeat(loads[experts] / counts, counts)
    packs = balanced_pack(weights, len(ranks), slots_per_rank)
    return {rank: [int(items[i]) for i in pack] for rank, pack in zip(ranks, packs, strict=True)}


def eplb_global(problem: LayerPlacementProblem) -> Placement:
    loads = problem.routing.loads
    result = _replicate_and_pack(
        np.arange(problem.num_experts), loads, list(range(problem.num_ranks)), problem.slots_per_rank
    )
    return tuple(tuple(result[r]) for r in range(problem.num_ranks))


def eplb_hierarchical(problem: LayerPlacementProblem) -> Placement:
    group = problem.expert_group
    nodes = problem.num_nodes
    if group is None:
        group = np.arange(problem.num_experts)  # singleton groups
    num_groups = int(group.max()) + 1
    per_node = problem.ranks_per_node
    if num_groups % nodes or len(set(per_node.tolist())) > 1:
        return eplb_global(problem)
    loads = problem.routing.loads
    group_load = np.bincount(group, weights=loads, minlength=num_groups)
    node_groups = balanced_pack(group_load, nodes, num_groups // nodes)
    result: dict[int, list[int]] = {}
    for node, groups in enumerate(node_groups):
        experts = np.flatnonzero(np.isin(group, groups))
        ranks = [int(r) for r in np.flatnonzero(problem.rank_node == node)]
        result.update(_replicate_and_pack(experts, loads, ranks, problem.slots_per_rank))
    return tuple(tuple(result[r]) for r in range(problem.num_ranks))


BASELINES = {
    "contiguous": contiguous,
    "round-robin": round_robin,
    "EPLB-style hierarchical": eplb_hierarchical,
    "EPLB-style global": eplb_global,
}
