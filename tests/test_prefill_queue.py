"""(D2c)-(D2e) The disaggregated prefill queue: gated batch service, by hand and against its chain."""

from __future__ import annotations

import math

import pytest

from placer.serving_disagg import PromptSpread, _gated_chain, dealt_round_robin, gated_wait

FIXED = PromptSpread(0.0, (1.0,) * 8, True, 1.0)


@pytest.mark.parametrize("x", [0.1, 0.4, 0.7, 0.95])
def test_one_rank_by_hand(x):
    # P = 10 ms, fixed lengths: W = x (1/2 + x) P / (1 - x^2); x = 0.4: 0.4 x 0.9 x 10 / 0.84 = 4.2857 ms
    wait, p_wait = gated_wait(x / 0.010, 0.010, 1, FIXED)
    assert math.isclose(wait, x * (0.5 + x) * 0.010 / (1 - x * x), rel_tol=1e-12) and math.isclose(p_wait, x)
    if x == 0.4:
        assert math.isclose(wait, 0.0042857142857, rel_tol=1e-9)
    # a spread of lengths (uniform on [0, 2m]: scv 1/3) raises it by 1 + scv
    spread = PromptSpread(1 / 3, (1.0,), False, 2.0)
    assert math.isclose(gated_wait(x / 0.010, 0.010, 1, spread)[0], wait * 4 / 3, rel_tol=1e-12)


@pytest.mark.parametrize("x", [0.1, 0.4, 0.7])
def test_the_chain_of_one_rank_is_the_closed_form(x):
    # the step chain N' = max(1, Poisson(lambda N P)) solved numerically gives the one-rank moments:
    # E[T^2] / E[T] = P / (1 - x^2), share of time stepping x, and the same wait
    wait, busy, window = _gated_chain(x / 0.010, 0.010, 1, FIXED)
    assert math.isclose(wait, x * (0.5 + x) * 0.010 / (1 - x * x), rel_tol=1e-6)
    assert math.isclose(busy, x, rel_tol=1e-6) and math.isclose(window, 0.010 / (1 - x * x), rel_tol=1e-6)


def test_several_ranks_wait_grows_with_the_rate_across_the_fluid_switch():
    spread = PromptSpread.of_uniform(2000.0, 1999.0, 8)
    waits = [gated_wait(rho * 8 / 0.184, 0.184, 8, spread)[0] for rho in [i / 100 for i in range(1, 99)]]
    assert all(b > a for a, b in zip(waits, waits[1:], strict=False))
    assert gated_wait(8 / 0.184, 0.184, 8, spread) == (math.inf, 1.0)
    # light load, fixed lengths: a step rarely holds more than one prompt per rank, so the wait is
    # about the step in progress, u P / 2 with u the share of time stepping
    wait, busy = gated_wait(0.1 / 0.184, 0.184, 8, FIXED)
    assert math.isclose(wait, busy * 0.184 / 2, rel_tol=0.02)


def test_prompt_spread_of_uniform_and_histogram():
    # uniform on [1000, 3000] (mean 2000, half 1000): scv = 1000^2 / (3 x 2000^2) = 1/12; longest of
    # two = 2000 + 1000 / 3, of three = 2000 + 1000 / 2 (over the mean)
    spread = PromptSpread.of_uniform(2000.0, 1000.0, 3)
    assert math.isclose(spread.scv, 1 / 12) and math.isclose(spread.top, 1.5)
    assert [round(v, 9) for v in spread.max_of] == [1.0, round(1 + 1 / 6, 9), 1.25]
    assert spread.step(5, 3) == 5 / 3 and spread.step(2, 3) == spread.max_of[1]
    # histogram {100: 1, 300: 1}: mean 200, scv 1/4, longest of two: 300 with probability 3/4
    hist = PromptSpread.of_table([(100.0, 1.0), (300.0, 1.0)], 2)
    assert math.isclose(hist.scv, 0.25) and math.isclose(hist.max_of[1], (100 * 0.25 + 300 * 0.75) / 200)
    assert FIXED.step(9, 8) == 2.0  # fixed lengths: whole prompts on the busiest rank


def test_round_robin_closed_loop():
    # two replicas (c_a^2 = 1/2) at rho = 0.5: factor (1/2) exp(-2 x 0.5 x 0.25 / (3 x 0.5 x 0.5)) = 0.5 e^(-1/3)
    wait, p_wait = dealt_round_robin(0.010, 0.5, 0.5, 2)
    assert math.isclose(wait, 0.010 * 0.5 * math.exp(-1 / 3)) and math.isclose(p_wait, 0.5 * math.exp(-1 / 3))
    assert dealt_round_robin(0.010, 0.5, 0.5, 1) == (0.010, 0.5)
