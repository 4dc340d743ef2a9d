"""Node-level placement model data, shared by the greedy warm start and the exact backends.

Decomposition (docs/placement.md): experts go to home nodes (this model, balancing node load
and keeping co-activated experts together), then each node fills its slots with redundant copies
of its own hottest experts and packs them onto its ranks (:mod:`placer.placement.packing`).
An expert too hot for one node (see :func:`node_copies`) is *spilled*: it gets a home on several
nodes, each carrying an equal share of its load (remote tokens split evenly over all copies under
local-first serving), at the price of co-activation that can no longer be kept in one node.

Aggregation: tokens do not appear; the objective is over the sparse *excess co-activation graph*
``w[e, f] = max(0, P(e and f) - P_indep(e and f)) / (c_e c_f)``: the pairs selected together more
often than independent routing would, kept to the ``neighbours`` strongest per expert. Putting a
pair on one node lets a token that needs both cross the network once (node-deduplicated).
Under independent routing ``w`` is sampling noise and no placement can do much.

Layering: this module is the contract between the planner (:mod:`placer.placement.planner`) and
the exact node solvers (``placer.backends.{cpsat,milp}.placement``). The backends import it
(:class:`NodeModel`, :class:`NodeSolution` and the solver-neutral symmetry helpers); the planner
never imports a backend: it is handed a :class:`NodeSolver` by a caller above both layers (the
solve orchestration or the API), which picks one by name with
:func:`placer.backends.placement.node_solver`. So no import runs from placement up to backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from placer.placement.baselines import replicate
from placer.placement.data import LayerPlacementProblem
from placer.routing.stats import independent_coactivation

#: integer scale of the CP-SAT/MILP coefficients (weights are probabilities per token)
WEIGHT_SCALE = 1_000_000
LOAD_SCALE = 1_000_000


@dataclass(frozen=True, eq=False)
class NodeModel:
    """Experts' node copies to nodes: at most one node copy of an expert per node (a node copy is
    then replicated over that node's ranks by packing)."""

    copies: np.ndarray  # [E] m_e, nodes that home expert e (1 unless spilled)
    copy_load: np.ndarray  # [E] load of one node copy, p_e / m_e (selections per token)
    node_slots: np.ndarray  # [N]
    node_load_cap: np.ndarray  # [N] selections per token
    edges: np.ndarray  # [M, 2] expert pairs e < f
    edge_weight: np.ndarray  # [M] w[e, f]

    @property
    def num_experts(self) -> int:
        return int(self.copies.size)

    @property
    def num_nodes(self) -> int:
        return int(self.node_slots.size)

    def dense_weights(self) -> np.ndarray:
        w = np.zeros((self.num_experts, self.num_experts))
        w[self.edges[:, 0], self.edges[:, 1]] = self.edge_weight
        return w + w.T

    def kept(self, assign: np.ndarray) -> float:
        """Objective: excess co-activation weight kept inside nodes. ``assign[e, n]`` bool."""
        same = (assign[self.edges[:, 0]] & assign[self.edges[:, 1]]).sum(axis=1)
        return float(self.edge_weight @ same)

    def total_weight(self) -> float:
        """Largest kept weight: an edge is kept on at most min(m_e, m_f) nodes (a valid bound)."""
        if not self.edges.size:
            return 0.0
        shared = np.minimum(self.copies[self.edges[:, 0]], self.copies[self.edges[:, 1]])
        return float(self.edge_weight @ shared) * min(1, self.num_nodes)

    def feasible(self, assign: np.ndarray) -> bool:
        """Whether ``assign`` meets (N1)-(N3) of this model (used to accept a warm start)."""
        if assign.shape != (self.num_experts, self.num_nodes):
            return False
        if not np.array_equal(assign.sum(axis=1), self.copies):
            return False
        if (assign.sum(axis=0) > self.node_slots).any():
            return False
        return bool((self.copy_load @ assign <= self.node_load_cap + 1e-12).all())


def node_copies(problem: LayerPlacementProblem, spill: int) -> np.ndarray:
    """[E] nodes homing each expert, by spill level.

    0: one home node per expert (the most co-activation kept; balance needs every p_e to fit in a
       node's cap). 1: an expert gets ``ceil(c_e / ranks per node)`` homes, where ``c_e`` is its
       copy count when the slots are replicated over the whole EP group by largest load per copy
       (EPLB's rule): the fewest nodes that can hold the copies balance asks for. 2: every copy on
       its own node (``min(c_e, N)``), the spread of a balance-only placement."""
    loads = problem.routing.loads
    ones = np.ones(loads.size, dtype=np.int64)
    if spill == 0 or problem.num_nodes == 1:
        return ones
    global_copies = replicate(loads, problem.num_ranks * problem.slots_per_rank, max_copies=problem.num_ranks)
    if spill == 1:
        per_node = int(problem.ranks_per_node.min())
        return np.maximum(ones, -(-global_copies // per_node))
    return np.minimum(global_copies, problem.num_nodes)


def excess_coactivation(problem: LayerPlacementProblem) -> np.ndarray:
    """[E, E] co-activation above independent routing: from the traces when known; with loads
    only, from the group-limited routing the model declares (:func:`group_limited_coactivation`);
    else none (independent routing has no excess)."""
    routing = problem.routing
    independent = independent_coactivation(routing.loads)
    if routing.traces is not None:
        return np.clip(routing.coactivation - independent, 0.0, None)
    group, per_token = problem.expert_group, problem.groups_per_token
    if group is None or per_token is None or per_token >= int(group.max()) + 1:
        return np.zeros((routing.num_experts, routing.num_experts))
    return np.clip(group_limited_coactivation(routing.loads, group, per_token) - independent, 0.0, None)


def group_limited_coactivation(loads: np.ndarray, group: np.ndarray, groups_per_token: int) -> np.ndarray:
    """[E, E] P(a token selects e and f) under group-limited top-k, from the loads alone.

    A token selects ``groups_per_token`` groups and all its experts inside them, so expert e is
    selected only with its group g: ``P(e) = q_g P(e | g)``. Model: group g is selected with
    ``q_g`` proportional to its load ``L_g = sum_{e in g} p_e`` (water-filled at 1, summing to
    ``groups_per_token``); groups pairwise, and experts inside a selected group, as independent as
    their totals allow (:func:`independent_coactivation` at each level). Then

        same group:       P(e, f) = q_g * C^indep[p / q_g within g](e, f)
        groups g != h:    P(e, f) = C^indep[q](g, h) * (p_e / q_g) * (p_f / q_h)

    Two experts of one group are selected together about ``1 / q_g`` times as often as
    independence says (2x for 4 of 8 equal groups); that excess is what placing a group in one
    node saves. Each row sums to ``p_e (k - 1)`` when the q_g are not capped."""
    num_groups = int(group.max()) + 1
    group_load = np.bincount(group, weights=loads, minlength=num_groups)
    q = _water_fill(group_load, float(groups_per_token))
    inside = np.divide(loads, q[group], out=np.zeros_like(loads), where=q[group] > 0)  # P(e | g selected)
    pair = independent_coactivation(q)  # [G, G] P(g and h)
    co = pair[group][:, group] * np.outer(inside, inside)
    for g in range(num_groups):
        members = np.flatnonzero(group == g)
        co[np.ix_(members, members)] = q[g] * independent_coactivation(inside[members])
    np.fill_diagonal(co, 0.0)
    return co


def _water_fill(weights: np.ndarray, total: float) -> np.ndarray:
    """``min(1, lam * w)`` summing to ``total`` (every entry 1 when ``total >= len(w)``)."""
    if total >= weights.size or weights.sum() <= 0:
        return np.ones(weights.size)
    share = np.zeros(weights.size)
    capped = np.zeros(weights.size, dtype=bool)
    for _ in range(weights.size):
        free = ~capped
        share[free] = weights[free] * (total - capped.sum()) / weights[free].sum()
        share[capped] = 1.0
        over = free & (share > 1.0)
        if not over.any():
            break
        capped |= over
    return share


def build_node_model(
    problem: LayerPlacementProblem,
    target_max_over_mean: float,
    neighbours: int = 12,
    node_slack: float = 0.8,
    spill: int = 0,
) -> NodeModel:
    """Copies, loads, capacities and the sparse graph for one layer.

    ``node_slack`` keeps part of the balance allowance for packing copies onto ranks: a node may
    carry ``1 + node_slack * (target - 1)`` times its ranks' mean load. ``spill``: see
    :func:`node_copies`."""
    loads = problem.routing.loads
    nodes = problem.num_nodes
    per_node = problem.ranks_per_node
    # An expert's redundant copies stay in its home node(s) (filled in by packing), so a token
    # from a home node reaches a copy in its node, and the others split evenly over all copies.
    copies = node_copies(problem, spill)
    copy_load = loads / copies
    mean_rank = loads.sum() / problem.num_ranks
    cap = per_node * mean_rank * (1 + node_slack * (target_max_over_mean - 1))
    excess = excess_coactivation(problem) / np.outer(copies, copies)
    edges_set: set[tuple[int, int]] = set()
    if nodes > 1 and excess.any():
        top = np.argsort(-excess, axis=1)[:, :neighbours]
        for e in range(excess.shape[0]):
            for f in top[e]:
                if excess[e, f] > 0:
                    edges_set.add((min(e, int(f)), max(e, int(f))))
    edges = np.array(sorted(edges_set), dtype=np.int64).reshape(-1, 2)
    weight = excess[edges[:, 0], edges[:, 1]] if edges.size else np.zeros(0)
    return NodeModel(copies, copy_load, per_node * problem.slots_per_rank, cap, edges, weight)


@dataclass(frozen=True)
class NodeSolution:
    """What a node solver returns for a :class:`NodeModel` (objective: kept weight, maximised)."""

    assign: np.ndarray  # [E, N] bool, node homes
    status: str  # "optimal", "feasible", "greedy" (no solver ran), "hint" (nothing better than the warm start)
    objective: float  # kept excess co-activation weight (selections per token)
    bound: float | None  # upper bound on the kept weight, when the solver proves one
    wall_s: float


class NodeSolver(Protocol):
    """An exact solver of the node model, warm-started from ``hint``; ``time_limit_s`` is a work
    budget (deterministic time where the solver has one)."""

    def __call__(
        self, model: NodeModel, hint: np.ndarray, time_limit_s: float, workers: int = 1, seed: int = 0
    ) -> NodeSolution: ...


def symmetric_prefix(model: NodeModel) -> list[tuple[int, int]]:
    """(expert, nodes it may use) for symmetry breaking, shared by every exact backend: with
    interchangeable nodes (equal slots and caps), relabel them in order of first use by the
    heaviest experts, so expert i of the list uses only nodes ``0 .. m_0 + ... + m_i - 1``.
    Empty when the nodes differ."""
    same = np.all(model.node_slots == model.node_slots[0]) and np.allclose(model.node_load_cap, model.node_load_cap[0])
    if not same:
        return []
    prefix, opened = [], 0
    for e in np.argsort(-model.copy_load, kind="stable"):
        if opened >= model.num_nodes - 1:
            break
        opened += int(model.copies[e])
        prefix.append((int(e), min(opened, model.num_nodes)))
    return prefix


def relabel_hint(model: NodeModel, hint: np.ndarray, prefix: list[tuple[int, int]]) -> np.ndarray:
    """Permute the hint's nodes (in order of first use) so that it obeys :func:`symmetric_prefix`'s
    symmetry breaking (a warm start the solver would otherwise have to reject)."""
    order: list[int] = []
    for e in [e for e, _ in prefix] + list(range(model.num_experts)):
        for n in np.flatnonzero(hint[e]):
            if int(n) not in order:
                order.append(int(n))
    order += [n for n in range(model.num_nodes) if n not in order]
    return hint[:, order]
