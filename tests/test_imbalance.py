"""cost_parameters.expert_load_imbalance: a known imbalance without statistics to locate it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.evaluator import evaluate
from placer.problem import build_problem
from placer.result import SolveStatus
from placer.schema import Instance, Plan
from placer.solve import solve

ROOT = Path(__file__).resolve().parents[1]


def _problem(imbalance: float):
    document = json.loads((ROOT / "instances" / "mixtral-8x7b-h100.json").read_text())
    document["model"] = str(ROOT / "models" / "mixtral-8x7b.json")
    document.setdefault("cost_parameters", {})["expert_load_imbalance"] = imbalance
    return build_problem(Instance.model_validate(document))


def _plan(problem):
    return Plan.model_validate(
        {
            "name": "ep8",
            "gpus": 8,
            "parallelism": {"pp": 1, "tp": 2, "dp_attn": 4, "ep": 8, "tp_moe": 1},
            "stages": [{"layers": [0, problem.model.num_layers - 1]}],
        }
    )


def test_busiest_gpu_carries_the_stated_imbalance():
    balanced, skewed = _problem(1.0), _problem(1.3)
    a, b = evaluate(balanced, _plan(balanced)), evaluate(skewed, _plan(skewed))
    assert b.load_imbalance_max == pytest.approx(1.3)
    assert a.load_imbalance_max == pytest.approx(1.0)
    # expert GEMMs and all-to-all of the busiest GPU grow; nothing else does
    assert b.ttft_s > a.ttft_s and b.tpot_s > a.tpot_s
    assert b.ttft_s < 1.3 * a.ttft_s  # attention and the other ops are untouched
    assert max(s.memory.activation_bytes for s in b.stages) > max(s.memory.activation_bytes for s in a.stages)


def test_backends_agree_under_an_imbalance():
    problem = _problem(1.25)
    results = {backend: solve(problem, backend=backend, max_gpus=16) for backend in ("cpsat", "exhaustive")}
    assert {r.status for r in results.values()} == {SolveStatus.OPTIMAL}
    assert results["cpsat"].terms == pytest.approx(results["exhaustive"].terms, rel=1e-6)
    assert results["cpsat"].plan.gpus >= solve(_problem(1.0), backend="exhaustive", max_gpus=16).plan.gpus
