"""Hardware comparison: the cluster reshaping rule, a small comparison with an infeasible row,
input errors, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from placer.cli import app
from placer.compare import (
    SolveSettings,
    compare,
    comparison_document,
    parse_hardware_list,
    parse_sweep,
    problem_on_hardware,
    usd_per_million_tokens,
)
from placer.errors import InputError
from placer.problem import load_problem

ROOT = Path(__file__).resolve().parents[1]
MOE10B = ROOT / "instances" / "moe10b.json"
FAST = SolveSettings(time_limit_s=None, max_gpus=4)  # a small search: infeasibility is proven, no clock


def test_reshape_keeps_gpu_budget_and_takes_node_shape() -> None:
    problem = load_problem(ROOT / "instances" / "deepseek-v3-h800.json")  # 32 nodes x 8
    nvl = problem_on_hardware(problem, "gb200-nvl72")
    assert nvl.hardware.name == "gb200-nvl72"
    assert nvl.fabric.gpus_per_node == 72 and nvl.cluster.num_nodes == 4  # ceil(256 / 72)
    assert nvl.fabric.nvlink_domain_gpus == 72
    assert nvl.slo == problem.slo and nvl.workload == problem.workload
    assert problem_on_hardware(problem, "instance") is problem
    # the seed-002 cluster's own link overrides describe its machine, not an H100's
    ep64 = load_problem(ROOT / "instances" / "ep64-128gpu.json")
    h100 = problem_on_hardware(ep64, "h100-sxm")
    assert h100.cluster.scaleup_bandwidth_gb_per_s is None and h100.cluster.num_nodes == 16
    assert h100.fabric.scaleup_bytes_per_s != ep64.fabric.scaleup_bytes_per_s
    unlimited = problem_on_hardware(load_problem(MOE10B), "h200")
    assert unlimited.cluster.num_nodes is None


def test_compare_two_hardware_with_an_infeasible_sweep_point() -> None:
    comparison = compare(MOE10B, ["instance", "h100-sxm"], FAST, sweep=("ttft_s", [0.05, 2.0]), jobs=1)
    doc = comparison_document(comparison)
    rows = doc["rows"]
    assert [r["hardware"] for r in rows] == ["seed-400tf", "h100-sxm"]
    for row in rows:
        assert row["status"] == "optimal" and row["gap"] == 0.0
        p = row["parallelism"]
        assert row["gpus"] == p["replicas"] * p["pp"] * p["tp"] * p["dp_attn"]
        assert row["memory_headroom_gb"] > 0 and row["binding_constraint"]
    assert rows[0]["usd_per_million_output_tokens"] is None  # the seed GPU has no price
    expected = 2.95 / (rows[1]["decode_tokens_per_ms_per_gpu"] * 3.6e6) * 1e6
    assert rows[1]["usd_per_million_output_tokens"] == pytest.approx(expected)
    sweep = doc["sweep"]["rows"]
    assert len(sweep) == 4
    impossible = [r for r in sweep if r["slo_overrides"]["ttft_s"] == 0.05]
    assert len(impossible) == 2
    assert all(r["status"] == "infeasible" and "TTFT" in r["reason"] and "gpus" not in r for r in impossible)


def test_usd_per_million_tokens() -> None:
    assert usd_per_million_tokens(3.6, 1.0) == pytest.approx(1.0)  # 3.6e6 tokens per GPU-hour
    assert usd_per_million_tokens(None, 1.0) is None


def test_input_errors_name_the_option() -> None:
    with pytest.raises(InputError, match="--hardware.*h1000"):
        parse_hardware_list("h100-sxm,h1000")
    with pytest.raises(InputError, match="--sweep.*not an SLO"):
        parse_sweep("latency=1,2")
    with pytest.raises(InputError, match="--sweep"):
        parse_sweep("ttft_s=a,b")
    assert parse_sweep("ttft_s=5,1,2") == ("ttft_s", [1.0, 2.0, 5.0])


def test_cli_compare_json_and_bad_hardware() -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["compare", str(MOE10B), "--hardware", "h100-sxm,h200", "--json", "--jobs", "1", "--time-limit", "20"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["hardware"] for r in doc["rows"]] == ["h100-sxm", "h200"]
    bad = runner.invoke(app, ["compare", str(MOE10B), "--hardware", "nope"])
    assert bad.exit_code == 2 and "--hardware" in bad.output


def test_compare_json_without_timings_is_the_same_bytes_twice():
    from typer.testing import CliRunner

    from placer.cli import app

    args = ["compare", "instances/moe10b.json", "--hardware", "instance,h200", "--jobs", "1", "--json"]
    first = CliRunner().invoke(app, [*args, "--no-timings"])
    second = CliRunner().invoke(app, [*args, "--no-timings"])
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout and '"timings"' not in first.stdout
    timed = CliRunner().invoke(app, args)
    assert '"solve_wall_s"' in timed.stdout
