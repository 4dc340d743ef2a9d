"""Baseline placements, for comparison in the report.

* contiguous: rank r holds experts [r*E/R, (r+1)*E/R); redundant slots stay empty.
* round-robin: expert e on rank e mod R; redundant slots stay empty.
* EPLB hierarchical and EPLB global: DeepSeek's Expert Parallelism Load Balancer
  (``deepseek-ai/EPLB``, ``rebalance_experts``), re-implemented here from its published algorithm
  (no code taken) so that it gives the same physical-to-logical map, tie-breaks included
  (``tests/test_placement.py`` reproduces the example of EPLB's README):

  - replicate: every expert gets one copy, then each redundant slot in turn goes to the expert with
    the largest load per copy (ties: the lowest expert index);
  - pack: items in decreasing weight (ties: the lowest item index first), each into the lightest
    pack that still has room (ties: the lowest pack index); with one item per pack, item i simply
    goes to pack i. A pack does not check whether it already holds the expert, so a redundant slot
    can be wasted on a second copy of an expert on one GPU, as in EPLB;
  - hierarchical: pack the expert groups onto nodes (equal group counts per node, weight = group
    load), then replicate inside each node over its slots and pack the node's copies onto its GPUs
    (the node's experts numbered group by group in the order the groups were packed);
  - global: the same with one group and one node.

  Arithmetic is in single precision, as EPLB casts the loads to ``float32``, so near-ties resolve
  as they do there. Impossible slot counts are refused (:class:`~placer.errors.InputError`)
  instead of EPLB's assertions.
"""

from __future__ import annotations

import numpy as np

from placer.errors import InputError
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


def eplb_pack(weights: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """EPLB's balanced packing of ``n`` items into ``num_packs`` packs of ``n / num_packs`` items:
    ``(pack, position)`` of each item. Heaviest first (equal weights: lower index first), each into
    the lightest pack with room (equal totals: lower pack); one item per pack: item i to pack i."""
    n = weights.size
    per_pack = n // num_packs
    if per_pack == 1:
        return np.arange(n), np.zeros(n, dtype=np.int64)
    w = weights.astype(np.float32)
    pack = np.full(n, -1, dtype=np.int64)
    position = np.full(n, -1, dtype=np.int64)
    totals = np.zeros(num_packs, dtype=np.float32)
    filled = np.zeros(num_packs, dtype=np.int64)
    for item in np.argsort(-w, kind="stable"):
        target = int(np.argmin(np.where(filled < per_pack, totals, np.inf)))
        pack[item], position[item] = target, filled[target]
        totals[target] = np.float32(totals[target] + w[item])
        filled[target] += 1
    return pack, position


def eplb_replicate(weights: np.ndarray, num_copies: int) -> tuple[np.ndarray, np.ndarray]:
    """EPLB's replication: ``(copy_to_expert [num_copies], copies per expert)``. Copy i < E is
    expert i; each further copy goes to the expert with the largest load per copy (ties: lowest)."""
    w = weights.astype(np.float32)
    counts = np.ones(w.size, dtype=np.int64)
    owner = np.concatenate([np.arange(w.size), np.zeros(num_copies - w.size, dtype=np.int64)])
    for i in range(w.size, num_copies):
        best = int(np.argmax(w / counts.astype(np.float32)))
        owner[i] = best
        counts[best] += 1
    return owner, counts


def eplb_rebalance(loads: np.ndarray, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int) -> np.ndarray:
    """EPLB's hierarchical policy for one layer: ``phy2log`` [num_replicas], the logical expert in
    each physical slot, slot ``g * (num_replicas / num_gpus) + j`` being slot j of GPU g and GPU g
    on node ``g // (num_gpus / num_nodes)``. ``num_groups = num_nodes = 1`` is the global policy.
    Refuses the shapes EPLB cannot place, naming the quantity."""
    experts = int(loads.size)
    _require_shape(experts, num_replicas, num_groups, num_nodes, num_gpus)
    group_size = experts // num_groups
    groups_per_node = num_groups // num_nodes
    per_gpu = num_replicas // num_gpus
    w = loads.astype(np.float32)
    group_load = w.reshape(num_groups, group_size).sum(axis=1, dtype=np.float32)
    group_node, group_position = eplb_pack(group_load, num_nodes)
    # node-local numbering: the node's groups in packing order, each group's experts in order
    local = (group_node * groups_per_node + group_position)[:, None] * group_size + np.arange(group_size)[None, :]
    local_to_expert = np.empty(experts, dtype=np.int64)
    local_to_expert[local.ravel()] = np.arange(experts)
    per_node_experts = experts // num_nodes
    per_node_copies = num_replicas // num_nodes
    gpus_per_node = num_gpus // num_nodes
    phy2log = np.empty(num_replicas, dtype=np.int64)
    for node in range(num_nodes):
        node_experts = local_to_expert[node * per_node_experts : (node + 1) * per_node_experts]
        owner, counts = eplb_replicate(w[node_experts], per_node_copies)
        per_copy = (w[node_experts] / counts.astype(np.float32))[owner]
        gpu, position = eplb_pack(per_copy, gpus_per_node)
        slot = node * per_node_copies + gpu * per_gpu + position
        phy2log[slot] = node_experts[owner]
    return phy2log


def _require_shape(experts: int, replicas: int, groups: int, nodes: int, gpus: int) -> None:
    problems = []
    if replicas < experts:
        problems.append(("placement.slots", f"{replicas} expert slots for {experts} experts: every expert needs one"))
    if gpus <= 0 or replicas % gpus:
        problems.append(("placement.slots", f"{replicas} slots do not divide over {gpus} GPUs"))
    if groups <= 0 or experts % groups:
        problems.append(("moe.num_groups", f"{experts} experts do not split into {groups} equal groups"))
    if nodes <= 0 or groups % nodes:
        problems.append(("moe.num_groups", f"{groups} expert groups do not divide over {nodes} nodes"))
    if nodes <= 0 or gpus % nodes:
        problems.append(("placement.ranks_per_node", f"{gpus} GPUs do not divide over {nodes} nodes"))
    if not problems and replicas // nodes < experts // nodes:
        problems.append(("placement.slots", f"{replicas // nodes} slots per node for {experts // nodes} experts"))
    if problems:
        raise InputError(problems)


def _contiguous_groups(problem: LayerPlacementProblem) -> tuple[np.ndarray, int]:
    """Experts reordered so that each declared group is contiguous (identity for the usual
    contiguous groups), and the group count; without groups every expert is its own group."""
    group = problem.expert_group
    if group is None:
        return np.arange(problem.num_experts), problem.num_experts
    order = np.lexsort((np.arange(group.size), group))
    return order, int(group.max()) + 1


def _to_placement(phy2log: np.ndarray, problem: LayerPlacementProblem, gpu_rank: list[int]) -> Placement:
    per_gpu = problem.slots_per_rank
    by_rank: list[tuple[int, ...]] = [()] * problem.num_ranks
    for g, rank in enumerate(gpu_rank):
        by_rank[rank] = tuple(int(e) for e in phy2log[g * per_gpu : (g + 1) * per_gpu])
    return tuple(by_rank)


def eplb_global(problem: LayerPlacementProblem) -> Placement:
    """EPLB's global policy over the EP group's ranks (GPU g = rank g)."""
    phy2log = eplb_rebalance(problem.routing.loads, problem.num_ranks * problem.slots_per_rank, 1, 1, problem.num_ranks)
    return _to_placement(phy2log, problem, list(range(problem.num_ranks)))


def eplb_hierarchical(problem: LayerPlacementProblem) -> Placement:
    """EPLB's entry point with the model's expert groups (every expert its own group when the model
    declares none): the hierarchical policy when the groups divide over the nodes, else the global
    policy, as ``rebalance_experts`` decides. EPLB's GPU j of node n is the j-th rank of node n;
    nodes with unequal rank counts, which EPLB cannot describe, get the global policy too."""
    order, groups = _contiguous_groups(problem)
    nodes = problem.num_nodes
    per_node = problem.ranks_per_node
    sizes = np.bincount(problem.expert_group, minlength=groups) if problem.expert_group is not None else None
    equal_groups = sizes is None or len(set(sizes.tolist())) == 1
    if groups % nodes or len(set(per_node.tolist())) > 1 or not equal_groups:
        return eplb_global(problem)
    loads = problem.routing.loads[order]
    phy2log = eplb_rebalance(loads, problem.num_ranks * problem.slots_per_rank, groups, nodes, problem.num_ranks)
    gpu_rank = [int(r) for node in range(nodes) for r in np.flatnonzero(problem.rank_node == node)]
    return _to_placement(order[phy2log], problem, gpu_rank)


BASELINES = {
    "contiguous": contiguous,
    "round-robin": round_robin,
    "EPLB hierarchical": eplb_hierarchical,
    "EPLB global": eplb_global,
}
