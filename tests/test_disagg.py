"""Prefill/decode disaggregation: the plan document, the KV transfer, the two-pool serving model and
the solve that chooses aggregated or disaggregated (docs/cost-model.md D1-D8 and K1-K5).

The micro-instances replace the step timer by one with round figures (as tests/test_serving_solve.py
does) so the optimum of each can be derived by hand; the memory and rule checks still run on the
real evaluator. A referee prices every pair of pools from scratch with no pruning and must find the
optimum the solve's scans find.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

import placer.serving
import placer.serving_disagg
import placer.serving_solve
from placer.costmodel.kvtransfer import kv_bytes_per_request, kv_path, kv_transfer
from placer.errors import InputError
from placer.evaluator import evaluate
from placer.formulation.data import build_formulation
from placer.formulation.terms import terms_for
from placer.loading import load_any_plan
from placer.problem import Problem, build_problem, load_problem
from placer.result import SolveStatus
from placer.schema import DisaggregatedPlan, Instance, Parallelism, Plan, Pool, Stage
from placer.serving import burst_probe
from placer.serving_disagg import erlang_c, evaluate_disaggregated, mdc_wait_s, pool_nodes
from placer.serving_solve import burst_surrogate, partition_for, serving_terms
from placer.solve import solve
from placer.strategy import plan_from_starts
from tests.test_micro_instances import MICRO_GPU, micro
from tests.test_serving_solve import TINY

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("exhaustive", "cpsat", "milp")

# ISL = OSL = 100 tokens; TPOT <= 20.1 ms, mean TTFT <= 1 s; fewest GPUs.
RATE = {"kind": "rate", "prompt_tokens": {"min": 100, "max": 100}, "output_tokens": 100}
SLO = {"ttft_s": 1.0, "tpot_ms": 20.1}
FEWEST = {"primary": "min_gpus", "tie_breaks": [], "disaggregation": "allow"}


class RoundTimer:
    """Round figures on any plan: a decode step of b sequences takes 10 ms + 0.1 ms x b, prefill
    0.1 ms per prompt token, the chunk budget (10^6 tokens) and KV (10^9 tokens) never bind. The
    probe evaluation (memory and rules) is the real evaluator's."""

    def __init__(self, problem: Problem, plan: Plan) -> None:
        self.problem, self.plan = problem, plan
        self.replicas = plan.parallelism.replicas
        self.dp_attn = plan.parallelism.dp_attn
        self.chunk_tokens = 10**6
        self.tokens_per_decode_step = 1.0
        self.prompt_tokens = 100
        self.prefill_s_per_token = 1e-4
        self.kv_capacity_tokens = 10**9
        self.probe_evaluation = evaluate(burst_probe(problem, self.replicas * self.dp_attn, 100), plan)

    def decode_s(self, b: int) -> float:
        return 0.010 + 0.0001 * b if b > 0 else 0.0

    def decode_s_real(self, b: float) -> float:
        return 0.010 + 0.0001 * b if b > 0 else 0.0

    def prefill_s(self, tokens: float) -> float:
        return 1e-4 * tokens

    def step_s(self, decode_seqs: int, prefill_tokens: int) -> float:
        return self.decode_s(decode_seqs) + self.prefill_s(prefill_tokens)


@pytest.fixture
def round_timer(monkeypatch):
    for module in (placer.serving, placer.serving_solve, placer.serving_disagg):
        monkeypatch.setattr(module, "StepTimer", RoundTimer)


def rate_problem(rate_rps: float, objective: dict = FEWEST, gpus_per_node: int = 4, **hardware: object) -> Problem:
    """The round-figure rate instance on the micro GPU (``hardware`` overrides its figures)."""
    nodes = 8 // gpus_per_node
    gpu = dict(MICRO_GPU, gpus_per_node=gpus_per_node, nvlink_domain_gpus=gpus_per_node, **hardware)
    instance = {
        "name": "micro-disagg",
        "model": TINY,
        "hardware": gpu,
        "cluster": {"gpus_per_node": gpus_per_node, "num_nodes": nodes},
        "workload": {**RATE, "rate_rps": rate_rps},
        "slo": SLO,
        "objective": objective,
    }
    return build_problem(Instance.model_validate(instance))


def pool(gpus: int, replicas: int = 1, **degrees: int) -> Pool:
    par = Parallelism(replicas=replicas, **degrees)
    return Pool(gpus=gpus, parallelism=par, stages=[Stage(layers=(0, 1))] if par.pp == 1 else _two_stages())


def _two_stages() -> list[Stage]:
    return [Stage(layers=(0, 0)), Stage(layers=(1, 1))]


# Hand derivation, disaggregation wins (rate 99 requests/s, ISL = OSL = 100, e = 1).
# Aggregated replica (dp 1), Q4/Q1b with the round timer: c = b prompt tokens per step, so a step
# is 10 + 0.1 (1 + b) + 0.1 b = 10.1 + 0.2 b ms and X = b / (100 t). TPOT <= 20.1 ms caps b at 50
# and X at 50 / (100 x 0.0201) = 24.88 requests/s per GPU: 99 requests/s need 4 GPUs (24.75 each:
# b = 49.5, TPOT 20.0 ms); 3 GPUs (33 each: b = 98.0, TPOT 29.7 ms) break TPOT.
# Disaggregated: a decode replica has no prefill in its steps, 10.1 + 0.1 b ms, so two 1-GPU
# replicas carry 49.5 requests/s each at b = 99.0, TPOT 20.0 ms (one replica at 99: b = 9,999,
# TPOT 1.01 s). One 1-GPU prefill replica: P = 0.1 ms x 100 = 10 ms, capacity 100 requests/s,
# utilisation 0.99, (D2c) gated wait of one rank (fixed lengths) rho (1/2 + rho) P / (1 - rho^2) =
# 0.99 x 1.49 x 10 ms / 0.0199 = 741.26 ms: TTFT 751.26 ms plus a 3 us KV transfer over NVLink
# (1 + 2 = 3 GPUs share a 4-GPU node). Optimum: 3 GPUs, 1 prefill + 2 decode.
def test_disaggregation_wins_by_hand(round_timer):
    problem = rate_problem(99.0)
    for backend in BACKENDS:
        result = solve(problem, backend=backend, workers=1)
        assert result.status == SolveStatus.OPTIMAL, backend
        plan = result.plan
        assert isinstance(plan, DisaggregatedPlan), backend
        assert (plan.prefill.gpus, plan.decode.gpus, plan.decode.parallelism.replicas) == (1, 2, 2), backend
        point = result.evaluation.point
        assert math.isclose(point.decode_batch, 99.0, rel_tol=1e-6)
        assert math.isclose(point.tpot_s, 0.0200, rel_tol=1e-6)
        assert math.isclose(point.prefill_wait_s, 0.99 * 1.49 * 0.01 / (1 - 0.99**2), rel_tol=1e-9)
        assert point.transfer.path.kind == "nvlink"
        # K1-K4: 2 layers x 2 (K and V) x 4 heads x 64 x 2 B = 2,048 B a token, 204,800 B a request,
        # alone 1 us + 204,800 B / 100 GB/s = 3.048 us; processor sharing at 99 x 204,800 / 100 GB/s
        assert point.transfer.bytes_per_request == 204_800
        assert math.isclose(point.transfer.alone_s, 3.048e-6, rel_tol=1e-9)
        rho = 99 * 204_800 / 1e11
        assert math.isclose(point.transfer.mean_s, 3.048e-6 / (1 - rho), rel_tol=1e-9)
        assert math.isclose(point.ttft_s, 0.010 + point.prefill_wait_s + point.transfer.mean_s, rel_tol=1e-9)
    # the aggregated optimum alone is 4 GPUs, 4 replicas
    off = solve(rate_problem(99.0, {**FEWEST, "disaggregation": "off"}), backend="exhaustive")
    assert off.status == SolveStatus.OPTIMAL and isinstance(off.plan, Plan)
    assert off.plan.gpus == 4 and off.plan.parallelism.replicas == 4
    assert math.isclose(off.evaluation.serving.tpot_s, 0.0200, rel_tol=1e-6)


# Hand derivation, disaggregation loses on the link: one GPU per node and a 100 kB/s scale-out link,
# so every KV transfer crosses nodes and takes 2 us + 204,800 B / 10^5 B/s = 2.048 s alone, above
# the 1 s TTFT: no pair is feasible and the aggregated optimum (4 GPUs, above) stands.
def test_disaggregation_loses_on_a_slow_link_by_hand(round_timer):
    problem = rate_problem(99.0, gpus_per_node=1, scaleout_bandwidth_gb_per_s=1e-4)
    result = solve(problem, backend="exhaustive")
    assert result.status == SolveStatus.OPTIMAL
    assert isinstance(result.plan, Plan) and result.plan.gpus == 4
    plan = DisaggregatedPlan(gpus=3, prefill=pool(1), decode=pool(2, replicas=2))
    evaluation = evaluate_disaggregated(problem, plan)
    assert evaluation.point.transfer.path.kind == "scaleout"
    assert math.isclose(evaluation.point.transfer.alone_s, 2e-6 + 2.048, rel_tol=1e-9)
    assert not evaluation.feasible
    assert {c.name for c in evaluation.slo if not c.ok} >= {"kv_link", "stable"}


# Hand derivation, disaggregation loses at low demand: 20 requests/s fit one aggregated GPU
# (b = 33.7, TPOT 16.8 ms); any disaggregated plan needs a GPU per pool.
def test_disaggregation_loses_at_low_demand_by_hand(round_timer):
    result = solve(rate_problem(20.0), backend="exhaustive")
    assert result.status == SolveStatus.OPTIMAL
    assert isinstance(result.plan, Plan) and result.plan.gpus == 1
    assert math.isclose(result.evaluation.serving.tpot_s, 0.0101 + 0.0002 * (20.2 / 0.6), rel_tol=1e-6)


def _all_pairs_best(problem: Problem) -> tuple[tuple[float, ...], list[DisaggregatedPlan]]:
    """The referee: every pair of pool configurations under the GPU cap, priced from scratch by
    evaluate_disaggregated with no pool condition and no bound; the best lexicographic terms and
    the plans that reach them."""
    data = build_formulation(burst_surrogate(problem, 1))
    plans = []
    for config in data.configs:
        starts = partition_for(data, config)
        if starts is not None:
            plans.append(plan_from_starts(problem, config.par, starts, "pool"))
    terms = terms_for(problem.objective)
    best: tuple[float, ...] = (math.inf,)
    winners: list[DisaggregatedPlan] = []
    for p, d in itertools.product(plans, plans):
        if p.gpus + d.gpus > data.gpu_cap:
            continue
        plan = DisaggregatedPlan(
            gpus=p.gpus + d.gpus,
            prefill=Pool(gpus=p.gpus, parallelism=p.parallelism, stages=p.stages),
            decode=Pool(gpus=d.gpus, parallelism=d.parallelism, stages=d.stages),
        )
        evaluation = evaluate_disaggregated(problem, plan)
        if not evaluation.feasible:
            continue
        values = serving_terms(terms, evaluation)
        key = tuple(values[t] for t in terms)
        if key < tuple(b * (1 - 1e-12) for b in best):
            best, winners = key, [plan]
        elif all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(key, best, strict=True)):
            winners.append(plan)
    return best, winners


@pytest.mark.parametrize(
    "workload, objective",
    [
        # kind rate, fewest GPUs: the scan by total with the pools' own necessary conditions
        ({**RATE, "rate_rps": 60.0}, {"primary": "min_gpus", "tie_breaks": ["min_cross_node_traffic"]}),
        # closed loop, throughput per GPU: best bound first with pruning
        (
            {
                "kind": "concurrency",
                "concurrency": 64,
                "prompt_tokens": {"min": 2000, "max": 2000},
                "output_tokens": 200,
            },
            {"primary": "max_throughput_per_gpu", "tie_breaks": ["min_cross_node_traffic"]},
        ),
    ],
)
def test_scans_find_the_referee_optimum_on_the_real_cost_model(workload, objective):
    problem = micro(
        TINY,
        workload,
        {"ttft_s": 0.5, "tpot_ms": 5.0, "max_gpus": 4},
        objective={**objective, "disaggregation": "only"},
    )
    best, winners = _all_pairs_best(problem)
    assert winners, "the referee found no feasible pair: the case would test nothing"
    for backend in BACKENDS:
        result = solve(problem, backend=backend, workers=1)
        assert result.status == SolveStatus.OPTIMAL, backend
        got = tuple(result.terms[t] for t in terms_for(problem.objective))
        assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(got, best, strict=True))
        labels = {(w.prefill.label, w.decode.label) for w in winners}
        assert (result.plan.prefill.label, result.plan.decode.label) in labels, backend


def test_closed_loop_meets_littles_law():
    problem = load_problem(ROOT / "instances/deepseek-v3-h200-serving.json")
    plan = DisaggregatedPlan(
        gpus=16,
        prefill=Pool(gpus=8, parallelism=Parallelism(dp_attn=8, ep=8), stages=[Stage(layers=(0, 60))]),
        decode=Pool(gpus=8, parallelism=Parallelism(dp_attn=8, ep=8), stages=[Stage(layers=(0, 60))]),
    )
    point = evaluate_disaggregated(problem, plan).point
    assert point.stable
    in_flight = (
        point.rate_rps * (point.prefill_wait_s + point.prefill_latency_s + point.transfer.mean_s)
        + point.decode_batch * point.decode_replicas
    )
    assert math.isclose(in_flight, 170, rel_tol=1e-6)
    # K1: DeepSeek-V3's MLA latent (512 + 64) x 61 layers x 2 B (BF16 KV) x 4,000 prompt tokens
    assert point.transfer.bytes_per_request == 576 * 61 * 2 * 4000
    assert kv_bytes_per_request(problem.model, 4000) == 576 * 61 * 2 * 4000
    # 16 GPUs on two 8-GPU nodes: the pools sit on a node each, the KV crosses nodes
    assert pool_nodes(plan, problem.fabric) == ([0], [1])
    assert point.transfer.path.kind == "scaleout"


def test_kv_path_and_lanes():
    problem = load_problem(ROOT / "instances/deepseek-v3-h200-serving.json")
    fabric = problem.fabric
    assert kv_path(fabric, [0], [0]).kind == "nvlink"
    assert kv_path(fabric, [0], [1]).kind == "scaleout"
    # MLA's latent is replicated over TP: one lane per stage, whatever the TP
    wide = kv_transfer(
        problem.model, Parallelism(tp=8, ep=8), Parallelism(pp=2, dp_attn=4, ep=4), kv_path(fabric, [0], [1]), 4000, 1.0
    )
    assert wide.lanes == 1  # min(prefill: pp 1 x 1 shard, decode: pp 2 x 1 shard)
    # at a rate that fills the links the transfer cannot keep up
    swamped = kv_transfer(
        problem.model, Parallelism(tp=8, ep=8), Parallelism(tp=8, ep=8), kv_path(fabric, [0], [1]), 4000, 1e4
    )
    assert not swamped.stable and math.isinf(swamped.mean_s)


def test_queueing_formulas():
    # Erlang C for one server is the utilisation; M/D/1 wait is rho S / (2 (1 - rho))
    assert math.isclose(erlang_c(1, 0.5), 0.5)
    wait, p_wait = mdc_wait_s(1, 50.0, 0.01)
    assert math.isclose(wait, 0.5 * 0.01 / (2 * 0.5)) and math.isclose(p_wait, 0.5)
    # two servers at offered load 1: C(2, 1) = 1/3 (textbook value)
    assert math.isclose(erlang_c(2, 1.0), 1 / 3)
    assert mdc_wait_s(2, 300.0, 0.01) == (math.inf, 1.0)


def test_plan_documents_load_and_fail_by_field(tmp_path):
    written = tmp_path / "p.json"
    doc = {
        "schema_version": "placer.plan/2",
        "mode": "disaggregated",
        "gpus": 3,
        "prefill": {"gpus": 1, "parallelism": {}, "stages": [{"layers": [0, 1]}]},
        "decode": {"gpus": 2, "parallelism": {"replicas": 2}, "stages": [{"layers": [0, 1]}]},
    }
    written.write_text(json.dumps(doc))
    plan = load_any_plan(written)
    assert isinstance(plan, DisaggregatedPlan) and plan.decode.parallelism.replicas == 2
    # every aggregated plan of the repository still loads as one
    for old in sorted((ROOT / "plans").glob("*.json")):
        assert isinstance(load_any_plan(old), Plan)
    bad = dict(doc, gpus=4)
    written.write_text(json.dumps(bad))
    with pytest.raises(InputError) as err:
        load_any_plan(written)
    assert "gpus" in str(err.value)
    bad = json.loads(json.dumps(doc))
    bad["decode"]["gpus"] = 3
    written.write_text(json.dumps(dict(bad, gpus=4)))
    with pytest.raises(InputError) as err:
        load_any_plan(written)
    assert "decode" in str(err.value)


def test_burst_workloads_have_no_disaggregated_point():
    problem = micro(TINY, {"batch_size": 4, "prompt_tokens": {"min": 100, "max": 100}, "output_tokens": 10}, {})
    with pytest.raises(ValueError, match="burst"):
        evaluate_disaggregated(problem, DisaggregatedPlan(gpus=2, prefill=pool(1), decode=pool(1)))


# Auto concurrency with disaggregation, by hand (round timer, ISL = OSL = 100, closed loop, mean TTFT
# <= 1 s, TPOT <= 20.1 ms). A 1-GPU prefill replica (P = 10 ms) at utilisation rho waits (D2c) the
# gated rho (1/2 + rho) 10 ms / (1 - rho^2); the closed loop's requests are dealt round robin (D2d),
# so with R replicas the wait is scaled by (1/R) exp(-2 (1 - rho) (1 - 1/R)^2 / (3 rho / R)).
# One replica: TTFT <= 1 s binds at 100 rho^2 + rho / 2 - 99 = 0, rho = 0.99250, X = 99.25/s;
# two: 10 ms + (1/2) exp(-(1 - rho) / (3 rho)) rho (1/2 + rho) 10 ms / (1 - rho^2) = 1 s, rho =
# 0.996234 (bisection below), X = 199.25/s. A 1-GPU decode replica carries at most 49.75 requests/s
# within TPOT (b <= 100 at 10 + 0.1 (1 + b) ms), so decode needs twice the prefill GPUs: 2 + 4 GPUs
# serve 19,924 output tokens/s, 3,320.7 per GPU, above 1 + 2 (9,925 / 3 = 3,308.4). Every other
# split is lower: 1 + 1 and 2 + 2 are decode-bound (49.75 x 100 / 2 = 2,487), 1 + 3 prefill-bound
# (9,925 / 4 = 2,481), 2 + 3 decode-bound (149.25 x 100 / 5 = 2,985); one aggregated GPU stops near
# b = 50 (about 2,490). The concurrency is what Little's law puts in flight at that rate, about 597,
# and one more request breaks TTFT.
def test_auto_concurrency_with_disaggregation(round_timer):
    problem = micro(
        TINY,
        {"kind": "concurrency", "concurrency": 1000, "prompt_tokens": {"min": 100, "max": 100}, "output_tokens": 100},
        SLO,
        objective={
            "primary": "max_throughput_per_gpu",
            "tie_breaks": [],
            "concurrency": "auto",
            "disaggregation": "only",
        },
    )
    result = solve(problem, backend="exhaustive")
    assert result.status == SolveStatus.OPTIMAL and isinstance(result.plan, DisaggregatedPlan)
    plan = result.plan
    assert plan.decode.gpus == 2 * plan.prefill.gpus and plan.prefill.parallelism.replicas == plan.prefill.gpus
    point = result.evaluation.point
    assert plan.prefill.gpus == 2

    def ttft(rho: float) -> float:
        gated = rho * (0.5 + rho) * 0.010 / (1 - rho**2)
        return 0.010 + 0.5 * math.exp(-(1 - rho) / (3 * rho)) * gated

    lo, hi = 0.9, 0.9999
    for _ in range(60):
        lo, hi = ((lo + hi) / 2, hi) if ttft((lo + hi) / 2) <= 1.0 else (lo, (lo + hi) / 2)
    rho = lo
    assert math.isclose(rho, 0.996234, rel_tol=1e-6)
    assert math.isclose(point.rate_rps, 100 * rho * plan.prefill.gpus, rel_tol=1e-4)
    assert math.isclose(point.output_tokens_per_s_per_gpu, 100 * rho * 100 * 2 / 6, rel_tol=1e-4)
    assert 0.99 <= point.ttft_s <= 1.0 and point.tpot_s * 1e3 <= 20.1  # an integer n: just under the bound
    # one more request in flight breaks an SLO: the concurrency is the largest
    n = round(point.concurrency)
    more = problem.replace(workload=problem.workload.model_copy(update={"concurrency": n + 1, "batch_size": n + 1}))
    assert not evaluate_disaggregated(more, plan).feasible
