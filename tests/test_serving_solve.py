"""placer solve for serving workloads: scoring by the serving model, selection in every backend.

The micro-instances below replace the serving model's step timer by one with round figures, so the
concurrency decision can be derived by hand (the memory checks still run on the real evaluator).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

import placer.serving
import placer.serving_solve
from placer.backends import run_selection
from placer.errors import InputError
from placer.formulation.selection import SelectionData
from placer.problem import Problem, build_problem, load_problem
from placer.result import SolveStatus
from placer.schema import Instance
from placer.serving_solve import score_configurations
from placer.solve import solve
from placer.stopping import StopToken
from tests.test_micro_instances import MICRO_GPU, SHORT, micro

ROOT = Path(__file__).resolve().parents[1]

BACKENDS = ("exhaustive", "cpsat", "milp")

# A tiny dense model: 2 layers, hidden 256, 4 heads; KV is 2 x 256 x 2 B = 1 kB per token and
# layer, so 1,000 sequences of 200 tokens hold 0.4 GB: memory never binds below.
TINY = {
    "name": "micro-serving",
    "num_layers": 2,
    "hidden_size": 256,
    "attention": {"kind": "mha", "num_heads": 4},
    "ffn_size": 1024,
    "vocab_size": 1000,
}
SERVING = {"kind": "concurrency", "prompt_tokens": {"min": 100, "max": 100}, "output_tokens": 100}
SLO = {"ttft_s": 1.0, "tpot_ms": 20.05}


class RoundTimer:
    """A step timer with round figures: a decode step of b sequences takes 10 ms + 0.1 ms x b on
    any plan, prefill is free, the chunk budget (10^6 tokens) and KV (10^9 tokens) never bind."""

    def __init__(self, problem: Problem, plan) -> None:  # noqa: ANN001
        self.problem, self.plan = problem, plan
        self.replicas = plan.parallelism.replicas
        self.dp_attn = plan.parallelism.dp_attn
        self.chunk_tokens = 10**6
        self.tokens_per_decode_step = 1.0
        self.prompt_tokens = 100
        self.prefill_s_per_token = 0.0
        self.kv_capacity_tokens = 10**9

    def decode_s(self, b: int) -> float:
        return 0.010 + 0.0001 * b if b > 0 else 0.0

    def decode_s_real(self, b: float) -> float:
        return 0.010 + 0.0001 * b if b > 0 else 0.0

    def prefill_s(self, tokens: float) -> float:
        return 0.0

    def step_s(self, decode_seqs: int, prefill_tokens: int) -> float:
        return self.decode_s(decode_seqs)


@pytest.fixture
def round_timer(monkeypatch):
    monkeypatch.setattr(placer.serving, "StepTimer", RoundTimer)
    monkeypatch.setattr(placer.serving_solve, "StepTimer", RoundTimer)


def tiny(workload: dict, objective: dict) -> Problem:
    return micro(TINY, {**SERVING, **workload}, SLO, objective=objective)


# Hand derivation (docs/cost-model.md Q4-Q7 with the round timer, ISL = OSL = 100): the step is
# t(b) = 10 + 0.1 b ms (prefill free), a request's prefill takes one step, the prefill queue is
# empty (rho_p = b 1e-6), so Little's law gives n = b + X t = b (1 + 1/OSL) = 1.01 b. TPOT = t(b)
# <= 20.05 ms  <=>  b <= 100.5  <=>  n <= 101.505: the largest concurrency per replica is 101
# (b = 100, TPOT 20.0 ms, 100 / 0.020 = 5,000 output tokens/s per replica). Every plan runs the
# same replica, so tokens/s per GPU is 5,000 R / G, largest (5,000) with one GPU per replica; the
# tie among replica counts goes to the lowest configuration index: 1 GPU, 1 replica, n = 101.
def test_auto_concurrency_hand_derived(round_timer):
    problem = tiny(
        {"concurrency": 1000}, {"primary": "max_throughput_per_gpu", "tie_breaks": [], "concurrency": "auto"}
    )
    for backend in BACKENDS:
        result = solve(problem, backend=backend)
        assert result.status == SolveStatus.OPTIMAL, backend
        point = result.evaluation.serving
        assert result.plan.gpus == 1 and result.plan.parallelism.replicas == 1, backend
        assert point.concurrency_per_replica == 101, backend
        assert math.isclose(point.tpot_s, 0.020, rel_tol=1e-3), backend
        assert math.isclose(point.output_tokens_per_s_per_gpu, 5000, rel_tol=1e-3), backend
        assert math.isclose(result.objective, 1 / point.output_tokens_per_s_per_gpu, rel_tol=1e-9)


# Fewest GPUs for 300 requests in flight: a replica meets TPOT <= 20.05 ms up to n = 101 (above),
# so 300 requests need ceil(300 / 101) = 3 replicas (n = 100: b = 99.0, TPOT 19.9 ms); two
# replicas (n = 150: b = 148.5, TPOT 24.9 ms) break it. With 2 layers and 4 heads the only
# 3-GPU configuration is one GPU per replica, three replicas.
def test_min_gpus_for_a_given_concurrency_hand_derived(round_timer):
    problem = tiny({"concurrency": 300}, {"primary": "min_gpus", "tie_breaks": []})
    for backend in BACKENDS:
        result = solve(problem, backend=backend)
        assert result.status == SolveStatus.OPTIMAL, backend
        assert result.plan.gpus == 3 and result.plan.parallelism.replicas == 3, backend
        assert result.evaluation.serving.concurrency_per_replica == 100, backend
        assert result.bound == 3 and result.gap == 0.0


def test_infeasible_when_no_replica_meets_the_slo(round_timer):
    # 10 ms is the step of an empty batch: no concurrency meets TPOT <= 10 ms
    problem = micro(TINY, {**SERVING, "concurrency": 10}, {"tpot_ms": 10.0}, objective={"primary": "min_gpus"})
    result = solve(problem, backend="exhaustive")
    assert result.status == SolveStatus.INFEASIBLE
    assert any("tpot" in line for line in result.explanation)


def test_stop_token_returns_best_so_far_without_a_false_proof(round_timer):
    # 100 requests in flight: one GPU serves them (n = 100, TPOT 19.9 ms) and is the optimum
    # (every other plan runs the same replica on more GPUs, or splits the requests).
    problem = tiny({"concurrency": 100}, {"primary": "max_throughput_per_gpu", "tie_breaks": []})
    full = solve(problem, backend="exhaustive")
    assert full.status == SolveStatus.OPTIMAL and full.plan.gpus == 1
    # Stopped after scoring the first configuration (in GPU order): the same plan, but not proven
    # and with no bound (nothing bounds the throughput of the configurations never scored).
    stopped = solve(problem, backend="exhaustive", work_limit=1)
    assert stopped.status == SolveStatus.FEASIBLE
    assert stopped.bound is None and stopped.gap is None
    assert stopped.search.stopped is not None and not stopped.search.formulation_complete
    assert stopped.objective == full.objective
    # A deadline already past: nothing scored, no plan.
    expired = solve(problem, backend="exhaustive", stop=StopToken.after(0.0))
    assert expired.status == SolveStatus.NO_PLAN and expired.plan is None
    # Fewest GPUs stopped before the 3-GPU configuration: the GPU count of the next one is a bound.
    fewest = tiny({"concurrency": 300}, {"primary": "min_gpus", "tie_breaks": []})
    early = solve(fewest, backend="exhaustive", work_limit=1)
    assert early.status == SolveStatus.NO_PLAN and early.plan is None


def test_selection_backends_agree_on_ties_and_orders():
    rng = random.Random(7)
    for trial in range(20):
        terms = ("max_throughput_per_gpu", "min_cross_node_traffic")[: 1 + trial % 2]
        pool = [rng.choice([1e-3, 2e-3, 2e-3 + 1e-13, 3e-3]) for _ in range(4)]
        values = tuple(
            tuple(rng.choice(pool) if t == terms[0] else float(rng.randint(0, 2)) for t in terms)
            for _ in range(rng.randint(1, 12))
        )
        data = SelectionData(terms, values)
        expected = data.best_reference()
        for backend in BACKENDS:
            solution = run_selection(backend, data)
            assert solution.config_index == expected, (trial, backend)
            assert solution.status == SolveStatus.OPTIMAL
    empty = SelectionData(("min_gpus",), ())
    for backend in BACKENDS:
        assert run_selection(backend, empty).status == SolveStatus.INFEASIBLE


@pytest.mark.parametrize("name", ["qwen3-235b-h200-serving", "mixtral-8x7b-h100-serving"])
def test_backends_agree_on_the_serving_instances(name):
    problem = load_problem(ROOT / "instances" / f"{name}.json")
    scoring = score_configurations(problem, StopToken())
    assert scoring.complete and scoring.feasible
    answers = {b: run_selection(b, scoring.selection) for b in BACKENDS}
    indices = {b: s.config_index for b, s in answers.items()}
    assert len(set(indices.values())) == 1, indices
    assert all(s.status == SolveStatus.OPTIMAL for s in answers.values())
    # the chosen plan serves the instance's 170 requests within both SLOs
    chosen = scoring.feasible[answers["exhaustive"].config_index]
    point = chosen.evaluation.serving
    assert point.concurrency_per_replica * point.replicas == 170
    assert point.ttft_s <= problem.slo.ttft_s and point.tpot_s * 1e3 <= problem.slo.tpot_ms
    # no feasible candidate has a higher throughput per GPU than the chosen one
    best = max(s.evaluation.serving.output_tokens_per_s_per_gpu for s in scoring.feasible)
    assert math.isclose(point.output_tokens_per_s_per_gpu, best, rel_tol=1e-9)


def test_burst_path_unchanged_and_auto_needs_concurrency_kind():
    burst = micro(TINY, SHORT, {}, objective={"primary": "min_gpus", "concurrency": "auto"})
    with pytest.raises(InputError) as err:
        solve(burst, backend="exhaustive")
    assert "objective.concurrency" in str(err.value)
    plain = micro(TINY, SHORT, {}, objective={"primary": "min_gpus"})
    result = solve(plain, backend="exhaustive")
    assert result.status == SolveStatus.OPTIMAL and result.evaluation.serving is None
    assert "selection" not in result.search.backend_choice
    offline = build_problem(
        Instance.model_validate(
            {
                "name": "micro-offline",
                "model": TINY,
                "hardware": dict(MICRO_GPU),
                "cluster": {"gpus_per_node": 4, "num_nodes": 2},
                "workload": {**SERVING, "kind": "offline"},
                "slo": {},
                "objective": {"primary": "min_gpus", "concurrency": "auto"},
            }
        )
    )
    with pytest.raises(InputError):
        solve(offline, backend="exhaustive")


def test_every_formulation_term_has_a_selection_scale():
    from placer.formulation.selection import TERM_SCALE
    from placer.formulation.terms import TERMS

    assert set(TERM_SCALE) == set(TERMS)
