"""Seeded synthetic routing: Zipf-skewed popularity, planted co-activation clusters, group-limited top-k.

Why synthetic: shipped instances must be reproducible without data files. The generator draws
per-token traces, so loads, co-activation and node-deduplicated traffic all come from the same
tokens. Per token (one MoE layer):

1. score_e = log(w_e) + Gumbel noise, with Zipf popularity ``w_e = rank_e^-s`` over a random
   ranking of the experts (``s = zipf_exponent``; 0 = uniform). Taking the top-k of these scores
   samples k distinct experts with probability proportional to ``w`` (Plackett-Luce).
2. Planted clusters: the experts are split at random into ``coactivation_clusters`` equal
   clusters; each token has a home cluster, and with probability ``cluster_affinity`` its scores
   inside the home cluster get a bonus larger than any noise, so it picks inside the cluster.
3. Group-limited routing (DeepSeek-V3 style): group score = sum of the group's two best expert
   scores; only the ``groups_per_token`` best groups stay selectable.
"""

from __future__ import annotations

import numpy as np

from placer.routing.stats import RoutingStats, stats_from_traces

#: score bonus that puts a clustered token's home cluster above every Gumbel draw
_CLUSTER_BONUS = 1e3


def synthetic_traces(
    num_experts: int,
    top_k: int,
    tokens: int,
    rng: np.random.Generator,
    zipf_exponent: float = 0.0,
    clusters: np.ndarray | None = None,
    cluster_affinity: float = 0.0,
    expert_group: np.ndarray | None = None,
    groups_per_token: int | None = None,
    ranking: np.ndarray | None = None,
) -> np.ndarray:
    """``[tokens, top_k]`` expert ids of one layer (see the module docstring). ``ranking``: the
    popularity rank of each expert (1 = hottest), drawn at random when not given (a later window
    of drifted routing passes :func:`drifted_ranking` of the earlier one)."""
    if ranking is None:
        ranking = rng.permutation(num_experts) + 1
    log_w = -zipf_exponent * np.log(ranking.astype(float))
    scores = log_w[None, :] + rng.gumbel(size=(tokens, num_experts))
    if clusters is not None and cluster_affinity > 0:
        num_clusters = int(clusters.max()) + 1
        home = rng.integers(num_clusters, size=tokens)
        clustered = rng.random(tokens) < cluster_affinity
        bonus = (clusters[None, :] == home[:, None]) & clustered[:, None]
        scores = scores + _CLUSTER_BONUS * bonus
    if expert_group is not None and groups_per_token is not None:
        num_groups = int(expert_group.max()) + 1
        if groups_per_token < num_groups:
            order = np.argsort(expert_group, kind="stable")
            grouped = scores[:, order].reshape(tokens, num_groups, -1)
            best_two = np.sort(grouped, axis=2)[:, :, -2:].sum(axis=2)
            keep = np.argsort(-best_two, axis=1)[:, :groups_per_token]
            allowed = np.zeros((tokens, num_groups), dtype=bool)
            np.put_along_axis(allowed, keep, True, axis=1)
            scores = np.where(allowed[:, expert_group], scores, -np.inf)
    top = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
    return top.astype(np.int64)


def drifted_ranking(ranking: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Routing drift between two windows: ``fraction`` of the experts, drawn at random, trade
    their popularity ranks among themselves (a random permutation of their ranks)."""
    moved = rng.choice(ranking.size, size=int(round(fraction * ranking.size)), replace=False)
    out = ranking.copy()
    out[moved] = ranking[rng.permutation(moved)]
    return out


def planted_clusters(num_experts: int, num_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster id of each expert: a random split into equal clusters (sizes differ by at most 1)."""
    return rng.permutation(num_experts) % num_clusters


def synthetic_stats(
    num_experts: int,
    top_k: int,
    num_layers: int,
    seed: int = 0,
    tokens: int = 4096,
    zipf_exponent: float = 0.0,
    coactivation_clusters: int = 0,
    cluster_affinity: float = 0.0,
    num_groups: int = 1,
    groups_per_token: int | None = None,
) -> RoutingStats:
    """Draw the traces of every MoE layer from one seed; the clusters are shared by all layers."""
    rng = np.random.default_rng(seed)
    clusters = planted_clusters(num_experts, coactivation_clusters, rng) if coactivation_clusters > 1 else None
    group = np.arange(num_experts) // (num_experts // num_groups) if num_groups > 1 else None
    limited = groups_per_token if group is not None else None
    traces = [
        synthetic_traces(num_experts, top_k, tokens, rng, zipf_exponent, clusters, cluster_affinity, group, limited)
        for _ in range(num_layers)
    ]
    parts = [f"synthetic (seed {seed}, {tokens} tokens/layer, Zipf {zipf_exponent:g}"]
    if clusters is not None:
        parts.append(f", {coactivation_clusters} planted clusters at affinity {cluster_affinity:g}")
    if limited is not None:
        parts.append(f", {limited} of {num_groups} groups per token")
    stats = stats_from_traces(traces, num_experts, "".join(parts) + ")", expert_group=group, groups_per_token=limited)
    if clusters is not None:
        object.__setattr__(stats, "planted_clusters", clusters)
    return stats
