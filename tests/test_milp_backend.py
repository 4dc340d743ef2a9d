"""The MILP backend (PuLP: HiGHS or CBC) agrees with the exhaustive reference, and its plans pass
the evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from placer.backends.exhaustive import solve as exhaustive_solve
from placer.backends.milp import solve as milp_solve
from placer.evaluator import evaluate
from placer.formulation.data import build_formulation
from placer.problem import load_problem
from placer.result import SolveStatus
from placer.schema.workload import Objective
from placer.solve import plan_from_solution

INSTANCES = Path(__file__).resolve().parent.parent / "instances"


def _check_agrees(problem, max_gpus: int):
    data = build_formulation(problem, max_gpus=max_gpus)
    milp = milp_solve(data, time_limit_s=None, workers=1)
    reference = exhaustive_solve(data)
    assert milp.status == reference.status == SolveStatus.OPTIMAL
    assert milp.terms.keys() == reference.terms.keys()
    for name, value in reference.terms.items():
        assert math.isclose(milp.terms[name], value, rel_tol=1e-6, abs_tol=1e-12), (name, milp.terms[name], value)
    assert milp.bound is not None and math.isclose(milp.bound, milp.terms[next(iter(milp.terms))], rel_tol=1e-6)
    config = data.configs[milp.config_index]
    assert len(milp.stage_starts) == config.par.pp
    assert evaluate(problem, plan_from_solution(data, milp)).feasible
    return milp


@pytest.mark.parametrize("name", ["moe10b", "ep64-128gpu", "mixtral-8x7b-h100"])
def test_milp_matches_exhaustive(name: str) -> None:
    _check_agrees(load_problem(INSTANCES / f"{name}.json"), max_gpus=8)


def test_milp_matches_exhaustive_with_pipeline_split() -> None:
    """Throughput objective with a TTFT tie-break: the optimum splits mixtral into two stages."""
    problem = load_problem(INSTANCES / "mixtral-8x7b-h100.json")
    problem = problem.replace(
        objective=Objective(primary="max_throughput_per_gpu", throughput_phase="prefill", tie_breaks=["min_ttft"])
    )
    milp = _check_agrees(problem, max_gpus=8)
    assert len(milp.stage_starts) >= 2


def test_milp_infeasible() -> None:
    data = build_formulation(load_problem(INSTANCES / "moe10b-decode.json"), max_gpus=4)
    solution = milp_solve(data, workers=1)
    assert solution.status == SolveStatus.INFEASIBLE
    assert solution.config_index is None
