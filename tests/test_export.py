"""Engine exports: the flag set each engine gets for a plan, the SGLang expert-location file's
shape, valid JSON/YAML on disk, and a visible warning for everything an engine cannot express."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from placer.cli import app
from placer.export import ENGINES, ExportInput, build_export, export_plan
from placer.export.megatron import partition_arguments
from placer.export.sglang import expert_location
from placer.loading import load_plan
from placer.problem import load_problem
from placer.schema import ExpertLayerMap, Parallelism, Plan, Stage

ROOT = Path(__file__).resolve().parents[1]
EP64_PLAN = ROOT / "plans" / "seed002-ep64-tp2.json"


@pytest.fixture(scope="module")
def ep64() -> ExportInput:
    return ExportInput(load_problem(ROOT / "instances" / "ep64-128gpu.json"), load_plan(EP64_PLAN))


@pytest.fixture(scope="module")
def deepseek() -> ExportInput:
    """DeepSeek-V3 (3 dense layers, then 58 MoE layers) on 2 stages of EP8, uneven 31 + 30 layers."""
    plan = Plan(
        name="ds-pp2-ep8",
        gpus=16,
        parallelism=Parallelism(pp=2, tp=1, dp_attn=8, ep=8, tp_moe=1),
        stages=[Stage(layers=(0, 30)), Stage(layers=(31, 60))],
    )
    return ExportInput(load_problem(ROOT / "instances" / "deepseek-v3-h800.json"), plan)


def redundant_plan() -> ExportInput:
    """moe10b-e64 on EP4 with 4 redundant copies (17 slots per rank) in every MoE layer."""
    problem = load_problem(ROOT / "instances" / "ep64-128gpu.json")
    ranks = [list(range(r * 16, (r + 1) * 16)) + [(r * 16 + 16) % 64] for r in range(4)]
    maps = [ExpertLayerMap(layer=layer, gpus=ranks) for layer in problem.model.moe_layers]
    plan = Plan(gpus=4, parallelism=Parallelism(tp=1, dp_attn=4, ep=4), stages=[Stage(layers=(0, 15))], expert_map=maps)
    return ExportInput(problem, plan)


def flags(argv: list[str]) -> dict[str, str | None]:
    """``--flag value`` / ``--switch`` pairs of an argv."""
    out: dict[str, str | None] = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out[word] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def test_vllm_flags(ep64: ExportInput) -> None:
    result = build_export("vllm", ep64)
    assert flags(result.argv) == {
        "--tensor-parallel-size": "2",
        "--pipeline-parallel-size": "1",
        "--data-parallel-size": "64",
        "--enable-expert-parallel": None,
    }
    assert any("MoE TP = 2" in w for w in result.warnings)  # vLLM's EP has MoE TP 1
    assert set(result.sources) == set(flags(result.argv))


def test_sglang_flags_and_expert_file(ep64: ExportInput) -> None:
    result = build_export("sglang", ep64)
    f = flags(result.argv)
    assert f["--tp-size"] == "128" and f["--dp-size"] == "64" and f["--ep-size"] == "64"
    assert "--enable-dp-attention" in f and f["--init-expert-location"] == "expert_location.json"
    assert f["--nnodes"] == "16" and "--ep-num-redundant-experts" not in f
    doc = json.loads(result.files["expert_location.json"])
    rows = doc["physical_to_logical_map"]
    assert len(rows) == 16 and all(row == list(range(64)) for row in rows)
    assert result.warnings == []


def test_sglang_expert_file_has_dense_rows(deepseek: ExportInput) -> None:
    model = deepseek.problem.model
    rows = expert_location(deepseek)["physical_to_logical_map"]
    assert len(rows) == model.num_layers == 61  # one row per model layer, dense layers included
    assert all(len(row) == 256 for row in rows)
    assert rows[0] == list(range(256))  # dense layer: the trivial row
    assert sorted(rows[3]) == list(range(256))
    result = build_export("sglang", deepseek)
    assert flags(result.argv)["--pp-size"] == "2"
    assert result.env["SGLANG_PP_LAYER_PARTITION"] == "31,30"


def test_redundant_experts(tmp_path: Path) -> None:
    data = redundant_plan()
    sglang = build_export("sglang", data)
    f = flags(sglang.argv)
    assert f["--ep-num-redundant-experts"] == "4" and f["--ep-dispatch-algorithm"] == "static"
    rows = json.loads(sglang.files["expert_location.json"])["physical_to_logical_map"]
    assert all(len(row) == 68 and len(row) % 4 == 0 for row in rows)
    assert rows[0][16] == 16  # rank 0's 17th slot: the copy of expert 16
    trt = yaml.safe_load(build_export("trtllm", data).files["extra_llm_api_options.yaml"])
    balancer = trt["moe_config"]["load_balancer"]
    assert balancer["num_slots"] == 68 and len(balancer["initial_global_assignments"][0]) == 68
    for engine in ("vllm", "megatron"):
        assert any("redundant" in w for w in build_export(engine, data).warnings), engine


def test_trtllm_options(ep64: ExportInput) -> None:
    result = build_export("trtllm", ep64)
    config = yaml.safe_load(result.files["extra_llm_api_options.yaml"])
    assert config == {
        "tensor_parallel_size": 128,
        "pipeline_parallel_size": 1,
        "enable_attention_dp": True,
        "moe_expert_parallel_size": 64,
        "moe_tensor_parallel_size": 2,
    }
    assert config["moe_expert_parallel_size"] * config["moe_tensor_parallel_size"] == config["tensor_parallel_size"]
    assert any("attention tp 2 x dp 64" in w for w in result.warnings)


def test_megatron_flags_and_uneven_stages(ep64: ExportInput, deepseek: ExportInput) -> None:
    assert flags(build_export("megatron", ep64).argv) == {
        "--tensor-model-parallel-size": "2",
        "--pipeline-model-parallel-size": "1",
        "--expert-model-parallel-size": "64",
        "--expert-tensor-parallel-size": "2",
    }
    f = flags(build_export("megatron", deepseek).argv)
    assert f["--decoder-first-pipeline-num-layers"] == "31" and f["--decoder-last-pipeline-num-layers"] == "30"
    assert partition_arguments([10, 12, 12, 9]) == [
        "--decoder-first-pipeline-num-layers",
        "10",
        "--decoder-last-pipeline-num-layers",
        "9",
    ]
    assert partition_arguments([4, 5, 6, 4]) == ["--pipeline-model-parallel-layout", "Et*4|t*5|t*6|t*4L"]
    assert partition_arguments([8, 8]) == []


def test_uneven_partition_per_engine(deepseek: ExportInput) -> None:
    assert build_export("vllm", deepseek).env["VLLM_PP_LAYER_PARTITION"] == "31,30"
    # 31 + 30 is TensorRT-LLM's own split (the first 61 % 2 stages take one more layer); 30 + 31 is not
    assert not any("uneven pipeline partition" in w for w in build_export("trtllm", deepseek).warnings)
    plan = deepseek.plan.model_copy(update={"stages": [Stage(layers=(0, 29)), Stage(layers=(30, 60))]})
    flipped = ExportInput(deepseek.problem, plan)
    assert any("uneven pipeline partition 30,31" in w for w in build_export("trtllm", flipped).warnings)


@pytest.mark.parametrize("engine", ENGINES)
def test_written_files_load(engine: str, ep64: ExportInput, tmp_path: Path) -> None:
    result, paths = export_plan(engine, ep64, tmp_path)
    names = {p.name for p in paths}
    assert {"launch.sh", "hostfile", "ranks.json", "export.json", "NOTES.md"} <= names
    for path in paths:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
    exported = json.loads((tmp_path / "export.json").read_text())
    assert exported["argv"] == result.argv and exported["warnings"] == result.warnings
    notes = (tmp_path / "NOTES.md").read_text()
    for warning in result.warnings:
        assert warning in notes
    hostfile = (tmp_path / "hostfile").read_text().splitlines()
    assert hostfile[0] == "node-000 slots=8" and len(hostfile) == 16
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert len(ranks) == 128 and ranks[9]["node"] == 1 and ranks[9]["ep_rank"] == 4


def test_cli_export(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "sglang"
    result = runner.invoke(app, ["export", str(EP64_PLAN), "--engine", "sglang", "--out", str(out), "--hosts", "a,b"])
    assert result.exit_code == 0, result.output
    assert (out / "hostfile").read_text().startswith("a slots=8\nb slots=8\nnode-002 slots=8\n")
    as_json = runner.invoke(app, ["export", str(EP64_PLAN), "--engine", "vllm", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["warnings"]
    missing = runner.invoke(
        app, ["export", str(EP64_PLAN), "--engine", "vllm", "--instance", str(tmp_path / "nope.json")]
    )
    assert missing.exit_code == 2
