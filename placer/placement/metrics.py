"""Balance and cross-node all-to-all traffic of one placement (definitions: docs/placement.md).

Token origin: uniform over the EP group's ranks (a token starts on its attention-DP rank, and the
DP ranks tile the stage's GPUs evenly). Replica choice, local-first (as (T3) of the cost model):
a copy on the token's own rank, else the copies on its node (evenly), else all copies (evenly).

Counts are copies of one token's hidden state per token of the stage, per MoE layer; multiply by
``h * b_dispatch`` (dispatch) or ``h * b_combine`` (combine) for bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placer.costmodel.traffic import rank_pair_loads, reach_probability, serving_weights
from placer.placement.data import LayerPlacementProblem, Placement, copies_matrix


@dataclass(frozen=True)
class PlacementMetrics:
    """Figures of one layer's placement."""

    max_over_mean: float  # busiest rank's expert load over the mean rank load
    dedup_cross: float  # node-deduplicated cross-node copies per token (dispatch; combine equal)
    plain_cross: float  # plain cross-node copies per token (one per remote expert)
    wasted_slots: int  # slots holding a second copy of an expert on the same rank
    empty_slots: int
    busiest_nic_copies: float  # busiest scale-out NIC (send or receive), copies per stage token
    mean_nic_copies: float
    rank_load: tuple[float, ...]  # selections per token served by each rank (sum = top_k)


#: ranks above which the figures come from the closed form of (T3) (:func:`local_first_loads`,
#: :func:`local_first_node_shares`) instead of the ``[S, E, R]`` weights (800 MB at 512 ranks);
#: ``tests/test_placement_scale.py`` checks that both give the same figures
CLOSED_FORM_RANKS = 64


def local_first_loads(present: np.ndarray, rank_node: np.ndarray, loads: np.ndarray) -> np.ndarray:
    """[R] (T5) rank loads of (T3) local-first serving in closed form: a copy of e on rank r of node n
    serves r's own tokens, its share of the tokens of n's ranks without e (``rpn_n - c_en`` of
    them, split over n's ``c_en`` copies) and of the ranks on nodes without e (over all ``C_e``)."""
    num_ranks = rank_node.size
    num_nodes = int(rank_node.max()) + 1
    rpn = np.bincount(rank_node, minlength=num_nodes)
    onehot = rank_node[:, None] == np.arange(num_nodes)[None, :]  # [R, N]
    cnt = present.astype(np.int64) @ onehot.astype(np.int64)  # [E, N]
    total = cnt.sum(axis=1)
    without = ((cnt == 0) * rpn[None, :]).sum(axis=1)  # [E]
    c_rank = cnt[:, rank_node]  # [E, R] copies of e on r's node
    per_copy = (
        1.0
        + (rpn[rank_node][None, :] - c_rank) / np.maximum(c_rank, 1)
        + without[:, None] / np.maximum(total, 1)[:, None]
    )
    return (loads[:, None] * np.where(present, per_copy, 0.0)).sum(axis=0) / num_ranks


def local_first_node_shares(present: np.ndarray, rank_node: np.ndarray) -> np.ndarray:
    """[A, E, N] (T3) in closed form at node level: a source on node a holding e serves it there,
    else the copies split it, node n taking ``c_en / C_e``."""
    num_nodes = int(rank_node.max()) + 1
    onehot = (rank_node[:, None] == np.arange(num_nodes)[None, :]).astype(np.int64)
    cnt = present.astype(np.int64) @ onehot  # [E, N]
    frac = cnt / np.maximum(cnt.sum(axis=1), 1)[:, None]
    held = cnt > 0  # [E, N]
    own = np.eye(num_nodes)[:, None, :]  # [A, 1, N]
    return np.where(held.T[:, :, None], own, frac[None, :, :])


def node_shares(weights: np.ndarray, rank_node: np.ndarray, num_nodes: int) -> np.ndarray:
    """[A, E, N] share of expert e's tokens from a source on node a served on node n: the rank
    shares (T3) summed per node; every rank of a node gives the same node shares, take the first."""
    node_mask = (rank_node[:, None] == np.arange(num_nodes)[None, :]).astype(float)  # [R, N]
    first_rank = np.array([int(np.flatnonzero(rank_node == a)[0]) for a in range(num_nodes)])
    return weights[first_rank] @ node_mask


def touched_nodes(shares: np.ndarray, problem: LayerPlacementProblem) -> np.ndarray:
    """[A, N] probability that a token from node a sends at least one copy to node n ((T4) of
    the cost model, the same function): exact over the traces, else independent selections."""
    routing = problem.routing
    return reach_probability(shares, routing.loads, int(round(routing.loads.sum())), routing.traces)


def max_over_mean(placement: Placement, problem: LayerPlacementProblem) -> float:
    """Only the balance of ``placement`` (as in :func:`placement_metrics`), without the traffic."""
    present = copies_matrix(placement, problem.num_experts) > 0
    if problem.num_ranks > CLOSED_FORM_RANKS:
        rank_load = local_first_loads(present, problem.rank_node, problem.routing.loads)
    else:
        rank_load = rank_pair_loads(serving_weights(present, problem.rank_node), problem.routing.loads)
    mean = rank_load.mean()
    return float(rank_load.max() / mean) if mean > 0 else 1.0


def placement_metrics(placement: Placement, problem: LayerPlacementProblem) -> PlacementMetrics:
    """Balance, waste and cross-node copies of ``placement`` on ``problem``'s statistics."""
    copies = copies_matrix(placement, problem.num_experts)
    present = copies > 0
    rank_node = problem.rank_node
    num_nodes = problem.num_nodes
    loads = problem.routing.loads
    num_ranks = problem.num_ranks
    if num_ranks > CLOSED_FORM_RANKS:
        rank_load = local_first_loads(present, rank_node, loads)
        shares = local_first_node_shares(present, rank_node)
    else:
        weights = serving_weights(present, rank_node)  # [S, E, R]
        rank_load = rank_pair_loads(weights, loads)
        shares = node_shares(weights, rank_node, num_nodes)
    mean = rank_load.mean()
    touched = touched_nodes(shares, problem)  # [A, N]
    remote = ~np.eye(num_nodes, dtype=bool)
    dedup_by_node = (touched * remote).sum(axis=1)  # [A]
    plain_by_node = np.einsum("e,aen->a", loads, shares * remote[:, None, :])
    source_weight = problem.ranks_per_node / num_ranks
    # scale-out NICs, rail-matched: each source rank sends its node's dedup copies; node n's
    # ranks receive evenly what other nodes send to n
    send = dedup_by_node[rank_node] / num_ranks
    received = (touched * remote * problem.ranks_per_node[:, None]).sum(axis=0) / num_ranks  # [N] per stage token
    recv = received[rank_node] / problem.ranks_per_node[rank_node]
    nic = np.maximum(send, recv)
    return PlacementMetrics(
        max_over_mean=float(rank_load.max() / mean) if mean > 0 else 1.0,
        dedup_cross=float(source_weight @ dedup_by_node),
        plain_cross=float(source_weight @ plain_by_node),
        wasted_slots=int((copies - 1).clip(min=0).sum()),
        empty_slots=int(max(0, num_ranks * problem.slots_per_rank - copies.sum())),
        busiest_nic_copies=float(nic.max()),
        mean_nic_copies=float(nic.mean()),
        rank_load=tuple(float(x) for x in rank_load),
    )
