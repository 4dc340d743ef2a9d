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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from placer.placement.baselines import replicate
from placer.placement.data import LayerPlacementProblem, Placement
from placer.placement.metrics import max_over_mean
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


#: copy budgets tried by :func:`global_balanced` between one copy per expert and every slot
BUDGETS_TRIED = 6


def global_balanced(problem: LayerPlacementProblem, stop: Callable[[], bool] | None = None) -> Placement:
    """Balance only: copies by largest load per copy (at most one per rank), packed over every
    rank of the EP group (LPT with swaps, no duplicate on a rank); the best of several copy budgets.

    Filling every slot is not always best: with few slots per rank, the extra copies of cool
    experts must share ranks with the hot copies and raise the busiest rank. So budgets from one
    copy per expert up to every slot are tried and the least loaded busiest rank is kept (ties:
    fewer copies, which leave slots empty rather than hold a useless copy). Each candidate is
    scored by :func:`max_over_mean`, the balance the evaluator will see. ``stop`` (the command's
    deadline) is polled between budgets: the best budget so far is returned once it is set."""
    loads = problem.routing.loads
    ranks, slots = problem.num_ranks, problem.slots_per_rank
    # Pack over the ranks interleaved across nodes (first rank of every node, then the second...):
    # the packer breaks ties by index, so an expert's copies land on different nodes, and under
    # local-first serving each copy then draws an equal share (copies crowded on one node split
    # that node's own tokens among themselves while a lone copy elsewhere takes more).
    position = np.zeros(ranks, dtype=np.int64)
    seen: dict[int, int] = {}
    for r, node in enumerate(problem.rank_node):
        position[r] = seen.get(int(node), 0)
        seen[int(node)] = int(position[r]) + 1
    order = sorted(range(ranks), key=lambda r: (int(position[r]), int(problem.rank_node[r])))
    full = ranks * slots
    low = min(loads.size, full)
    budgets = sorted({int(round(b)) for b in np.linspace(low, full, BUDGETS_TRIED)} | {full})
    best: tuple[float, int, Placement] | None = None
    for budget in budgets:
        if best is not None and stop is not None and stop():
            break
        counts = replicate(loads, budget, max_copies=ranks)
        experts = np.repeat(np.arange(loads.size), counts)
        weights = np.repeat(loads / counts, counts)
        packs = pack_ranks(experts, weights, ranks, slots)
        by_rank: list[tuple[int, ...]] = [()] * ranks
        for k, pack in enumerate(packs):
            by_rank[order[k]] = tuple(sorted(int(experts[i]) for i in pack))
        placement = tuple(by_rank)
        busiest = max_over_mean(placement, problem)  # under local-first serving, as the evaluator prices it
        if best is None or busiest < best[0] * (1 - 1e-9):
            best = (busiest, budget, placement)
    assert best is not None
    return best[2]
