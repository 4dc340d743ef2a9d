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
    document = api.result_document(api.solve(api.load_problem(path), time_limit_s=30))
    for key in ("gpus", "nodes", "parallelism", "stages", "status", "metrics", "evaluation"):
        assert cli[key] == document[key], key
    assert cli["solver"]["objective"] == document["solver"]["objective"]
