"""Re-solve loop: a plan that meets its SLO at balanced load but breaks it once experts are placed
on skewed routing is cut, and the next round's plan is kept (with the rounds reported)."""

from __future__ import annotations

from pathlib import Path

from placer.problem import load_problem
from placer.result import SolveStatus
from placer.schema.routing import SyntheticRouting
from placer.solve import solve

ROOT = Path(__file__).resolve().parents[1]


def _skewed_mixtral(ttft_s: float):
    # Mixtral-8x7B on 8 H100, Zipf-0.6 synthetic routing, and an engine run without redundant
    # experts (cost_parameters.redundant_experts_per_gpu = 0): with 8 experts on 8 EP ranks the
    # hottest expert sits alone on a rank, so the placed load cannot be balanced.
    base = load_problem(ROOT / "instances" / "mixtral-8x7b-h100.json")
    return base.replace(
        routing=SyntheticRouting(seed=1, tokens=2048, zipf_exponent=0.6),
        params=base.params.model_copy(update={"redundant_experts_per_gpu": 0}),
        slo=base.slo.model_copy(update={"ttft_s": ttft_s}),
    )


def test_placed_plan_breaking_ttft_is_cut_and_resolved():
    # The balanced optimum tp2 dp4 ep8 breaks TTFT <= 10 s once placed (max/mean load 1.95); one
    # stage, so the placed figures are the configuration's and the cut is valid. Round 2's
    # tp2 dp4 ep4 tpm2 halves the expert imbalance's reach (two experts per rank, max/mean 1.28)
    # and meets TTFT at 8.3 s.
    result = solve(_skewed_mixtral(10.0), workers=1)
    lines = result.search.resolve
    assert lines[0].startswith("round 1") and "breaks ['ttft']" in lines[0] and "valid cut" in lines[0]
    assert lines[1].startswith("round 2") and "meets every constraint" in lines[1]
    par = result.plan.parallelism
    assert (par.tp, par.dp_attn, par.ep, par.tp_moe) == (2, 4, 4, 2) and result.plan.gpus == 8
    assert result.evaluation.feasible and result.evaluation.ttft_s <= 10.0
    assert not result.evaluation.uniform_routing
    assert result.status == SolveStatus.OPTIMAL


def test_rounds_exhausted_is_no_plan_not_a_feasible_one():
    # At TTFT <= 8 s no 8-GPU configuration the rounds reach meets the SLO once placed: the result
    # must not read as a solution (status no plan, exit 4), and it says what the last one breaks.
    from placer.api import exit_code

    result = solve(_skewed_mixtral(8.0), workers=1)
    assert result.status == SolveStatus.NO_PLAN and exit_code(result) == 4
    assert result.evaluation is not None and not result.evaluation.feasible
    assert any("breaks ['ttft']" in line for line in result.explanation)


def test_without_statistics_one_round():
    result = solve(load_problem(ROOT / "instances" / "mixtral-8x7b-h100.json"), workers=1)
    assert len(result.search.resolve) == 1 and result.status == SolveStatus.OPTIMAL
