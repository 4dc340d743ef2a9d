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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np


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

    @property
    def imbalance(self) -> float:
        """Busiest GPU's expert load over the mean (1.0 = perfectly balanced)."""
        loads = np.asarray(self.gpu_pairs_per_token)
        mean = float(loads.mean())
        return float(loads.max() / mean) if mean > 0 else 1.0


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
    """
    return _layer_traffic(expert_map, gpu_domains, tp_moe, top_k, expert_probs)


@lru_cache(maxsize=4096)
def _layer_traffic(
    expert_map: tuple[tuple[int, ...], ...],
    gpu_domains: tuple[int, ...],
    tp_moe: int,
    top_k: int,
    expert_probs: tuple[float, ...] | None,
) -> LayerTraffic:
    ep = len(expert_map)
    width = ep * tp_moe
    domains = np.asarray(gpu_domains)
    assert len(domains) == width, "one domain per stage GPU"
    num_experts = 1 + max(e for rank in expert_map for e in rank)
    if expert_probs is None:
        probs = np.full(num_experts, top_k / num_experts)
    else:
        probs = np.asarray(expert_probs, dtype=float)
        num_experts = len(probs)
    copies = np.zeros((num_experts, ep))
    for rank, experts in enumerate(expert_map):
        for expert in experts:
            copies[expert, rank] = 1.0
    rank_domain = domains[:: tp_moe]  # a MoE-TP group sits in one domain (checked elsewhere)
    uniform_exact = expert_probs is None and bool((copies.sum(axis=1) <= 1).all())

    gpu_rank = np.arange(width) // tp_moe
    totals = np.zeros(4)
    source_out = np.zeros((width, 2))
    load = np.zeros(width)
    for source in range(width):
        weights = _serving_weights(copies, gpu_rank[source], rank_domain, domains[source])  # [E, ep]
        per_rank = probs @ weights  # expected copies to each rank
        per_gpu = per_rank[gpu_rank]
        load += per_gpu
        same = domains == domains[source]
        not_self = np.arange(width) != source
        plain_up = per_gpu[same & not_self].sum()
        plain_out = per_gpu[~same].sum()
        reach_rank = _reach_probability(weights, probs, top_k, uniform_exact, np.eye(ep, dtype=bool))
        reach_gpu = reach_rank[gpu_rank]
        dom_ids = np.unique(rank_domain)
        dom_masks = np.stack([rank_domain == d for d in dom_ids], axis=1)  # [ep, domains]
        reach_dom = _reach_probability(weights, probs, top_k, uniform_exact, dom_masks)
        dedup_out = reach_dom[dom_ids != domains[source]].sum()
        dedup_up = reach_gpu[same & not_self].sum() + max(0.0, reach_gpu[~same].sum() - dedup_out)
        totals += (plain_up, plain_out, dedup_up, dedup_out)
        source_out[source] = (plain_out, dedup_out)
    totals /= width
    distinct = tuple(int(copies[:, r].sum()) for r in gpu_rank)
    return LayerTraffic(
        plain_scaleup=float(totals[0]),
        plain_scaleout=float(totals[1]),
        dedup_scaleup=float(totals[2]),
        dedup_scaleout=float(totals[3]),
        gpu_pairs_per_token=tuple(float(x) for x in load / width),
        gpu_distinct_experts=distinct,
        max_source_scaleout_plain=float(source_out[:, 0].max()),
        max_source_scaleout_dedup=float(source_out[:, 1].max()),
    )


def _serving_weights(copies: np.ndarray, source_rank: int, rank_domain: np.ndarray, source_domain: int) -> np.ndarray:
    """Share of each expert's tokens from this source served by each rank (local-first)."""
    own = copies[:, source_rank] > 0
    local_mask = (rank_domain == source_domain)[None, :] & (copies > 0)
    has_local = local_mask.any(axis=1)
    weights = np.where(has_local[:, None], local_mask, copies > 0).astype(float)
    weights[own] = 0.0
    weights[own, source_rank] = 1.0
    sums = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)


def _reach_probability(
    weights: np.ndarray, probs: np.ndarray, top_k: int, uniform_exact: bool, masks: np.ndarray
) -> np.ndarray:
    """P(a token sends at least one copy into each set of ranks ``masks[:, j]``).

    Exact for uniform top-k without replacement when every expert has one home
    (``1 - C(E - n, k) / C(E, k)``); otherwise independent selection is assumed.
    """
    share = weights @ masks.astype(float)  # [E, sets]: share of expert e's tokens going to set j
    if uniform_exact:
        num_experts = weights.shape[0]
        homes = np.rint(share.sum(axis=0)).astype(int)
        total = comb(num_experts, top_k)
        return np.array([1.0 - comb(num_experts - n, top_k) / total for n in homes])
    miss = np.prod(1.0 - np.clip(probs[:, None] * share, 0.0, 1.0), axis=0)
    return 1.0 - miss
