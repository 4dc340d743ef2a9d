"""The continuous-batching simulator (:mod:`placer.simulate`): cases derivable by hand with a fake
timer, a step-by-step reference loop the event loop must match exactly, and the referee test of the
analytic serving model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from placer.errors import InputError
from placer.simulate import Arrivals, simulate_replica


@dataclass
class FakeTimer:
    """step_s = base + per_seq x decode + per_token x prefill."""

    kv_capacity_tokens: int
    chunk_tokens: int
    base_s: float = 0.01
    per_seq_s: float = 0.0
    per_token_s: float = 0.0
    replicas: int = 1

    def step_s(self, decode_seqs: int, prefill_tokens: int) -> float:
        return self.base_s + self.per_seq_s * decode_seqs + self.per_token_s * prefill_tokens


def fixed(prompt: int, output: int):
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full(n, prompt), np.full(n, output)

    return draw


def uniform(prompt: tuple[int, int], output: tuple[int, int]):
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(prompt[0], prompt[1] + 1, n), rng.integers(output[0], output[1] + 1, n)

    return draw


def test_one_request_in_a_closed_loop():
    """N = 1: TTFT = ceil(ISL / chunk) steps, TPOT = one step, a request every ceil(ISL/chunk) + OSL - 1 steps."""
    tau = 0.02
    timer = FakeTimer(kv_capacity_tokens=10_000, chunk_tokens=256, base_s=tau)
    run = simulate_replica(timer, Arrivals("closed", concurrency=1), fixed(1000, 10), requests=50, seed=1)
    assert run.ttft_s.size == 50 and run.tpot_s.size == 50
    assert run.ttft_s == pytest.approx(np.full(50, 4 * tau))
    assert run.tpot_s == pytest.approx(np.full(50, tau))
    cycle = (4 + 9) * tau
    assert run.requests_per_s == pytest.approx(1 / cycle)
    assert run.output_tokens_per_s == pytest.approx(10 / cycle)
    assert run.mean_running == pytest.approx(1.0)
    assert run.mean_decode_batch == pytest.approx(9 / 13)
    assert run.mean_queue == pytest.approx(0.0)


def test_kv_capacity_serialises_a_closed_loop():
    """KV for one request only, N = 3: each request waits for the two ahead of it (S steps each),
    then prefills; S = ceil(ISL/chunk) + OSL - 1."""
    tau = 0.01
    timer = FakeTimer(kv_capacity_tokens=600, chunk_tokens=128, base_s=tau)
    run = simulate_replica(timer, Arrivals("closed", concurrency=3), fixed(500, 20), requests=30, seed=0)
    prefill_steps = 4
    cycle_steps = prefill_steps + 19
    assert run.ttft_s == pytest.approx(np.full(30, (2 * cycle_steps + prefill_steps) * tau))
    assert run.tpot_s == pytest.approx(np.full(30, tau))
    assert run.mean_running == pytest.approx(1.0)
    assert run.mean_queue == pytest.approx(2.0)


def test_burst_shares_the_prefill_budget_first_come_first_served():
    """B requests at t = 0: request i's first token ends step ceil((i + 1) ISL / chunk)."""
    tau = 0.05
    timer = FakeTimer(kv_capacity_tokens=1_000_000, chunk_tokens=256, base_s=tau)
    run = simulate_replica(timer, Arrivals("batch", count=8), fixed(300, 4), requests=1, seed=0)
    expected = [math.ceil((i + 1) * 300 / 256) * tau for i in range(8)]
    assert sorted(run.ttft_s) == pytest.approx(expected)
    assert run.tpot_s == pytest.approx(np.full(8, tau))
    assert run.warmup_s == 0.0


def test_poisson_single_server_matches_md1():
    """One request at a time (KV for one), one output token, one step each: an M/D/1 queue, whose
    mean wait is rho tau / (2 (1 - rho)); TTFT = wait + tau."""
    tau = 0.1
    timer = FakeTimer(kv_capacity_tokens=100, chunk_tokens=64, base_s=tau)
    rho = 0.6
    run = simulate_replica(timer, Arrivals("poisson", rate_rps=rho / tau), fixed(50, 1), requests=20_000, seed=3)
    expected = rho * tau / (2 * (1 - rho)) + tau
    assert run.ttft.mean == pytest.approx(expected, rel=0.03)
    assert run.tpot_s.size == 0
    assert run.requests_per_s == pytest.approx(rho / tau, rel=0.03)


def reference(timer: FakeTimer, arrivals: Arrivals, lengths, count: int, seed: int) -> list[tuple[float, ...]]:
    """A literal step-by-step loop (no jumps, no heap), closed loop or batch: (arrival, first token,
    finish, output tokens) of the first ``count`` requests in arrival order."""
    rng = np.random.default_rng(seed)
    prompts, outputs = lengths(rng, 1024)
    drawn = 0
    log: list[list[float]] = []
    queue: list[int] = []
    running: list[dict] = []
    kv = 0
    t = 0.0

    def arrive(at: float) -> None:
        nonlocal drawn
        log.append([at, math.nan, math.nan, int(prompts[drawn]), int(outputs[drawn])])
        queue.append(drawn)
        drawn += 1

    for _ in range(arrivals.concurrency if arrivals.kind == "closed" else arrivals.count):
        arrive(0.0)
    while any(math.isnan(entry[2]) for entry in log[:count]):
        while queue and kv + log[queue[0]][3] + log[queue[0]][4] <= timer.kv_capacity_tokens:
            i = queue.pop(0)
            kv += log[i][3] + log[i][4]
            running.append({"i": i, "prefill": log[i][3], "left": log[i][4]})
        if not running:
            break
        decoders = [r for r in running if r["prefill"] == 0]
        budget = timer.chunk_tokens
        plan = []
        for r in running:
            if r["prefill"] and budget:
                take = min(budget, r["prefill"])
                plan.append((r, take))
                budget -= take
        t += timer.step_s(len(decoders), timer.chunk_tokens - budget)
        for r in decoders:
            r["left"] -= 1
        for r, take in plan:
            r["prefill"] -= take
            if r["prefill"] == 0:
                log[r["i"]][1] = t
                r["left"] -= 1
        for r in [r for r in running if r["left"] == 0]:
            running.remove(r)
            log[r["i"]][2] = t
            kv -= log[r["i"]][3] + log[r["i"]][4]
            if arrivals.kind == "closed":
                arrive(t)
    return [(a, f, e, o) for a, f, e, _, o in log[:count]]


@pytest.mark.parametrize(
    ("arrivals", "capacity", "chunk", "seed"),
    [
        (Arrivals("closed", concurrency=5), 4_000, 300, 0),
        (Arrivals("closed", concurrency=12), 2_500, 512, 1),
        (Arrivals("closed", concurrency=3), 100_000, 64, 2),
        (Arrivals("batch", count=40), 6_000, 256, 3),
    ],
)
def test_event_loop_matches_a_step_by_step_loop(arrivals, capacity, chunk, seed):
    """Jumping over runs of identical steps changes nothing: every request's TTFT and TPOT equal those
    of a literal one-step-at-a-time loop, with a step time that depends on both batch terms."""
    timer = FakeTimer(capacity, chunk, base_s=0.004, per_seq_s=0.0003, per_token_s=0.00002)
    lengths = uniform((20, 900), (1, 60))
    count = 120 if arrivals.kind == "closed" else arrivals.count
    run = simulate_replica(timer, arrivals, lengths, requests=count, seed=seed, warmup_requests=0)
    ref = reference(timer, arrivals, lengths, count, seed)
    ref_ttft = sorted(f - a for a, f, _, _ in ref)
    ref_tpot = sorted((e - f) / (o - 1) for _, f, e, o in ref if o > 1)
    assert sorted(run.ttft_s) == pytest.approx(ref_ttft, rel=1e-9, abs=1e-12)
    assert sorted(run.tpot_s) == pytest.approx(ref_tpot, rel=1e-9, abs=1e-12)


def test_same_seed_same_figures_other_seed_other_figures():
    timer = FakeTimer(50_000, 512, base_s=0.01, per_seq_s=0.001, per_token_s=0.00001)
    lengths = uniform((100, 2000), (10, 200))
    runs = [
        simulate_replica(timer, Arrivals("poisson", rate_rps=8.0), lengths, requests=300, seed=seed)
        for seed in (7, 7, 8)
    ]
    assert np.array_equal(runs[0].ttft_s, runs[1].ttft_s) and np.array_equal(runs[0].tpot_s, runs[1].tpot_s)
    assert not np.array_equal(runs[0].ttft_s, runs[2].ttft_s)


def test_a_request_larger_than_the_kv_cache_is_an_input_error():
    timer = FakeTimer(kv_capacity_tokens=1_000, chunk_tokens=256)
    with pytest.raises(InputError, match="workload: a request of 900 prompt \\+ 200 output tokens"):
        simulate_replica(timer, Arrivals("closed", concurrency=2), fixed(900, 200), requests=10)


def test_a_prompt_is_prefilled_on_one_attention_dp_rank():
    """Two DP ranks of 256 tokens each (512 per step in all): a 300-token prompt still needs two steps,
    and two prompts go through side by side on their own ranks; a third waits for a rank."""
    tau = 0.01
    timer = FakeTimer(kv_capacity_tokens=20_000, chunk_tokens=512, base_s=tau)
    timer.dp_attn = 2  # type: ignore[attr-defined]
    run = simulate_replica(timer, Arrivals("batch", count=3), fixed(300, 2), requests=1, seed=0)
    assert sorted(run.ttft_s) == pytest.approx([2 * tau, 2 * tau, 3 * tau])
