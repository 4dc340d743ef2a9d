"""The CLI and the Python API give the same plan for the same instance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from placer import api
from placer.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["moe10b", "ep64-128gpu"])
def test_cli_json_matches_api(name: str) -> None:
    path = ROOT / "instances" / f"{name}.json"
    result = CliRunner().invoke(app, ["solve", str(path), "--json", "--time-limit", "30"])
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    document = api.result_document(api.solve(api.load_problem(path)))
    for key in ("gpus", "nodes", "parallelism", "stages", "status", "metrics", "evaluation"):
        assert cli[key] == document[key], key
    assert cli["solver"]["objective"] == document["solver"]["objective"]


def test_plan_written_by_solve_feeds_evaluate_and_export(tmp_path: Path) -> None:
    # The natural chain: solve --out, then evaluate and export that very file.
    instance = ROOT / "instances" / "mixtral-8x7b-h100.json"
    runner = CliRunner()
    solved = runner.invoke(app, ["solve", str(instance), "--out", str(tmp_path / "out")])
    assert solved.exit_code == 0, solved.output
    (plan_file,) = (tmp_path / "out").glob("*.plan.json")
    evaluated = runner.invoke(app, ["evaluate", str(instance), str(plan_file), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["metrics"] == json.loads(plan_file.read_text())["metrics"]
    exported = runner.invoke(app, ["export", str(plan_file), "--engine", "vllm", "--out", str(tmp_path / "vllm")])
    assert exported.exit_code == 0, exported.output
    assert "--tensor-parallel-size 2" in (tmp_path / "vllm" / "launch.sh").read_text()


def test_place_on_a_model_without_experts_is_an_input_error(tmp_path: Path) -> None:
    instance = {
        "name": "dense",
        "model": {
            "name": "dense-1l",
            "num_layers": 1,
            "hidden_size": 256,
            "attention": {"kind": "mha", "num_heads": 4},
            "ffn_size": 512,
            "vocab_size": 1000,
        },
        "hardware": "h100-sxm",
        "cluster": {"gpus_per_node": 8, "num_nodes": 1},
        "workload": {"batch_size": 1, "prompt_tokens": {"min": 8, "max": 8}, "output_tokens": 1},
    }
    plan = {
        "name": "one",
        "gpus": 1,
        "parallelism": {"pp": 1, "tp": 1, "dp_attn": 1, "ep": 1, "tp_moe": 1},
        "stages": [{"layers": [0, 0]}],
    }
    (tmp_path / "i.json").write_text(json.dumps(instance))
    (tmp_path / "p.json").write_text(json.dumps(plan))
    result = CliRunner().invoke(app, ["place", str(tmp_path / "i.json"), str(tmp_path / "p.json")])
    assert result.exit_code == 2
    assert "no MoE layers" in result.output
