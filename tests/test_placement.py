"""Expert placement: planted optimum on every backend, invariants, baselines, no-gain statement."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from placer.backends.placement import node_solver
from placer.placement.baselines import BASELINES
from placer.placement.data import LayerPlacementProblem, check_placement
from placer.placement.metrics import placement_metrics
from placer.placement.planner import place_layer
from placer.routing import synthetic_stats
from placer.routing.loaders import routing_stats
from placer.schema.routing import FileRouting


def _planted(affinity: float = 1.0, clusters: int = 4):
    stats = synthetic_stats(32, 4, 1, seed=2, tokens=3000, coactivation_clusters=clusters, cluster_affinity=affinity)
    return stats, LayerPlacementProblem(stats.layers[0], np.arange(8) // 2, 5)


@pytest.mark.parametrize("backend", [None, "cpsat", "milp"])
def test_planted_clusters_found(backend):
    # 4 nodes, every token picks inside one of 4 planted clusters of 8: the optimum puts each
    # cluster on a node, so a token reaches one node, remote with probability 3/4.
    stats, problem = _planted()
    # (backend None: the local search, whose redundant copies may sit beside another cluster)
    result = place_layer(problem, 1.10, node_solver(backend), time_limit_s=5)
    assert result.metrics.dedup_cross == pytest.approx(0.75, abs=0.01)
    clusters = stats.planted_clusters
    for node in range(4):
        held = [e for r in np.flatnonzero(problem.rank_node == node) for e in result.placement[r]]
        homes = {int(clusters[e]) for e in held}
        if backend is not None:
            assert len(homes) == 1
        # every cluster whole on some node
    for c in range(4):
        members = set(np.flatnonzero(clusters == c).tolist())
        assert any(
            members <= {e for r in np.flatnonzero(problem.rank_node == n) for e in result.placement[r]}
            for n in range(4)
        )
    assert result.metrics.max_over_mean <= 1.10
    contiguous = placement_metrics(BASELINES["contiguous"](problem), problem)
    assert contiguous.dedup_cross > 1.5  # random clusters split by the contiguous map


def test_backends_agree_and_prove():
    _, problem = _planted()
    cp = place_layer(problem, 1.10, node_solver("cpsat"), time_limit_s=5)
    mi = place_layer(problem, 1.10, node_solver("milp"), time_limit_s=5)
    assert cp.status == "optimal" and mi.status == "optimal"
    assert cp.objective == pytest.approx(mi.objective, rel=1e-4)
    assert cp.gap == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_invariants_random(seed):
    rng = np.random.default_rng(seed)
    experts, k = int(rng.choice([16, 24, 32])), int(rng.integers(1, 4))
    nodes, per_node = int(rng.integers(1, 4)), int(rng.choice([1, 2, 4]))
    ranks = nodes * per_node
    slots = -(-experts // ranks) + int(rng.integers(0, 3))
    stats = synthetic_stats(experts, k, 1, seed=seed, tokens=500, zipf_exponent=float(rng.uniform(0, 1)))
    problem = LayerPlacementProblem(stats.layers[0], np.arange(ranks) // per_node, slots)
    for backend in (None, "cpsat"):
        result = place_layer(problem, 1.25, node_solver(backend), time_limit_s=1)
        assert check_placement(result.placement, problem) == []
        load = np.asarray(result.metrics.rank_load)
        assert load.sum() == pytest.approx(k, rel=1e-9)
    for method in BASELINES.values():
        assert check_placement(method(problem), problem, allow_duplicates=True) == []


def test_independent_routing_no_gain_statement():
    from placer.placement.plan import NO_GAIN_THRESHOLD

    stats = synthetic_stats(64, 4, 2, seed=3, tokens=3000)
    gains = []
    for layer in stats.layers:
        problem = LayerPlacementProblem(layer, np.arange(16) // 4, 5)
        mine = place_layer(problem, 1.05, node_solver(None)).metrics.dedup_cross
        ref = placement_metrics(BASELINES["EPLB global"](problem), problem).dedup_cross
        gains.append((ref - mine) / ref)
    assert max(gains) < 3 * NO_GAIN_THRESHOLD  # nothing to exploit: within sampling noise


def test_metrics_match_cost_model_uniform():
    from placer.costmodel.traffic import contiguous_map, layer_traffic
    from placer.routing.stats import uniform_stats

    stats = uniform_stats(16, 2, 1)
    problem = LayerPlacementProblem(stats.layers[0], np.arange(8) // 4, 2)
    placement = contiguous_map(16, 8)
    mine = placement_metrics(placement, problem)
    ref = layer_traffic(placement, tuple(np.arange(8) // 4), 1, 2, tuple(stats.layers[0].loads))
    assert mine.plain_cross == pytest.approx(ref.plain_scaleout)
    # without traces, selections are independent, as (T4) with expert_probs
    assert mine.dedup_cross == pytest.approx(ref.dedup_scaleout)


def test_loaders(tmp_path):
    from placer.schema import ModelSpec

    model = ModelSpec.model_validate(json.loads(open("models/moe10b-e64.json").read()))
    layers = len(model.moe_layers)
    rng = np.random.default_rng(0)
    # two different experts per token (a token routed twice to one expert is refused by the loader)
    topk = {f"layer_{i}": np.stack([rng.choice(64, size=2, replace=False) for _ in range(50)]) for i in range(layers)}
    np.savez(tmp_path / "t.npz", **topk)
    stats = routing_stats(model, FileRouting(path=str(tmp_path / "t.npz"), format="npz_topk"))
    assert stats.layers[0].loads.sum() == pytest.approx(2.0)
    (tmp_path / "c.json").write_text(json.dumps({"logical_count": rng.integers(0, 9, size=(layers, 64)).tolist()}))
    stats = routing_stats(model, FileRouting(path=str(tmp_path / "c.json"), format="sglang_logical_count"))
    assert len(stats.layers) == layers and stats.layers[3].loads.sum() == pytest.approx(2.0)


def _skewed(seed: int, slots: int = 2):
    # 32 experts on 16 ranks in 8 nodes, Zipf 1.0: the hottest expert carries more than a node's
    # mean load, so copies kept in one home node cannot balance it
    stats = synthetic_stats(32, 2, 1, seed=seed, tokens=2000, zipf_exponent=1.0)
    return LayerPlacementProblem(stats.layers[0], np.arange(16) // 2, slots)


@pytest.mark.parametrize("seed", range(3))
def test_balance_at_least_eplb_global(seed):
    from placer.placement.balance import balance_lower_bound

    problem = _skewed(seed)
    loads = problem.routing.loads
    assert loads.max() > 2 * loads.sum() / 16  # hotter than one node's mean load: needs a spill
    result = place_layer(problem, 1.05, node_solver(None), time_limit_s=2)
    ref = placement_metrics(BASELINES["EPLB global"](problem), problem)
    assert check_placement(result.placement, problem) == []
    assert result.metrics.max_over_mean <= ref.max_over_mean + 1e-9
    bound = balance_lower_bound(loads, problem.num_ranks, problem.slots_per_rank)
    assert bound.max_over_mean <= result.metrics.max_over_mean + 1e-9


def test_balance_bound_hand_derived():
    from placer.placement.balance import balance_lower_bound

    # 4 ranks, mean 1; one expert of load 3 and one of 1 with 3 slots in all: the hot one gets at
    # most 2 copies (2 + 1 = 3 slots), so its busiest copy carries >= 1.5
    bound = balance_lower_bound(np.array([3.0, 1.0]), ranks=4, slots_per_rank=1)
    assert bound.max_over_mean == pytest.approx(1.0)  # 4 slots: 3 copies of 1.0 and one
    bound = balance_lower_bound(np.array([3.0, 1.0]), ranks=2, slots_per_rank=1)
    assert bound.max_over_mean == pytest.approx(1.5) and bound.expert == 0 and bound.copies == 1


def test_same_input_same_placement_whatever_the_clock(monkeypatch):
    # The budget is work, not a deadline: a clock that runs 1,000 times faster (as on a loaded or
    # slow machine) must not change the placement, and the layer's wall time stays near its budget.
    stats = synthetic_stats(64, 2, 1, seed=4, tokens=2000, zipf_exponent=0.8, coactivation_clusters=16)
    problem = LayerPlacementProblem(stats.layers[0], np.arange(32) // 4, 3)
    started = time.perf_counter()
    first = place_layer(problem, 1.02, node_solver("cpsat"), time_limit_s=0.3)
    wall = time.perf_counter() - started
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() * 1000.0)
    second = place_layer(problem, 1.02, node_solver("cpsat"), time_limit_s=0.3)
    assert check_placement(first.placement, problem) == []
    assert first.placement == second.placement
    assert wall < 0.3 + 1.0  # packing, metrics and the balance fallback come on top of the budget


def test_redundant_slots_traded_on_ep64():
    from placer.loading import load_plan
    from placer.placement.plan import place_plan
    from placer.problem import load_problem

    problem = load_problem("instances/ep64-128gpu.json")
    plan = load_plan("plans/seed002-ep64-tp2.json")
    report = place_plan(problem, plan, node_solver=None, time_limit_s=4.0, redundant_slots_per_gpu=(1, 0))
    trade = {c.redundant_per_gpu: c for c in report.slot_trade}
    assert set(trade) == {0, 1} and all(c.placed for c in trade.values())
    # one more expert per GPU costs, in the evaluator's breakdown, one expert's weights per MoE
    # layer: 16 layers x (up + down: 2 x 512 x 1024) x 2 B (fp16) / tp_moe 2 = 16,777,216 B
    from placer.evaluator import evaluate
    from placer.placement.slots import probe_plan

    weights = [
        evaluate(problem, probe_plan(plan, problem.model.moe_layers, 64, r), balanced=True)
        .stages[0]
        .memory.weights_bytes
        for r in (0, 1)
    ]
    assert weights[1] - weights[0] == pytest.approx(16 * 2 * 512 * 1024 * 2 / 2)
    # with no redundant slot the hottest expert sits on one rank alone: far worse balance
    assert trade[0].max_over_mean_worst > 2 * trade[1].max_over_mean_worst
    assert report.redundant_per_gpu == 1 and report.slots_per_rank == 2
    assert report.memory_max_redundant is not None and report.memory_max_redundant >= 1


def test_node_solver_by_name():
    from placer.backends.cpsat.placement import solve_node_model as cpsat
    from placer.backends.milp.placement import solve_node_model as milp

    assert node_solver("cpsat") is cpsat and node_solver("milp") is milp and node_solver(None) is None
    with pytest.raises(ValueError, match="choose from cpsat, milp"):
        node_solver("exhaustive")


# EPLB's README example (deepseek-ai/EPLB, README.md "Example"): two layers of 12 experts in 4 groups,
# 16 physical slots, 2 nodes x 4 GPUs; the published phy2log output, quoted as data.
EPLB_README_WEIGHT = [
    [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
    [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
]
EPLB_README_PHY2LOG = [
    [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
    [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
]


@pytest.mark.parametrize("layer", [0, 1])
def test_eplb_readme_example_reproduced(layer):
    from placer.placement.baselines import eplb_hierarchical, eplb_rebalance
    from placer.routing.stats import stats_from_loads

    weight = np.array(EPLB_README_WEIGHT[layer], dtype=float)
    assert eplb_rebalance(weight, 16, 4, 2, 8).tolist() == EPLB_README_PHY2LOG[layer]
    # the same through the baseline: 8 ranks of 2 slots on 2 nodes, groups of 3 experts
    stats = stats_from_loads([weight], 2, "readme", expert_group=np.arange(12) // 3)
    problem = LayerPlacementProblem(stats.layers[0], np.arange(8) // 4, 2, stats.expert_group, 2)
    flat = [e for rank in eplb_hierarchical(problem) for e in rank]
    assert flat == EPLB_README_PHY2LOG[layer]


def test_eplb_global_replica_counts_and_waste():
    from placer.placement.baselines import eplb_rebalance

    # global = one group on one node; loads 10, 6, 4, 2 on 3 GPUs x 2 slots. Copies by largest load
    # per copy: 10 -> e0 (5 each), then 6 -> e1 (3 each). Copies [e0 e1 e2 e3 e0 e1] weigh
    # [5 3 4 2 5 3]; heaviest first, lower index on ties, into the lightest GPU with room:
    # e0 -> g0 (5), e0 -> g1 (5), e2 -> g2 (4), e1 -> g2 (7, full), e1 -> g0 (tie 5/5: g0), e3 -> g1
    phy2log = eplb_rebalance(np.array([10.0, 6.0, 4.0, 2.0]), 6, 1, 1, 3)
    assert np.bincount(phy2log).tolist() == [2, 2, 1, 1]
    assert phy2log.tolist() == [0, 1, 0, 3, 2, 1]


def test_impossible_slot_counts_refused():
    from placer.errors import InputError
    from placer.placement.baselines import eplb_global, eplb_rebalance

    stats = synthetic_stats(256, 8, 1, seed=0, tokens=200)
    problem = LayerPlacementProblem(stats.layers[0], np.arange(64) // 8, 3)  # 192 slots < 256 experts
    with pytest.raises(InputError, match="slots_per_rank"):
        place_layer(problem, 1.05, None, time_limit_s=0.1)
    with pytest.raises(InputError, match="placement.slots"):
        eplb_global(problem)
    loads = np.ones(12)
    with pytest.raises(InputError, match="do not divide over 8 GPUs"):
        eplb_rebalance(loads, 20, 4, 2, 8)
    with pytest.raises(InputError, match="groups do not divide over 3 nodes"):
        eplb_rebalance(loads, 24, 4, 3, 6)
    with pytest.raises(InputError, match="5 equal groups"):
        eplb_rebalance(loads, 24, 5, 1, 6)


def test_expired_stop_returns_valid_map_quickly():
    # a deadline already passed: the layer gives the first step's construction (no local search,
    # no solver, only the one-map fallback); measured in work, not wall time: no solver status
    stats = synthetic_stats(64, 4, 1, seed=5, tokens=1000, zipf_exponent=1.0, coactivation_clusters=8)
    problem = LayerPlacementProblem(stats.layers[0], np.arange(16) // 4, 5)
    calls = []

    def stop():
        calls.append(1)
        return True

    result = place_layer(problem, 1.0001, node_solver("cpsat"), time_limit_s=30, stop=stop)
    assert check_placement(result.placement, problem) == []
    # the solver never ran (greedy construction, or EPLB global's map when more balanced)
    assert result.status in ("greedy", "balance-only") and calls


def test_group_limited_coactivation_hand_derived():
    from placer.placement.nodemodel import group_limited_coactivation

    # 4 experts in 2 groups, 1 group per token, top-2, equal loads: a token takes both experts of
    # one group, so same-group pairs have P = 1/2 and cross-group pairs P = 0
    co = group_limited_coactivation(np.full(4, 0.5), np.array([0, 0, 1, 1]), 1)
    assert co == pytest.approx(np.array([[0, 0.5, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 0.5], [0, 0, 0.5, 0]]))


def test_loads_only_group_limited_keeps_groups_on_nodes():
    from placer.routing.stats import stats_from_loads

    # 16 experts in 4 groups, 1 group per token, loads only (no traces): the declared routing
    # says a token stays in one group, so each of the 4 nodes should home one whole group
    rng = np.random.default_rng(1)
    group = rng.permutation(16) % 4
    stats = stats_from_loads([np.full(16, 1.0)], 4, "loads", expert_group=group, groups_per_token=1)
    problem = LayerPlacementProblem(stats.layers[0], np.arange(8) // 2, 2, stats.expert_group, 1)
    result = place_layer(problem, 1.05, node_solver(None), time_limit_s=1)
    for node in range(4):
        held = {e for r in np.flatnonzero(problem.rank_node == node) for e in result.placement[r]}
        assert len({int(group[e]) for e in held}) == 1


def test_layers_paced_by_time_left():
    from placer.placement.planner import place_layers

    # no time left after the first layer: every later layer is told to stop (construction or the
    # one-map fallback, no solver), with a valid map; the first, with no layer timed yet, solves
    stats = synthetic_stats(32, 4, 3, seed=6, tokens=800, zipf_exponent=0.5, coactivation_clusters=4)
    problems = [LayerPlacementProblem(layer, np.arange(8) // 2, 5) for layer in stats.layers]
    results = place_layers(problems, 1.10, node_solver("cpsat"), 3.0, remaining_s=lambda: 0.0)
    assert results[0].status != "greedy"
    assert all(r.status in ("greedy", "balance-only") for r in results[1:])
    assert all(check_placement(r.placement, p) == [] for r, p in zip(results, problems, strict=True))
