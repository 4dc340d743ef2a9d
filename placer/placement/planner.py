"""Place every MoE layer: copies per expert, copies to nodes (greedy, then an exact backend),
node copies to ranks; then measure. The backends are imported lazily (only they import solvers).

One layer tries a short ladder of (spill level, node slack) steps until the busiest rank meets the
balance target; the layer's time limit is a deadline shared by the steps (each solver call gets the
time left over the steps left), so a layer never runs past it: when time runs out the best
placement found so far is returned, with its gap, and ``timed_out`` set.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from placer.placement.balance import balance_lower_bound, global_balanced
from placer.placement.baselines import eplb_global, replicate
from placer.placement.data import LayerPlacementProblem, Placement, without_duplicates
from placer.placement.greedy import greedy_assign
from placer.placement.metrics import PlacementMetrics, placement_metrics
from placer.placement.nodemodel import NodeModel, build_node_model, node_copies
from placer.placement.packing import pack_ranks

#: node-level share of the balance allowance tried in turn until the ranks meet the target
NODE_SLACK_STEPS = (0.8, 0.5, 0.2, 0.0)
#: spill levels (:func:`placer.placement.nodemodel.node_copies`) tried in turn: experts in one
#: home node first (most traffic saved), then spread over the fewest nodes balance needs
SPILL_LEVELS = (0, 1)
#: share of a solver step's time slice handed to the solver; the rest pays for the greedy warm
#: start, packing and metrics of that step (measured: they take 20-40% of a 0.2 s slice on ep64)
SOLVER_SHARE = 0.6
#: time kept for each later step when the greedy runs alone (one greedy pass on ep64: ~20 ms)
MIN_STEP_S = 0.02


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
    balance_bound: float = 1.0  # no placement with these slots has a lower max/mean ([-])
    spilled_experts: int = 0  # experts homed on more than one node
    timed_out: bool = False  # the deadline cut the step ladder short
    node_assign: np.ndarray | None = None  # [E, N] node homes (warm start for another slot count)

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
    """Pack each node's copies onto its ranks: a node copy of expert e carries p_e / m_e and is
    replicated over the node's ranks by largest load per copy."""
    ranks: dict[int, list[int]] = {}
    for node in range(problem.num_nodes):
        homed = np.flatnonzero(assign[:, node])
        node_ranks = [int(r) for r in np.flatnonzero(problem.rank_node == node)]
        share = model.copy_load[homed]
        counts = replicate(share, len(node_ranks) * problem.slots_per_rank, max_copies=len(node_ranks))
        experts = np.repeat(homed, counts)
        weights = np.repeat(share / counts, counts)
        packs = pack_ranks(experts, weights, len(node_ranks), problem.slots_per_rank)
        for rank, pack in zip(node_ranks, packs, strict=True):
            ranks[rank] = sorted(int(experts[i]) for i in pack)
    return tuple(tuple(ranks[r]) for r in range(problem.num_ranks))


def _steps(problem: LayerPlacementProblem, aim: float) -> list[tuple[int, float]]:
    """(spill, slack) ladder. A spill level is skipped when it homes every expert as the previous
    one, or when one node copy alone exceeds a node's largest cap (no slack can then balance it);
    the last level is always kept, so the ladder is never empty."""
    steps, seen = [], []
    loads = problem.routing.loads
    node_cap = problem.ranks_per_node.min() * loads.sum() / problem.num_ranks
    node_cap *= 1 + max(NODE_SLACK_STEPS) * (aim - 1)
    for spill in SPILL_LEVELS:
        copies = node_copies(problem, spill)
        if any(np.array_equal(copies, c) for c in seen):
            continue
        if spill != SPILL_LEVELS[-1] and (loads / copies).max() > node_cap + 1e-12:
            continue
        seen.append(copies)
        steps += [(spill, slack) for slack in NODE_SLACK_STEPS]
    return steps


def place_layer(
    problem: LayerPlacementProblem,
    target_max_over_mean: float = 1.05,
    backend: str | None = "cpsat",
    time_limit_s: float = 1.0,
    workers: int = 1,
    seed: int = 0,
    warm: np.ndarray | None = None,
) -> LayerPlacement:
    """Least-traffic placement of one layer whose busiest rank is within ``target`` of the mean,
    or the best-balanced one found when the target cannot be met.

    ``time_limit_s`` bounds the whole layer (a deadline over the steps); ``warm`` is a node
    assignment from another slot count, used as the hint where it fits the step's model. When the
    slots cannot reach the target (:func:`balance_lower_bound`), the steps aim at the bound."""
    started = time.perf_counter()
    deadline = started + max(0.0, time_limit_s)
    floor = balance_lower_bound(problem.routing.loads, problem.num_ranks, problem.slots_per_rank)
    aim = max(target_max_over_mean, floor.max_over_mean)
    best: LayerPlacement | None = None
    steps = _steps(problem, aim)
    timed_out = False
    for i, (spill, slack) in enumerate(steps):
        left = deadline - time.perf_counter()
        if best is not None and left <= 0:
            timed_out = True
            break
        left = max(0.0, deadline - time.perf_counter())
        slice_s = left / (len(steps) - i)
        model = build_node_model(problem, aim, node_slack=slack, spill=spill)
        # with a solver, the warm start gets the part of the slice the solver does not; without,
        # the greedy may use the time left but a minimal slice per later step (usually the first
        # step meets the target and the later ones never run)
        solver_runs = backend is not None and model.num_nodes > 1
        greedy_s = slice_s * (1 - SOLVER_SHARE) if solver_runs else left - MIN_STEP_S * (len(steps) - i - 1)
        hint = greedy_assign(model, deadline=time.perf_counter() + max(0.0, greedy_s))
        if warm is not None and model.feasible(warm) and model.kept(warm) > model.kept(hint):
            hint = warm
        solver_s = min(slice_s * SOLVER_SHARE, deadline - time.perf_counter())
        node = solve_node_model(model, hint, backend, solver_s, workers, seed)
        placement = assemble(problem, model, node.assign)
        metrics = placement_metrics(placement, problem)
        # every edge kept is a valid bound on the kept weight; the solver's bound may be tighter
        bound = model.total_weight() if model.num_nodes > 1 else node.objective
        if node.bound is not None:
            bound = min(bound, node.bound)
        spilled = int((model.copies > 1).sum())
        candidate = LayerPlacement(
            placement,
            metrics,
            node.status,
            node.objective,
            bound,
            0.0,
            floor.max_over_mean,
            spilled,
            False,
            node.assign,
        )
        if best is None or _better(candidate, best, aim):
            best = candidate
        if metrics.max_over_mean <= aim + 1e-9:
            break
    assert best is not None
    if best.metrics.max_over_mean > aim + 1e-9:
        best = _balance_fallback(problem, best, floor.max_over_mean, time.perf_counter() < deadline)
    return dataclasses.replace(best, wall_s=time.perf_counter() - started, timed_out=timed_out)


def _balance_fallback(
    problem: LayerPlacementProblem, best: LayerPlacement, floor: float, search: bool
) -> LayerPlacement:
    """Balance-only placements over the whole EP group (no traffic term), kept when the ladder's
    best is less balanced: LPT with swaps and no duplicates, and EPLB's global rule with its
    duplicate copies dropped (a second copy on a rank serves nothing, so balance and traffic are
    unchanged). So placer is never less balanced than the EPLB-style global packer at equal slots.
    Both run even past the deadline: the overrun is one balance-only packing per layer."""
    del search  # the balance-only packer is cheap (~0.1 s per layer of 64 ranks): always run it
    options = [global_balanced(problem), without_duplicates(eplb_global(problem))]
    for placement in options:
        metrics = placement_metrics(placement, problem)
        if metrics.max_over_mean < best.metrics.max_over_mean - 1e-12:
            best = LayerPlacement(placement, metrics, "balance-only", 0.0, None, 0.0, floor, 0, False, None)
    return best


def _better(a: LayerPlacement, b: LayerPlacement, target: float) -> bool:
    a_ok = a.metrics.max_over_mean <= target + 1e-9
    b_ok = b.metrics.max_over_mean <= target + 1e-9
    if a_ok != b_ok:
        return a_ok
    if not a_ok:
        return a.metrics.max_over_mean < b.metrics.max_over_mean
    return a.metrics.dedup_cross < b.metrics.dedup_cross
