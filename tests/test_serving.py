"""Serving workloads: the schema's kinds, the StepTimer and the analytic steady state (Q1)-(Q9).

The micro example's figures are derived by hand in the comments; the invariants are checked on
the shipped Mixtral serving instance with a hand-written plan (TP2 x 4 replicas on 8 H100).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from placer.errors import InputError
from placer.evaluator import evaluate
from placer.loading import load_plan
from placer.problem import Problem, load_problem
from placer.schema import Plan
from placer.serving import (
    ServingModel,
    StepTimer,
    evaluate_serving,
    expected_max_tokens,
    md1_wait_s,
    serving_point,
    wait_quantile_s,
)

ROOT = Path(__file__).resolve().parents[1]
MIXTRAL = ROOT / "instances" / "mixtral-8x7b-h100-serving.json"
MIXTRAL_PLAN = {
    "schema_version": "placer.plan/1",
    "name": "mixtral-tp2-x4",
    "gpus": 8,
    "nodes": 1,
    "parallelism": {"pp": 1, "tp": 2, "dp_attn": 1, "ep": 1, "tp_moe": 2, "replicas": 4},
    "stages": [{"layers": [0, 31]}],
}


@pytest.fixture(scope="module")
def mixtral() -> tuple[Problem, Plan]:
    return load_problem(MIXTRAL), Plan.model_validate(MIXTRAL_PLAN)


def _with(problem: Problem, **workload: object) -> Problem:
    return problem.replace(workload=problem.workload.model_copy(update=workload))


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance", "plan"),
    [("moe10b.json", "seed000-tp2-ep4-pp4.json"), ("ep64-128gpu.json", "seed002-ep64-tp2.json")],
)
def test_instance_v1_is_burst_with_unchanged_figures(instance: str, plan: str, tmp_path: Path) -> None:
    """A placer.instance/1 file means burst; the same file as /2 with kind burst gives the same figures."""
    path = ROOT / "instances" / instance
    problem = load_problem(path)
    assert problem.workload.kind == "burst"
    spec = load_plan(ROOT / "plans" / plan)
    old = evaluate(problem, spec)
    served = evaluate_serving(problem, spec)
    assert served == old and served.serving is None
    doc = json.loads(path.read_text())
    doc["schema_version"] = "placer.instance/2"
    doc["workload"]["kind"] = "burst"
    for key in ("model", "hardware"):
        if isinstance(doc[key], str) and doc[key].endswith(".json"):
            doc[key] = str(ROOT / doc[key])
    copy = tmp_path / instance
    copy.write_text(json.dumps(doc))
    again = evaluate(load_problem(copy), spec)
    assert again.metrics() == old.metrics()


BASE = {
    "schema_version": "placer.instance/2",
    "name": "x",
    "model": str(ROOT / "models" / "mixtral-8x7b.json"),
    "hardware": "h100-sxm",
    "cluster": {"gpus_per_node": 8, "num_nodes": 1},
    "workload": {"kind": "concurrency", "concurrency": 64, "prompt_tokens": {"min": 1000, "max": 1000}},
}

# (changes to the workload or slo, field the message names, words of the reason)
BAD = [
    ({"workload": {"kind": "concurrency"}}, "workload.concurrency", "required for kind 'concurrency'"),
    ({"workload": {"kind": "rate"}}, "workload.rate_rps", "required for kind 'rate'"),
    ({"workload": {"kind": "burst"}}, "workload.batch_size", "required"),
    ({"workload": {"kind": "rate", "rate_rps": 2.0, "concurrency": 8}}, "workload.concurrency", "only meaningful"),
    ({"workload": {"kind": "offline", "rate_rps": 2.0}}, "workload.rate_rps", "only meaningful"),
    ({"workload": {"kind": "burst", "batch_size": 4, "max_batch_size": 8}}, "workload.max_batch_size", "serving"),
    ({"workload": {"kind": "offline", "output_tokens_mean": 900}}, "workload.output_tokens_mean", "larger than"),
    (
        {"workload": {"kind": "offline", "prompt_tokens": {"min": 10, "max": 100, "mean": 200}}},
        "workload.prompt_tokens.mean",
        "outside",
    ),
    ({"workload": {"kind": "sometimes"}}, "workload.kind", "concurrency"),
    ({"slo": {"ttft_s": 2.0, "ttft_percentile": "p95"}}, "slo.ttft_percentile", "p99"),
    ({"schema_version": "placer.instance/1"}, "workload.kind", "placer.instance/2"),
]


def _document(changes: dict[str, object]) -> dict[str, object]:
    doc = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if key == "workload":
            doc["workload"] = {"prompt_tokens": BASE["workload"]["prompt_tokens"], "output_tokens": 500, **value}
        else:
            doc[key] = value
    doc["workload"].setdefault("output_tokens", 500)
    return doc


@pytest.mark.parametrize(("changes", "field", "words"), BAD, ids=[case[1] for case in BAD])
def test_invalid_combinations_name_the_field(changes: dict, field: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_document(changes)))
    with pytest.raises(InputError) as caught:
        load_problem(path)
    fields = [f for f, _ in caught.value.problems]
    assert field in fields, caught.value.problems
    assert words in dict(caught.value.problems)[field]


def test_invalid_kind_exits_2_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_document({"workload": {"kind": "rate"}})))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(MIXTRAL_PLAN))
    run = subprocess.run(
        [sys.executable, "-m", "placer", "evaluate", str(path), str(plan)], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 2
    assert "workload.rate_rps" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


# placer solve handles the serving kinds since the serving solve (tests/test_serving_solve.py).


# -- hand-derived micro example ----------------------------------------------------------------


def _micro_model(
    max_batch: int | None = None, kv_capacity: int = 10**6, chunk: int = 1000, dp: int = 1, fixed: bool = False
) -> ServingModel:
    """ISL 1,000, OSL 100, one token per step; decode step 10 ms + 0.1 ms per sequence, prefill
    10 us per token, chunk budget 1,000 tokens, one DP rank, one replica of 2 GPUs."""
    workload = SimpleNamespace(
        serving_prompt_tokens=1000.0,
        serving_output_tokens=100.0,
        prompt_tokens=SimpleNamespace(min=500, max=1500, mean=None if fixed else 1000.0),
        output_tokens=150,
        output_tokens_mean=None if fixed else 100.0,
        max_batch_size=max_batch,
        kind="concurrency",
    )
    timer = SimpleNamespace(
        problem=SimpleNamespace(workload=workload),
        plan=SimpleNamespace(gpus=2),
        replicas=1,
        dp_attn=dp,
        chunk_tokens=chunk,
        tokens_per_decode_step=1.0,
        kv_capacity_tokens=kv_capacity,
        decode_s_real=lambda b: 0.010 + 0.0001 * b,
        prefill_s=lambda c: 1e-5 * c,
    )
    return ServingModel(timer)  # type: ignore[arg-type]


def test_micro_example_by_hand() -> None:
    """At b = 50: c = 50 x 1000 / 100 = 500 tokens/step; t = 10 + 5 + 5 = 20 ms; X = 50 / (100 x
    0.02) = 25 requests/s; rho_p = 500 / 1000 = 0.5; prefill latency 1 step of 15 ms decode + 10 ms
    for the 1,000-token chunk = 25 ms; M/D/1 wait 0.5 x 20 ms / (2 x 0.5) = 10 ms; TTFT 35 ms;
    n = 50 + 25 x 0.035 = 50.875 in flight; KV 50 x 1050 + 25 x 0.025 x 500 = 52,812.5 tokens."""
    model = _micro_model()
    state = model.state(50.0)
    assert state.prefill_tokens_per_step == pytest.approx(500)
    assert state.step_s == pytest.approx(0.020)
    assert state.requests_per_s == pytest.approx(25.0)
    assert state.prefill_utilisation == pytest.approx(0.5)
    assert state.prefill_latency_s == pytest.approx(0.025)
    assert state.prefill_wait_s == pytest.approx(0.010)
    assert state.in_flight == pytest.approx(50.875)
    assert state.kv_tokens == pytest.approx(52_812.5)
    # in the closed loop a decoder sees 1 + 50 (1 - 1 / 50.875) = 49.98 sequences (Q5b): 2 us off
    point = model.closed_loop(50.875)
    assert point.decode_batch == pytest.approx(50.0, rel=1e-5)
    assert point.ttft_s == pytest.approx(0.035, rel=1e-4)
    assert point.tpot_s == pytest.approx(0.020, rel=1e-4)
    assert point.output_tokens_per_s_per_replica == pytest.approx(2500, rel=1e-4)
    assert point.output_tokens_per_s_per_gpu == pytest.approx(1250, rel=1e-4)


def test_seen_batch_and_busiest_rank_by_hand() -> None:
    """(Q5b) a decoder sees itself and the others; (Q1b) E[max] of the ranks' prompt tokens."""
    model = _micro_model()
    assert model.seen_batch(0.5, math.inf) == pytest.approx(1.5)  # open loop: 1 + Poisson(b) others
    assert model.seen_batch(3.0, 4.0) == pytest.approx(3.25)  # closed loop of 4: 1 + 3 x 3/4
    assert model.seen_batch(0.3, None) == 1.0  # offline: the batch itself, at least one
    # one rank busy half the steps with 1,000 tokens: 500; two such ranks: 1,000 x (1 - 0.5^2) = 750
    assert expected_max_tokens(0.0, 0.5, ((1000.0, 1.0),), 1) == pytest.approx(500)
    assert expected_max_tokens(0.0, 0.5, ((1000.0, 1.0),), 2) == pytest.approx(750)
    # my 200 tokens against one other rank busy half the time: 200 + 800 x 0.5
    assert expected_max_tokens(200.0, 0.5, ((1000.0, 1.0),), 1) == pytest.approx(600)
    # a full chunk and a tail, always busy: the mean, 5,120
    assert expected_max_tokens(0.0, 1.0, ((8192.0, 1.0), (2048.0, 1.0)), 1) == pytest.approx(5120)


def test_packing_and_tiny_batch_by_hand() -> None:
    """Chunk 4,000 > ISL 1,000 (Q6a): at b = 50 the prompt's step carries its 1,000 tokens and the
    c = 500 that arrive alongside: 15 + 15 = 30 ms; wait M/D/1 rho 0.125, service 1/4 of a 20 ms
    step: 0.125 x 5 / (2 x 0.875) ms. At b = 0.5 in an open loop (Q5b) the step is that of 1.5
    sequences plus 5 prompt tokens: 10.15 + 0.05 ms, so X = 0.5 / (100 x 10.2 ms) > 0."""
    model = _micro_model(chunk=4000)
    state = model.state(50.0)
    assert state.step_s == pytest.approx(0.020)
    assert state.prefill_latency_s == pytest.approx(0.030)
    assert state.prefill_wait_s == pytest.approx(0.125 * 0.005 / (2 * 0.875))
    tiny = model.state(0.5, math.inf)
    assert tiny.step_s == pytest.approx(0.01015 + 0.00005)
    assert tiny.requests_per_s == pytest.approx(0.5 / (100 * 0.0102))


def test_attention_dp_and_phase_lock_by_hand() -> None:
    """DP 2, chunk 1,000 per rank (Q1b): at b = 50, c = 500 a step, 250 per rank, each rank busy a
    quarter of the steps with 1,000 tokens; the step pays 2 x 1,000 x (1 - 0.75^2) = 875 tokens:
    15 + 8.75 ms; the prompt's own step meets the other rank's chunk a quarter of the time, and
    either way is charged 2 x 1,000 tokens: 15 + 20 ms. Fixed lengths in a closed loop of 60 (Q6b):
    both ranks prefill full chunks together: step 15 + 5 ms (c), prompt 15 + 20 ms, no wait."""
    model = _micro_model(chunk=2000, dp=2)
    state = model.state(50.0)
    assert state.step_s == pytest.approx(0.015 + 0.00875)
    assert state.prefill_latency_s == pytest.approx(0.035)
    locked = _micro_model(chunk=2000, dp=2, fixed=True)
    assert locked.phase_locked
    state = locked.state(50.0, 60.0)
    assert state.step_s == pytest.approx(locked.timer.decode_s_real(1 + 50 * (1 - 1 / 60)) + 0.005)
    assert state.prefill_latency_s == pytest.approx(0.035)
    assert state.prefill_wait_s == 0.0


def test_queue_formulas_by_hand() -> None:
    assert md1_wait_s(0.5, 2.0) == pytest.approx(1.0)  # 0.5 x 2 / (2 x 0.5)
    assert md1_wait_s(1.0, 2.0) == math.inf
    # P(W > x) = rho exp(-rho x / W): with rho 0.5, W 1 s the p90 is 2 ln 5 s; p50 waits not at all
    assert wait_quantile_s(1.0, 0.5, 0.9) == pytest.approx(2 * math.log(5))
    assert wait_quantile_s(1.0, 0.5, 0.5) == 0.0


def test_micro_batch_ceiling_and_admission_wait() -> None:
    """max_batch_size 20 caps b; the requests beyond wait outside, (n - n(20)) / X(20) by Little."""
    model = _micro_model(max_batch=20)
    capped = model.closed_loop(100.0)
    state = model.state(20.0)
    assert capped.decode_batch == pytest.approx(20.0)
    assert capped.admission_limit == "max_batch_size"
    assert capped.wait_s == pytest.approx(state.prefill_wait_s + (100 - state.in_flight) / state.requests_per_s)


# -- invariants on a real instance ----------------------------------------------------------------


def test_step_timer_uses_the_evaluator(mixtral: tuple[Problem, Plan]) -> None:
    """A decode step of b sequences per replica is the evaluator's TPOT under a burst of b x replicas."""
    problem, plan = mixtral
    timer = StepTimer(problem, plan)
    burst = _with(problem, kind="burst", concurrency=None, batch_size=32 * plan.parallelism.replicas)
    assert timer.step_s(32, 0) == pytest.approx(evaluate(burst, plan).tpot_s)
    assert timer.step_s(32, 1000) == pytest.approx(timer.step_s(32, 0) + 1000 * timer.prefill_s_per_token)
    assert timer.kv_capacity_tokens > 0 and timer.replicas == 4


def test_closed_loop_invariants(mixtral: tuple[Problem, Plan]) -> None:
    problem, plan = mixtral
    model = ServingModel(StepTimer(problem, plan))
    points = [model.closed_loop(n) for n in (1, 4, 16, 64, 256, 1024)]
    tpots = [p.tpot_s for p in points]
    rates = [p.output_tokens_per_s_per_replica for p in points]
    free = [p.admission_limit is None for p in points]
    # TPOT grows with load until the batch ceiling, then stays (the excess waits outside)
    for i in range(len(points) - 1):
        both_capped = not free[i] and not free[i + 1]
        assert tpots[i + 1] == tpots[i] if both_capped else tpots[i + 1] > tpots[i], tpots
    assert free[:4] == [True] * 4 and not free[-1]
    assert all(a <= b * (1 + 1e-9) for a, b in zip(rates, rates[1:], strict=False)), rates
    best = model.offline()
    assert rates[-1] == pytest.approx(best.output_tokens_per_s_per_replica, rel=1e-6)  # saturates at offline
    assert rates[2] / rates[1] > rates[-1] / rates[-2]  # diminishing returns
    for p in points:  # Little's law: n = X x lifetime
        lifetime = p.ttft_s + model.osl / model.e * p.step_s
        assert p.concurrency_per_replica == pytest.approx(p.requests_per_s / p.replicas * lifetime, rel=1e-6)
    # the largest load meets the KV ceiling and waits outside the engine
    assert points[-1].admission_limit == "kv_cache"
    assert points[-1].kv_tokens_used <= points[-1].kv_capacity_tokens
    assert points[-1].wait_s > 10 * points[2].wait_s


def test_kv_overflow_is_refused(mixtral: tuple[Problem, Plan]) -> None:
    """Prompts too long for the KV memory left after the weights: no steady state, infeasible."""
    problem, plan = mixtral
    from placer.schema import PromptTokens

    huge = _with(problem, prompt_tokens=PromptTokens(min=2_000_000, max=2_000_000), output_tokens=500)
    point = serving_point(huge, plan)
    assert not point.stable and "KV memory" in (point.reason or "")


def test_rate_stability_and_evaluation(mixtral: tuple[Problem, Plan]) -> None:
    problem, plan = mixtral
    capacity = serving_point(_with(problem, kind="offline", concurrency=None), plan).requests_per_s
    slow = serving_point(_with(problem, kind="rate", concurrency=None, rate_rps=0.5 * capacity), plan)
    fast = serving_point(_with(problem, kind="rate", concurrency=None, rate_rps=0.9 * capacity), plan)
    assert slow.stable and fast.stable
    assert slow.utilisation == pytest.approx(0.5, rel=1e-6)
    assert slow.ttft_s < fast.ttft_s and slow.tpot_s < fast.tpot_s
    assert fast.ttft_percentiles_s["p50"] <= fast.ttft_percentiles_s["p90"] <= fast.ttft_percentiles_s["p99"]
    over = _with(problem, kind="rate", concurrency=None, rate_rps=1.01 * capacity)
    point = serving_point(over, plan)
    assert not point.stable and "utilisation" in (point.reason or "")
    evaluation = evaluate_serving(over, plan)
    assert not evaluation.feasible
    assert not next(c for c in evaluation.slo if c.name == "stable").ok


def test_evaluation_takes_the_slo_percentile(mixtral: tuple[Problem, Plan]) -> None:
    problem, plan = mixtral
    capacity = serving_point(_with(problem, kind="offline", concurrency=None), plan).requests_per_s
    rate = _with(problem, kind="rate", concurrency=None, rate_rps=0.8 * capacity)
    p99 = rate.replace(slo=rate.slo.model_copy(update={"ttft_percentile": "p99"}))
    evaluation = evaluate_serving(p99, plan)
    assert evaluation.ttft_s == pytest.approx(evaluation.serving.ttft_percentiles_s["p99"])  # type: ignore[union-attr]
    assert next(c for c in evaluation.slo if c.name == "ttft").value == pytest.approx(evaluation.ttft_s)
    concurrency = evaluate_serving(problem, plan)
    assert concurrency.tpot_s == pytest.approx(concurrency.serving.tpot_s)  # type: ignore[union-attr]
    assert concurrency.feasible


def test_unstable_load_writes_strict_json(mixtral: tuple[Problem, Plan]) -> None:
    """Infinite latencies of an unserved rate are null in the plan JSON (JSON has no infinity)."""
    from placer.report.plan_json import dumps, plan_with_figures

    problem, plan = mixtral
    over = _with(problem, kind="rate", concurrency=None, rate_rps=1e4)
    text = dumps(plan_with_figures(evaluate_serving(over, plan)))

    def refuse(constant: str) -> float:
        raise ValueError(constant)

    document = json.loads(text, parse_constant=refuse)
    assert document["evaluation"]["serving"]["stable"] is False
    assert document["evaluation"]["serving"]["ttft_s"] is None
