"""Balance with a given number of slots: the best max/mean any placement can reach, and a
balance-only placement over the whole EP group (the fallback when the topology-aware ladder
cannot reach the target).

Lower bound (docs/placement.md, (B1)): every selection of expert e is served by one of its c_e
copies, so its busiest copy carries at least ``p_e / c_e``, and a rank carries at least its
busiest copy. With R ranks of S slots, at most one copy of an expert per rank,

    max/mean >= min { T >= 1 : sum_e max(1, ceil(p_e / (T * mean))) <= R * S,
                               ceil(p_e / (T * mean)) <= R for every e }          [-]

with ``mean = sum_e p_e / R`` [selections/token/rank]. It ignores packing (copies of unequal size
sharing ranks), so it is reachable only approximately; it names the expert that sets it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placer.placement.baselines import replicate
from placer.placement.data import LayerPlacementProblem, Placement
from placer.placement.packing import pack_ranks


@dataclass(frozen=True)
class BalanceBound:
    """(B1): no placement with these slots has a lower max/mean; why (expert, copies allowed)."""

    max_over_mean: float
    expert: int  # the expert whose load per copy sets the bound (-1: the bound is 1)
    copies: int  # copies that expert gets at the bound
    load_over_mean: float  # that expert's load over the mean rank load


def balance_lower_bound(loads: np.ndarray, ranks: int, slots_per_rank: int) -> BalanceBound:
    total = float(loads.sum())
    if total <= 0 or loads.size == 0:
        return BalanceBound(1.0, -1, 1, 0.0)
    mean = total / ranks
    rel = loads / mean  # [E] load over the mean rank load
    budget = ranks * slots_per_rank

    def fits(t: float) -> bool:
        need = np.maximum(1, np.ceil(rel / t - 1e-12))
        return bool(need.max() <= ranks and need.sum() <= budget)

    # the least feasible T is 1 or one of the values p_e / (c mean) where a ceil steps
    candidates = np.unique(np.concatenate([[1.0], (rel[:, None] / np.arange(1, ranks + 1)[None, :]).ravel()]))
    candidates = candidates[candidates >= 1.0]
    lo, hi = 0, candidates.size - 1
    if not fits(float(candidates[hi])):
        return BalanceBound(float("inf"), -1, 0, float(rel.max()))
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(float(candidates[mid])):
            hi = mid
        else:
            lo = mid + 1
    t = float(candidates[lo])
    if t <= 1.0 + 1e-12:
        return BalanceBound(1.0, -1, 1, float(rel.max()))
    copies = np.maximum(1, np.ceil(rel / t - 1e-12)).astype(np.int64)
    expert = int(np.argmax(rel / copies))
    return BalanceBound(t, expert, int(copies[expert]), float(rel[expert]))


def global_balanced(problem: LayerPlacementProblem) -> Placement:
    """Balance only: copies by largest load per copy over all slots (at most one per rank), then
    packed over every rank of the EP group (LPT with swaps, no duplicate on a rank)."""
    loads = problem.routing.loads
    counts = replicate(loads, problem.num_ranks * problem.slots_per_rank, max_copies=problem.num_ranks)
    experts = np.repeat(np.arange(loads.size), counts)
    weights = np.repeat(loads / counts, counts)
    packs = pack_ranks(experts, weights, problem.num_ranks, problem.slots_per_rank)
    return tuple(tuple(sorted(int(experts[i]) for i in pack)) for pack in packs)
