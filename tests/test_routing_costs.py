"""Routing statistics in the cost model: uniform unchanged, skew priced, one shared implementation."""

from __future__ import annotations

import numpy as np
import pytest

from placer.costmodel.traffic import contiguous_map, layer_traffic
from placer.placement.data import LayerPlacementProblem
from placer.placement.metrics import placement_metrics
from placer.routing import synthetic_stats, uniform_stats


def test_uniform_statistics_equal_no_statistics():
    stats = uniform_stats(16, 2, 1)
    domains = tuple(np.arange(8) // 4)
    a = layer_traffic(contiguous_map(16, 8), domains, 1, 2)
    b = layer_traffic(contiguous_map(16, 8), domains, 1, 2, routing=stats.layers[0])
    assert a.gpu_pairs_per_token == pytest.approx(b.gpu_pairs_per_token)
    assert a.plain_scaleout == pytest.approx(b.plain_scaleout)


def test_skew_sets_busiest_gpu_load():
    # one expert takes every first choice: its rank serves one selection per token of two
    traces = np.stack([np.zeros(98, dtype=int), np.arange(98) % 7 + 1], axis=1)  # 14 tokens per partner
    from placer.routing.stats import stats_from_traces

    layer = stats_from_traces([traces], 8, "test").layers[0]
    t = layer_traffic(contiguous_map(8, 4), (0, 0, 1, 1), 1, 2, routing=layer)
    loads = np.asarray(t.gpu_pairs_per_token)
    assert loads.sum() == pytest.approx(2.0)
    # rank 0 holds experts 0 and 1: 1 + 1/7 selections per token; the mean is 0.5
    assert loads[0] == pytest.approx(1 + 1 / 7)
    assert t.imbalance == pytest.approx((1 + 1 / 7) / 0.5)


def test_metrics_and_cost_model_share_trace_traffic():
    stats = synthetic_stats(
        32, 4, 1, seed=5, tokens=800, zipf_exponent=0.7, coactivation_clusters=4, cluster_affinity=0.6
    )
    layer = stats.layers[0]
    rank_node = np.arange(8) // 2
    placement = (
        (0, 1, 2, 3, 31),
        (4, 5, 6, 7, 0),
        (8, 9, 10, 11),
        (12, 13, 14, 15),
        (16, 17, 18, 19),
        (20, 21, 22, 23),
        (24, 25, 26, 27),
        (28, 29, 30, 31),
    )
    mine = placement_metrics(placement, LayerPlacementProblem(layer, rank_node, 5))
    ref = layer_traffic(placement, tuple(rank_node), 1, 4, routing=layer)
    assert mine.dedup_cross == pytest.approx(ref.dedup_scaleout)
    assert mine.plain_cross == pytest.approx(ref.plain_scaleout)
    assert np.asarray(mine.rank_load) == pytest.approx(np.asarray(ref.gpu_pairs_per_token))


def test_evaluator_uses_statistics_and_balanced_is_lower():
    from pathlib import Path

    from placer.evaluator import evaluate
    from placer.loading import load_plan
    from placer.problem import load_problem

    root = Path(__file__).resolve().parents[1]
    problem = load_problem(root / "instances" / "ep64-128gpu.json")
    plan = load_plan(root / "plans" / "seed002-ep64-tp2.json")
    real, flat = evaluate(problem, plan), evaluate(problem, plan, balanced=True)
    assert not real.uniform_routing and flat.uniform_routing
    assert real.load_imbalance_max > 2.0 and flat.load_imbalance_max == pytest.approx(1.0)
    assert real.ttft_s > flat.ttft_s and real.tpot_s > flat.tpot_s


@pytest.mark.parametrize("top_k", [1, 2, 3, 6])
def test_trace_reach_sum_equals_the_token_by_token_product(top_k):
    """The arranged sum (matrix products for top-1/top-2, distinct expert sets above) is the
    plain per-token product of (T4), up to float summation order."""
    import numpy as np

    from placer.costmodel.traffic import _trace_miss

    rng = np.random.default_rng(top_k)
    keep = rng.random((8, 32, 5))
    traces = np.stack([rng.choice(32, top_k, replace=False) for _ in range(500)])
    traces[:100] = traces[100:200]  # repeated expert sets, as skewed routing gives
    plain = np.prod(keep[:, traces, :], axis=2).sum(axis=1)
    assert np.allclose(_trace_miss(keep, traces), plain, rtol=1e-12, atol=0)
