"""``placer frontier``: each point a proven optimum at its bound, the curve never rising as the
bound tightens, the picture and the documents written, bad bounds refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from placer.api import load_problem
from placer.cli import app
from placer.frontier import demand_problem, frontier, tpot_problem

ROOT = Path(__file__).resolve().parents[1]
MIXTRAL = ROOT / "instances" / "mixtral-8x7b-h100-serving.json"


def test_a_point_asks_for_throughput_at_its_bound_with_concurrency_chosen():
    problem = load_problem(MIXTRAL)
    point = tpot_problem(problem, 25.0)
    assert point.slo.tpot_ms == 25.0 and point.slo.ttft_s == problem.slo.ttft_s
    assert point.objective.primary == "max_throughput_per_gpu" and point.objective.concurrency == "auto"
    assert point.workload.kind == "concurrency" and point.workload.concurrency >= problem.workload.concurrency
    demand = demand_problem(problem, 3.0)
    assert demand.workload.kind == "rate" and demand.workload.rate_rps == 3.0
    assert demand.objective.primary == "min_gpus"


def test_the_frontier_never_rises_as_the_bound_tightens(tmp_path):
    problem = load_problem(MIXTRAL)
    points = frontier(problem, tpot_ms=(40.0, 15.0), time_limit_s=None)
    assert [p.status for p in points] == ["optimal", "optimal"]
    loose, tight = points
    assert tight.tokens_per_s_per_gpu <= loose.tokens_per_s_per_gpu
    for p in points:
        assert p.tpot_ms <= p.value * (1 + 1e-9)  # the bound holds at the optimum
        assert p.tokens_per_s_per_user == pytest.approx(1e3 / p.tpot_ms)
        assert p.concurrency > 0 and p.gpus <= problem.slo.max_gpus
    from placer.report.frontier import write_frontier

    written = write_frontier(tmp_path, problem.name, points)
    assert {p.name for p in written} == {"frontier.png", "frontier.md", "frontier.json"}
    assert json.loads((tmp_path / "frontier.json").read_text())["points"][0]["value"] == 40.0
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_bad_bounds_are_refused_naming_the_option():
    outcome = CliRunner().invoke(app, ["frontier", str(MIXTRAL), "--tpot-ms", "10,abc"])
    assert outcome.exit_code == 2 and "--tpot-ms" in outcome.output
    outcome = CliRunner().invoke(app, ["frontier", str(MIXTRAL), "--demand-rps", "-3"])
    assert outcome.exit_code == 2 and "--demand-rps" in outcome.output
