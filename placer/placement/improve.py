"""One layer placed by local search on the measured objective, seeded by EPLB's map.

Pipeline (docs/placement.md, "Local search"):

1. seed: EPLB hierarchical's map (:func:`placer.placement.baselines.eplb_hierarchical`: the
   declared groups packed onto nodes, copies inside them), its second copies on one GPU dropped;
2. node stage (:class:`placer.placement.nodesearch.NodeSearch`) under node caps loosened by the
   slack steps ``NODE_SLACK_STEPS``, then the node's copies packed onto its ranks (skipped with
   two slots or fewer per rank, where the packing, not the node loads, decides balance);
3. rank stage (:class:`placer.placement.search.RankSearch`) at the target itself: the ranks the
   packing left over the cap are repaired, and traffic moves that keep every rank under it are
   taken;
4. the first slack step whose map meets the target is kept; when none does, balance-first maps
   (EPLB global without its duplicates, LPT over every rank) seed the rank stage as well, and the
   most balanced map is kept; its status names the seed and says "over target".

Work is counted in units (elements of the search's delta arrays), never the clock: the same input
gives the same map on any machine; ``stop`` (a deadline or Ctrl-C) ends the stages early.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from placer.placement.balance import balance_lower_bound, global_balanced
from placer.placement.baselines import eplb_global, eplb_hierarchical
from placer.placement.data import LayerPlacementProblem, Placement, without_duplicates
from placer.placement.metrics import PlacementMetrics, max_over_mean, placement_metrics
from placer.placement.nodesearch import NodeSearch
from placer.placement.search import RankSearch, TrafficState, counts_from_placement, model_traces
from placer.routing.stats import LayerRouting

#: share of the node-level balance allowance tried in turn (1: the whole target allowance)
NODE_SLACK_STEPS = (1.0, 0.6, 0.3, 0.0)
#: share of the budget the first slack step may use, and the share kept for the balance-first seeds
FIRST_STEP_SHARE = 0.8
FALLBACK_SHARE = 0.25
#: work units per CPU second, measured on the 2-core CI machine (2.0-2.4e8 on DeepSeek-V3 layers at 64 GPUs;
#: on a loaded machine the wall time is a multiple of the CPU time)
UNITS_PER_S = 2e8


@dataclass(frozen=True)
class SearchResult:
    placement: Placement
    metrics: PlacementMetrics
    status: str  # "search" (from EPLB hierarchical's map), "search from EPLB global" or "search from LPT";
    # " over target" added when the target was not met (the most balanced map found is kept)
    search_traffic: float  # node-dedup copies/token on the search's tokens
    seed_traffic: float  # the same for EPLB hierarchical's map
    balance_bound: float  # (B1): no placement with these slots has a lower max/mean
    wall_s: float
    units: float
    budget_spent: bool  # the work budget (or the deadline) ended the search before it converged


def search_layer(
    problem: LayerPlacementProblem,
    target: float = 1.05,
    time_limit_s: float | None = 1.0,
    stop: Callable[[], bool] | None = None,
    seed: Placement | None = None,
) -> SearchResult:
    """Least-traffic map of one layer whose busiest rank is within ``target`` of the mean, from
    ``seed`` (default: EPLB hierarchical's map); ``time_limit_s`` is a work budget (``None``:
    until no move improves)."""
    problem.require_slots()
    started = time.perf_counter()
    floor = balance_lower_bound(problem.routing.loads, problem.num_ranks, problem.slots_per_rank).max_over_mean
    aim = max(target, floor)
    traces = model_traces(problem)
    mean = problem.routing.loads.sum() / problem.num_ranks
    rank_cap = mean * aim * (1 - 1e-9)
    budget = None if time_limit_s is None else max(0.0, time_limit_s) * UNITS_PER_S
    seed = without_duplicates(seed if seed is not None else eplb_hierarchical(problem))
    counts = counts_from_placement(seed, problem)
    units = 0.0
    best: tuple[tuple[int, float], Placement, float, str] | None = None

    def left() -> float | None:
        return None if budget is None else max(0.0, budget - units)

    # with two slots or fewer per rank the node's packing decides balance and the node stage's
    # caps cannot see it: the rank stage starts from the balance-first seeds instead
    steps = NODE_SLACK_STEPS if problem.slots_per_rank > 2 else ()
    state = TrafficState(problem, counts, traces)
    seed_traffic = state.traffic
    for step, slack in enumerate(steps):
        if step > 0 and stop is not None and stop():
            break
        node_cap = problem.ranks_per_node * mean * (1 + slack * (aim - 1))
        node = NodeSearch(problem, counts, traces, node_cap, rank_cap, like=state)
        state = node
        # the first step gets most of the budget (it usually meets the target); a quarter is kept
        # for the balance-first seeds in case no step does
        share = None if budget is None else max(0.0, (1 - FALLBACK_SHARE) * budget - units)
        share = None if share is None else share * (FIRST_STEP_SHARE if step == 0 else 1 / (len(steps) - step))
        node.run(None if share is None else share / 2, stop)
        units += node.units
        counts = node.cnt.copy()
        ranks = RankSearch(problem, node.placement(), traces, rank_cap, like=node)
        ranks.run(None if share is None else max(0.0, share - node.units), stop)
        units += ranks.units
        key = (0 if ranks.penalty() <= 0 else 1, ranks.traffic if ranks.penalty() <= 0 else ranks.max_over_mean())
        if best is None or key < best[0]:
            best = (key, ranks.placement(), ranks.traffic, "search")
        if key[0] == 0:
            break
    if best is None or best[0][0] != 0:
        # a stopped layer still gets the LPT map over every rank (a few packings, all copy budgets:
        # its first budget alone is one copy per expert) and no search; EPLB global's map only
        # while there is time
        balanced = [("search from LPT", lambda: global_balanced(problem))]
        balanced.append(("search from EPLB global", lambda: without_duplicates(eplb_global(problem))))
        for i, (name, make) in enumerate(balanced):
            if i > 0 and stop is not None and stop():
                break
            ranks = RankSearch(problem, make(), traces, rank_cap, like=state)
            share = left()
            ranks.run(None if share is None else share / (len(balanced) - i), stop)
            units += ranks.units
            key = (0 if ranks.penalty() <= 0 else 1, ranks.traffic if ranks.penalty() <= 0 else ranks.max_over_mean())
            if best is None or key < best[0]:
                best = (key, ranks.placement(), ranks.traffic, name)
    assert best is not None
    placement = best[1]
    status = best[3] + (" over target" if best[0][0] else "")
    metrics = placement_metrics(placement, problem)
    spent = (budget is not None and units >= budget) or (stop is not None and stop())
    return SearchResult(
        placement, metrics, status, best[2], seed_traffic, floor, time.perf_counter() - started, units, spent
    )


def worst_balance(placements: list[Placement], problems: list[LayerPlacementProblem]) -> float:
    """Worst layer's max/mean of ``placements`` on ``problems`` (e.g. a later window's)."""
    return max(max_over_mean(p, lp) for p, lp in zip(placements, problems, strict=True))


@dataclass(frozen=True)
class Migration:
    """A re-placement from the map in service under new statistics, moving at most K copies."""

    placement: Placement
    metrics: PlacementMetrics
    copies_moved: int  # expert copies written into a slot (each costs one expert's weights)
    wall_s: float


def migrate_layer(
    problem: LayerPlacementProblem,
    in_service: Placement,
    max_moves: int,
    target: float = 1.05,
    time_limit_s: float | None = 1.0,
    stop: Callable[[], bool] | None = None,
) -> Migration:
    """The map in service improved for ``problem``'s (new) statistics by the rank-level search
    with at most ``max_moves`` copies moved: the moves with the largest gain per sweep first,
    balance over ``target`` first (the penalty), then traffic. ``max_moves = 0`` keeps the map."""
    problem.require_slots()
    started = time.perf_counter()
    floor = balance_lower_bound(problem.routing.loads, problem.num_ranks, problem.slots_per_rank).max_over_mean
    mean = problem.routing.loads.sum() / problem.num_ranks
    ranks = RankSearch(problem, without_duplicates(in_service), model_traces(problem), mean * max(target, floor))
    ranks.moves_left = max(0, int(max_moves))
    if max_moves > 0:
        ranks.run(None if time_limit_s is None else time_limit_s * UNITS_PER_S, stop)
    placement = ranks.placement()
    return Migration(placement, placement_metrics(placement, problem), ranks.moved, time.perf_counter() - started)


def hedged_problem(problem: LayerPlacementProblem, windows: int = 4, shrink: float = 0.0) -> LayerPlacementProblem:
    """The layer with loads hedged against drift, for a map that must serve a later window: each
    expert's largest load over ``windows`` consecutive parts of the traces (a margin on the experts
    whose load moves; loads only: the loads), blended with the uniform load by ``shrink`` (a margin
    on every cold expert, which drift may heat), rescaled to the same total; the traces are kept
    for traffic."""
    routing = problem.routing
    loads = routing.loads
    if routing.traces is not None and routing.traces.shape[0] >= windows:
        parts = np.array_split(np.asarray(routing.traces), windows)
        per_part = np.array([np.bincount(p.ravel(), minlength=routing.num_experts) / p.shape[0] for p in parts])
        loads = per_part.max(axis=0)
    hedged = (1 - shrink) * loads / loads.sum() + shrink / loads.size
    hedged = hedged * routing.loads.sum()
    return dataclasses.replace(problem, routing=LayerRouting(hedged, routing.traces))
