"""Place every MoE layer: copies per expert, copies to nodes (greedy, then an exact node solver),
node copies to ranks; then measure.

The exact node solver is a function argument (a :class:`~placer.placement.nodemodel.NodeSolver`,
or ``None`` for the greedy search alone): this module sits below ``placer.backends`` and never
imports it; callers above both pick a solver with :func:`placer.backends.placement.node_solver`.

One layer tries a short ladder of (spill level, node slack) steps until the busiest rank meets the
balance target. The layer's time limit is a deterministic work budget split evenly over the steps
(a work cap for the greedy, deterministic time for CP-SAT), so the same input gives the same
placement on any machine; a node model not proven optimal within its share sets ``timed_out``
and leaves its gap in the report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from placer.placement.balance import balance_lower_bound, global_balanced
from placer.placement.baselines import eplb_global, replicate
from placer.placement.data import LayerPlacementProblem, Placement, without_duplicates
from placer.placement.greedy import UNITS_PER_S, greedy_assign
from placer.placement.improve import search_layer
from placer.placement.metrics import PlacementMetrics, max_over_mean, placement_metrics
from placer.placement.nodemodel import NodeModel, NodeSolution, NodeSolver, build_node_model, node_copies
from placer.placement.packing import pack_ranks
from placer.placement.search import counts_from_placement

#: node-level share of the balance allowance tried in turn until the ranks meet the target
NODE_SLACK_STEPS = (0.8, 0.5, 0.2, 0.0)
#: spill levels (:func:`placer.placement.nodemodel.node_copies`) tried in turn: experts in one
#: home node first (most traffic saved), then spread over the fewest nodes balance needs
SPILL_LEVELS = (0, 1)
#: share of a step's budget given to the solver as deterministic time; the rest is the greedy's
#: work cap (packing and metrics come on top: 20-40% of a 0.2 s step on ep64)
SOLVER_SHARE = 0.6
#: smallest solver share worth building a CP-SAT model for (the build alone takes ~0.05 s on ep64)
MIN_SOLVER_S = 0.05


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
    timed_out: bool = False  # a node model of this layer was not proven optimal within its budget
    node_assign: np.ndarray | None = None  # [E, N] node homes (warm start for another slot count)

    @property
    def gap(self) -> float | None:
        if self.bound is None:
            return None
        if self.bound <= 1e-12:
            return 0.0
        return max(0.0, (self.bound - self.objective) / self.bound)


def solve_node_model(
    model: NodeModel, hint: np.ndarray, solver: NodeSolver | None, time_limit_s: float, workers: int = 1, seed: int = 0
) -> NodeSolution:
    """The solver's answer, or the greedy hint itself when there is no solver, one node, or no budget."""
    if solver is None or model.num_nodes == 1 or time_limit_s <= 0:
        return NodeSolution(hint, "greedy", model.kept(hint), None, 0.0)
    return solver(model, hint, time_limit_s=time_limit_s, workers=workers, seed=seed)


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


#: placement methods: "search" (local search on the measured objective seeded by EPLB's map,
#: :mod:`placer.placement.improve`), "model" (the node model ladder with an exact node solver)
METHODS = ("search", "model")


def place_layer(
    problem: LayerPlacementProblem,
    target_max_over_mean: float = 1.05,
    node_solver: NodeSolver | None = None,
    time_limit_s: float = 1.0,
    workers: int = 1,
    seed: int = 0,
    warm: np.ndarray | None = None,
    stop: Callable[[], bool] | None = None,
    method: str | None = None,
) -> LayerPlacement:
    """Least-traffic placement of one layer whose busiest rank is within ``target`` of the mean,
    or the best-balanced one found when the target cannot be met. ``node_solver``: the exact
    solver of each step's node model (``None``: the greedy search alone).

    Deterministic: ``time_limit_s`` is a work budget, not a deadline, split evenly over the steps
    of the ladder. In a step the greedy search gets a work cap (``UNITS_PER_S`` units a second of
    its share) and CP-SAT its share as *deterministic* time; a step whose solver share is below
    ``MIN_SOLVER_S`` runs the greedy alone. No decision reads the clock, so the same input gives
    the same placement on any machine, and the wall time follows the budget roughly; ``stop`` (the
    command's wall-clock deadline or Ctrl-C) is the one exception: once it is set, the layer keeps
    the best step so far, or runs its first step's greedy search alone. ``warm`` is a
    node assignment from another slot count, used as the hint where it fits the step's model. When
    the slots cannot reach the target (:func:`balance_lower_bound`), the steps aim at the bound.

    ``method="search"`` runs :func:`placer.placement.improve.search_layer` instead (no node
    solver: its status says which seed gave the map); ``"model"`` runs the ladder above; ``None``:
    "model" when a node solver is given, else "search"."""
    method = method or ("model" if node_solver is not None else "search")
    if method == "search":
        return _searched(problem, target_max_over_mean, time_limit_s, stop)
    if method != "model":
        raise ValueError(f"placement method {method!r}: choose from {', '.join(METHODS)}")
    problem.require_slots()
    started = time.perf_counter()
    floor = balance_lower_bound(problem.routing.loads, problem.num_ranks, problem.slots_per_rank)
    aim = max(target_max_over_mean, floor.max_over_mean)
    best: LayerPlacement | None = None
    steps = _steps(problem, aim)
    unproven = False
    step_s = max(0.0, time_limit_s) / max(1, len(steps))
    solver_s = step_s * SOLVER_SHARE if node_solver is not None and step_s * SOLVER_SHARE >= MIN_SOLVER_S else 0.0
    greedy_units = (step_s - solver_s) * UNITS_PER_S
    for spill, slack in steps:
        stopping = stop is not None and stop()
        if stopping and best is not None:
            break
        if stopping:  # first step only, construction without local search: a valid map at once
            solver_s, greedy_units = 0.0, 0.0
        model = build_node_model(problem, aim, node_slack=slack, spill=spill)
        hint = greedy_assign(model, max_units=greedy_units)
        if warm is not None and model.feasible(warm) and model.kept(warm) > model.kept(hint):
            hint = warm
        node = solve_node_model(model, hint, node_solver, solver_s, workers, seed)
        unproven |= node.status != "optimal" and model.num_nodes > 1
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
        best = _balance_fallback(problem, best, floor.max_over_mean, stop)
    return dataclasses.replace(best, wall_s=time.perf_counter() - started, timed_out=unproven)


def _searched(
    problem: LayerPlacementProblem, target: float, time_limit_s: float, stop: Callable[[], bool] | None
) -> LayerPlacement:
    """:func:`search_layer`'s map as a :class:`LayerPlacement` (no node model: ``objective`` is
    the traffic it saved against EPLB hierarchical's map on the search's tokens, no bound)."""
    found = search_layer(problem, target, time_limit_s, stop)
    counts = counts_from_placement(found.placement, problem)
    return LayerPlacement(
        found.placement,
        found.metrics,
        found.status,
        found.seed_traffic - found.search_traffic,
        None,
        found.wall_s,
        found.balance_bound,
        int(((counts > 0).sum(axis=1) > 1).sum()),
        found.budget_spent,
        counts > 0,
    )


def place_layers(
    problems: list[LayerPlacementProblem],
    target_max_over_mean: float,
    node_solver: NodeSolver | None,
    work_s: float,
    stop: Callable[[], bool] | None = None,
    remaining_s: Callable[[], float] | None = None,
    warm: list[np.ndarray | None] | None = None,
    method: str | None = None,
    processes: int = 1,
) -> list[LayerPlacement]:
    """Every layer, each with an equal share of ``work_s`` of work (:func:`place_layer`).

    A stopped layer still builds, packs and measures a map, which takes time the work budget does
    not count (about 0.1-0.2 s a layer at 128 ranks). So with ``remaining_s`` (the seconds left
    before the command's deadline) a layer is also told to stop once the time left no longer
    covers it and the layers after it at the least wall time a layer has taken so far: the deadline then
    holds for the whole run, not only for the layer that sees it pass.

    ``processes > 1`` (method "search" only) places the layers in that many processes, each
    layer with the same work budget, so the maps are those of one process; a wall-clock
    deadline is passed as its end time (``remaining_s`` read once), and each layer stops at it."""
    method = method or ("model" if node_solver is not None else "search")
    if processes > 1 and method == "search" and len(problems) > 1:
        return _in_processes(problems, target_max_over_mean, work_s / len(problems), stop, remaining_s, processes)
    out: list[LayerPlacement] = []
    least_s = math.inf
    for i, problem in enumerate(problems):
        after = len(problems) - i - 1

        def layer_stop(after: int = after, least_s: float = least_s) -> bool:
            if stop is not None and stop():
                return True
            return remaining_s is not None and math.isfinite(least_s) and remaining_s() < least_s * (after + 1)

        hint = warm[i] if warm is not None else None
        paced = layer_stop if stop is not None or remaining_s is not None else None
        result = place_layer(
            problem,
            target_max_over_mean,
            node_solver,
            time_limit_s=work_s / len(problems),
            warm=hint,
            stop=paced,
            method=method,
        )
        least_s = min(least_s, result.wall_s)
        out.append(result)
    return out


@dataclass(frozen=True)
class _Deadline:
    """A picklable stop: true once the wall clock passes ``end`` (seconds since the epoch)."""

    end: float

    def __call__(self) -> bool:
        return time.time() >= self.end


def _in_processes(problems, target, layer_s, stop, remaining_s, processes):  # type: ignore[no-untyped-def]
    from concurrent.futures import ProcessPoolExecutor

    left = remaining_s() if remaining_s is not None else None
    if stop is not None and stop():
        left = 0.0
    deadline = _Deadline(time.time() + left) if left is not None else None
    with ProcessPoolExecutor(max_workers=processes) as pool:
        futures = [pool.submit(_searched, lp, target, layer_s, deadline) for lp in problems]
        return [f.result() for f in futures]


def _balance_fallback(
    problem: LayerPlacementProblem, best: LayerPlacement, floor: float, stop: Callable[[], bool] | None = None
) -> LayerPlacement:
    """Balance-only placements over the whole EP group (no traffic term), kept when the ladder's
    best is less balanced: EPLB's global map with its duplicate copies dropped (a second copy on a
    rank serves nothing, so balance and traffic are unchanged), then LPT with swaps and no
    duplicates over several copy budgets. The first is cheap (one map, scored by its balance alone)
    and always runs, so a layer stopped by the deadline is never less balanced than EPLB global
    without duplicates; ``stop`` is polled before the second and between its budgets."""
    options = [lambda: without_duplicates(eplb_global(problem)), lambda: global_balanced(problem, stop)]
    for i, make in enumerate(options):
        if i > 0 and stop is not None and stop():
            break
        placement = make()
        if max_over_mean(placement, problem) >= best.metrics.max_over_mean - 1e-12:
            continue
        metrics = placement_metrics(placement, problem)
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
