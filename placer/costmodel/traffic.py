"""All-to-all traffic of one MoE layer from where its experts sit.

A token starts on one GPU of the stage (uniformly over the stage's GPUs) and must reach every
GPU that holds a shard of each expert it selected. Counts are *copies of the hidden state per
token*, split into scale-up (same NVLink domain, another GPU) and scale-out (another domain),
in two accountings (T1)-(T5) of ``docs/cost-model.md``:

* plain: one copy per (selected expert, remote GPU) pair (DeepEP low-latency mode);
* node-deduplicated: one scale-out copy per remote domain, forwarded over NVLink inside it,
  and one scale-up copy per local GPU (DeepEP normal mode).

Which replica of a redundant expert serves a token is local-first: a copy on the token's own EP
rank, else copies in its domain (split evenly), else all copies (split evenly).

Routing: uniform by default; with a layer's routing statistics, its expert loads set each GPU's
load and its per-token traces (when known) the node-deduplicated reach. The placement metrics
(``placer.placement.metrics``) call the same :func:`serving_weights`, :func:`rank_pair_loads`
and :func:`reach_probability`, so the placement step and the evaluator cannot disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np

from placer.routing.stats import LayerRouting


@dataclass(frozen=True)
class LayerTraffic:
    """Expected per-token copies and per-GPU load of one MoE layer.

    ``gpu_pairs_per_token[g]`` is the expected number of (token, expert) pairs GPU ``g`` of the
    stage computes per token of the stage (sums to ``top_k * tp_moe``).
    """

    plain_scaleup: float
    plain_scaleout: float
    dedup_scaleup: float
    dedup_scaleout: float
    gpu_pairs_per_token: tuple[float, ...]
    gpu_distinct_experts: tuple[int, ...]
    #: per source GPU, expected scale-out copies it sends (plain, dedup): the busiest link
    max_source_scaleout_plain: float
    max_source_scaleout_dedup: float

    def __hash__(self) -> int:
        # Memo keys hold a layer's traffic; its per-GPU tuples run to a thousand entries, so the
        # hash is computed once per object (the object is frozen, so it cannot go stale).
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def imbalance(self) -> float:
        """Busiest GPU's expert load over the mean (1.0 = perfectly balanced); computed once per
        object (frozen), as the evaluator asks for it per layer of every replica."""
        cached = self.__dict__.get("_imbalance")
        if cached is None:
            loads = np.asarray(self.gpu_pairs_per_token)
            mean = float(loads.mean())
            cached = float(loads.max() / mean) if mean > 0 else 1.0
            object.__setattr__(self, "_imbalance", cached)
        return cached


def with_imbalance(traffic: LayerTraffic, factor: float) -> LayerTraffic:
    """The same layer with its busiest GPU carrying ``factor`` times the mean load (T5).

    For deployments known to be imbalanced without statistics to show where: the busiest GPU's
    pairs rise until they are ``factor`` times the new mean; the other GPUs and the copies per
    token stay as they are.
    A layer already at least that imbalanced is returned unchanged.
    """
    loads = np.asarray(traffic.gpu_pairs_per_token, dtype=float)
    n = loads.size
    if factor <= traffic.imbalance or n <= factor:  # one GPU (or too few to hold it) is balanced by definition
        return traffic
    busiest = int(np.argmax(loads))
    others = float(loads.sum() - loads[busiest])
    raised = loads.copy()
    raised[busiest] = factor * others / (n - factor)  # solves x = factor x (others + x) / n
    return dataclasses.replace(traffic, gpu_pairs_per_token=tuple(float(x) for x in raised))


@lru_cache(maxsize=4096)
def uniform_layer_traffic(
    expert_map: tuple[tuple[int, ...], ...], gpu_domains: tuple[int, ...], tp_moe: int, top_k: int, imbalance: float
) -> LayerTraffic:
    """:func:`layer_traffic` under uniform routing, raised to ``imbalance`` by :func:`with_imbalance`
    (the strategy model's traffic; cached, as every configuration with this map and pattern asks)."""
    return with_imbalance(_layer_traffic(expert_map, gpu_domains, tp_moe, top_k, None, None), imbalance)


def contiguous_map(num_experts: int, ep: int) -> tuple[tuple[int, ...], ...]:
    """Default placement: EP rank ``r`` holds experts ``[r*E/ep, (r+1)*E/ep)`` (ceil split)."""
    per_rank = -(-num_experts // ep)
    return tuple(tuple(range(r * per_rank, min(num_experts, (r + 1) * per_rank))) for r in range(ep))


def layer_traffic(
    expert_map: tuple[tuple[int, ...], ...],
    gpu_domains: tuple[int, ...],
    tp_moe: int,
    top_k: int,
    expert_probs: tuple[float, ...] | None = None,
    routing: LayerRouting | None = None,
) -> LayerTraffic:
    """Expected traffic of one MoE layer (cached: the default placement repeats per layer).

    Parameters
    ----------
    expert_map
        ``expert_map[r]``: logical experts on EP rank ``r``; rank ``r`` is stage GPUs
        ``r*tp_moe .. r*tp_moe + tp_moe - 1``.
    gpu_domains
        NVLink domain of each GPU of the stage.
    expert_probs
        Probability that a token selects each expert (sums to ``top_k``); ``None`` = uniform.
    routing
        The layer's routing statistics; overrides ``expert_probs``. Its loads set the per-GPU
        load; its traces, when known, give the exact reach probabilities (T4).
    """
    return _layer_traffic(expert_map, gpu_domains, tp_moe, top_k, expert_probs, routing)


@lru_cache(maxsize=4096)
def _layer_traffic(
    expert_map: tuple[tuple[int, ...], ...],
    gpu_domains: tuple[int, ...],
    tp_moe: int,
    top_k: int,
    expert_probs: tuple[float, ...] | None,
    routing: LayerRouting | None,
) -> LayerTraffic:
    ep = len(expert_map)
    width = ep * tp_moe
    domains = np.asarray(gpu_domains)
    assert len(domains) == width, "one domain per stage GPU"
    num_experts = 1 + max(e for rank in expert_map for e in rank)
    traces = None
    if routing is not None:
        probs = np.asarray(routing.loads, dtype=float)
        traces = routing.traces
    elif expert_probs is not None:
        probs = np.asarray(expert_probs, dtype=float)
    else:
        probs = np.full(num_experts, top_k / num_experts)
    num_experts = max(num_experts, len(probs))
    copies = np.zeros((num_experts, ep))
    for rank, experts in enumerate(expert_map):
        for expert in experts:
            copies[expert, rank] = 1.0
    rank_domain = domains[::tp_moe]  # a MoE-TP group sits in one domain (checked elsewhere)
    uniform_exact = routing is None and expert_probs is None and bool((copies.sum(axis=1) <= 1).all())

    weights = serving_weights(copies > 0, rank_domain)  # [ep sources, E, ep]
    per_rank_src = np.einsum("e,ser->sr", probs, weights)  # expected copies from each source rank to each rank
    dom_ids = np.unique(rank_domain)
    dom_masks = np.stack([rank_domain == d for d in dom_ids], axis=1).astype(float)  # [ep, domains]
    if uniform_exact:
        # one copy per expert: weights are 0 or 1, so experts homed per rank (and per domain) are
        # whole numbers in any order of summation; no [ep, E, domains] product is needed
        homes = weights.sum(axis=1)  # [ep, ep]
        reach_rank = uniform_reach(homes, weights.shape[1], top_k)
        reach_dom = uniform_reach(homes @ dom_masks, weights.shape[1], top_k)  # [ep, domains]
    else:
        reach_rank = reach_probability(weights, probs, top_k, traces)  # [ep, ep]
        reach_dom = reach_probability(weights @ dom_masks, probs, top_k, traces)  # [ep, domains]

    gpu_rank = np.arange(width) // tp_moe
    totals = np.zeros(4)
    source_out = np.zeros((width, 2))
    # The GPUs of one MoE-TP group in one domain see the same figures (its ranks are consecutive
    # and carry equal values, so leaving out any one of them leaves the same sequence to sum):
    # compute them once per (EP rank, domain).
    by_group: dict[tuple[int, int], tuple[float, float, float, float]] = {}
    for source in range(width):
        src_rank = int(gpu_rank[source])
        key = (src_rank, int(domains[source]))
        figures = by_group.get(key)
        if figures is None:
            per_gpu = per_rank_src[src_rank][gpu_rank]
            same = domains == domains[source]
            not_self = np.arange(width) != source
            plain_up = per_gpu[same & not_self].sum()
            plain_out = per_gpu[~same].sum()
            reach_gpu = reach_rank[src_rank][gpu_rank]
            dedup_out = reach_dom[src_rank][dom_ids != domains[source]].sum()
            dedup_up = reach_gpu[same & not_self].sum() + max(0.0, reach_gpu[~same].sum() - dedup_out)
            figures = by_group[key] = (plain_up, plain_out, dedup_up, dedup_out)
        totals += figures
        source_out[source] = (figures[1], figures[3])
    totals /= width
    load = rank_pair_loads(weights, probs)[gpu_rank]
    distinct = tuple(int(copies[:, r].sum()) for r in gpu_rank)
    return LayerTraffic(
        plain_scaleup=float(totals[0]),
        plain_scaleout=float(totals[1]),
        dedup_scaleup=float(totals[2]),
        dedup_scaleout=float(totals[3]),
        gpu_pairs_per_token=tuple(float(x) for x in load),
        gpu_distinct_experts=distinct,
        max_source_scaleout_plain=float(source_out[:, 0].max()),
        max_source_scaleout_dedup=float(source_out[:, 1].max()),
    )


def serving_weights(present: np.ndarray, rank_domain: np.ndarray) -> np.ndarray:
    """(T3) ``[S, E, R]`` share of expert e's tokens from source rank s served by rank r.

    Local-first: a copy on the source's own rank takes all of them, else the copies in the
    source's domain split them evenly, else all copies do. ``present[e, r]``: e has a slot on r.
    Shared by the cost model and the placement metrics (one rule, one implementation)."""
    num_ranks = rank_domain.size
    same_domain = rank_domain[:, None] == rank_domain[None, :]  # [S, R]
    own = np.eye(num_ranks, dtype=bool)
    p = present[None, :, :]  # [1, E, R]
    own_hit = (p & own[:, None, :]).any(axis=2, keepdims=True)
    local = p & same_domain[:, None, :]
    has_local = local.any(axis=2, keepdims=True)
    weights = np.where(own_hit, own[:, None, :] & p, np.where(has_local, local, p)).astype(float)
    sums = weights.sum(axis=2, keepdims=True)
    # where no rank holds the expert its weights are all zero, and 0 / 1 keeps them so
    # (cheaper than a masked divide into a fresh zeroed array of the same size)
    weights /= np.where(sums > 0, sums, 1.0)
    return weights


def rank_pair_loads(weights: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(T5) ``[R]`` expected (token, expert) pairs each rank serves per token of the EP group.

    Token origin uniform over the source ranks; ``sum == top_k``. The busiest rank's value sets
    the routed-expert time (O5) and the all-to-all payload factor (O6)."""
    return np.einsum("e,ser->r", probs, weights) / weights.shape[0]


#: array elements gathered at once in :func:`reach_probability` (bounds peak memory to ~32 MB)
_TRACE_CHUNK_ELEMENTS = 4_000_000


def reach_probability(
    shares: np.ndarray, probs: np.ndarray, top_k: int, traces: np.ndarray | None = None, uniform_exact: bool = False
) -> np.ndarray:
    """(T4) ``[S, J]`` probability that a token from source ``s`` sends at least one copy into
    target set ``j``, with ``shares[s, e, j]`` the share of expert e's tokens from s served in j.

    * traces known: exact over the recorded tokens, ``mean_t [1 - prod_i (1 - shares[s, x_ti, j])]``
      (the replica of each selected expert drawn independently by its share);
    * uniform routing, one home per expert: ``1 - C(E - n, k) / C(E, k)`` (top-k without
      replacement), ``n`` the experts homed in j;
    * otherwise independent selection: ``1 - prod_e (1 - clip(p_e shares[s, e, j], 0, 1))``.
    """
    if traces is not None:
        return 1.0 - _trace_miss(1.0 - shares, traces) / max(1, traces.shape[0])
    if uniform_exact:
        return uniform_reach(shares.sum(axis=1), shares.shape[1], top_k)
    return 1.0 - np.prod(1.0 - np.clip(probs[None, :, None] * shares, 0.0, 1.0), axis=1)


def _trace_miss(keep: np.ndarray, traces: np.ndarray) -> np.ndarray:
    """``[S, J]`` sum over recorded tokens of ``prod_i keep[s, x_ti, j]`` (``keep = 1 - shares``).

    The same sum, arranged for speed (a test holds it to the token-by-token product):
    top-1 and top-2 as matrix products with the counts of each expert (pair), since
    ``sum_t keep[e_t] keep[f_t] = sum_{e,f} C[e, f] keep[e] keep[f]``; larger k token by token over
    the distinct expert sets (the order of a token's experts does not change its product)."""
    num_experts = keep.shape[1]
    if traces.shape[1] == 1:
        counts = np.bincount(traces[:, 0], minlength=num_experts).astype(float)
        return np.einsum("e,sej->sj", counts, keep)
    if traces.shape[1] == 2:
        pairs = np.zeros((num_experts, num_experts))
        np.add.at(pairs, (traces[:, 0], traces[:, 1]), 1.0)
        return (np.matmul(pairs, keep) * keep).sum(axis=1)  # [S, E, J] * [S, E, J] summed over e
    rows, counts = np.unique(np.sort(traces, axis=1), axis=0, return_counts=True)
    miss = np.zeros((keep.shape[0], keep.shape[2]))
    step = max(1, _TRACE_CHUNK_ELEMENTS // max(1, keep.shape[0] * rows.shape[1] * keep.shape[2]))
    for lo in range(0, rows.shape[0], step):
        chunk = rows[lo : lo + step]
        miss += np.einsum("t,stj->sj", counts[lo : lo + step].astype(float), np.prod(keep[:, chunk, :], axis=2))
    return miss


def uniform_reach(homes: np.ndarray, num_experts: int, top_k: int) -> np.ndarray:
    """(T4) uniform top-k routing, one home per expert: ``1 - C(E - n, k) / C(E, k)`` for ``n``
    experts homed in the target set (``homes``, rounded to whole experts)."""
    total = comb(num_experts, top_k)
    table = np.array([1.0 - comb(num_experts - n, top_k) / total for n in range(num_experts + 1)])
    return table[np.rint(homes).astype(int)]
