"""Engine exports of disaggregated plans: each pool's flags on every line of every instance, the
router/proxy/disaggregated-server configuration, per-pool hostfiles and ranks, a source for every
flag written, NOTES.md entries for what an engine cannot express, and the CLI's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from placer.cli import app
from placer.errors import InputError
from placer.export import DisaggInput, build_export, export_plan
from placer.export.common import MODEL_PLACEHOLDER
from placer.export.disagg import Launch
from placer.problem import load_problem
from placer.schema import DisaggregatedPlan, ExpertLayerMap, Parallelism, Pool, Stage

ROOT = Path(__file__).resolve().parents[1]
H800 = ROOT / "instances" / "deepseek-v3-h800-disagg.json"
H200 = ROOT / "instances" / "deepseek-v3-h200-serving.json"
ALL_LAYERS = [Stage(layers=(0, 60))]


def pool(gpus: int, par: Parallelism, nodes: list[int] | None = None, stages: list[Stage] | None = None) -> Pool:
    return Pool(gpus=gpus, parallelism=par, stages=stages or ALL_LAYERS, nodes=nodes)


def two_p_one_d() -> DisaggregatedPlan:
    """2P1D: two prefill instances of EP8 (a node each), one decode instance of EP16 over two nodes."""
    return DisaggregatedPlan(
        name="dsv3-2p1d",
        instance="deepseek-v3-h800-disagg",
        gpus=32,
        prefill=pool(16, Parallelism(tp=1, dp_attn=8, ep=8, replicas=2)),
        decode=pool(16, Parallelism(tp=1, dp_attn=16, ep=16)),
    )


@pytest.fixture(scope="module")
def data() -> DisaggInput:
    return DisaggInput(load_problem(H800), two_p_one_d(), ("h0", "h1"))


def shared_node() -> DisaggInput:
    """1P1D on one node: prefill GPUs 0-3, decode GPUs 4-7."""
    plan = DisaggregatedPlan(
        name="dsv3-shared",
        gpus=8,
        prefill=pool(4, Parallelism(tp=1, dp_attn=4, ep=4)),
        decode=pool(4, Parallelism(tp=1, dp_attn=4, ep=4)),
    )
    return DisaggInput(load_problem(H200), plan)


def flags(argv: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out[word] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def written_flags(launches: list[Launch]) -> set[str]:
    words = {w for launch in launches for w in [*launch.argv, *launch.env] if w.startswith("--") or w.isupper()}
    return words - {MODEL_PLACEHOLDER}


def test_pool_places_and_instances(data: DisaggInput) -> None:
    assert [node for node, _ in data.places["prefill"]] == [0] * 8 + [1] * 8
    assert [node for node, _ in data.places["decode"]] == [2] * 8 + [3] * 8
    pre, dec = data.instances("prefill"), data.instances("decode")
    assert [(i.nodes, i.slot) for i in pre] == [((0,), 0), ((1,), 0)]
    assert dec[0].nodes == (2, 3) and dec[0].ranks_on_node == (8, 8) and dec[0].first_gpu == (0, 0)
    shared = shared_node()
    assert shared.places["decode"] == [(0, g) for g in range(4, 8)]
    assert shared.instances("decode")[0].slot == 1 and shared.instances("decode")[0].local_gpus(0) == "4,5,6,7"


def test_sglang_pools_and_router(data: DisaggInput) -> None:
    result = build_export("sglang", data)
    prefill, decode = result.pool("prefill"), result.pool("decode")
    assert [launch.host for launch in prefill] == ["h0", "h1"] and [launch.host for launch in decode] == [
        "node-002",
        "node-003",
    ]
    for launch in prefill:
        f = flags(launch.argv)
        assert f["--disaggregation-mode"] == "prefill" and f["--disaggregation-transfer-backend"] == "mooncake"
        assert f["--tp-size"] == "8" and f["--dp-size"] == "8" and f["--ep-size"] == "8"
        assert "--enable-dp-attention" in f and f["--disaggregation-bootstrap-port"] == "8998"
        # the decode pool is wider: the prefill servers are told its shape
        assert f["--disaggregation-decode-tp"] == "16" and f["--disaggregation-decode-dp"] == "16"
        assert "--nnodes" not in f and f["--host"] == launch.host and f["--port"] == "30000"
        assert f["--init-expert-location"] == "prefill/expert_location.json"
    for rank, launch in enumerate(decode):
        f = flags(launch.argv)
        assert f["--disaggregation-mode"] == "decode" and f["--tp-size"] == "16" and f["--ep-size"] == "16"
        assert f["--nnodes"] == "2" and f["--node-rank"] == str(rank) and f["--dist-init-addr"] == "node-002:5000"
        assert "--disaggregation-decode-tp" not in f and "--disaggregation-bootstrap-port" not in f
        assert f["--init-expert-location"] == "decode/expert_location.json"
    assert result.router.argv == [
        "python", "-m", "sglang_router.launch_router", "--pd-disaggregation",
        "--prefill", "http://h0:30000", "8998", "--prefill", "http://h1:30000", "8998",
        "--decode", "http://node-002:30000", "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    assert {"prefill/expert_location.json", "decode/expert_location.json"} <= set(result.files)
    assert written_flags([*result.launches, result.router]) <= set(result.sources)
    assert any(n.startswith("placer priced the KV transfer over the scale-out fabric") for n in result.notes)
    assert not any("MC_FORCE_MNNVL" in n for n in result.notes)


def test_sglang_shared_node_offsets() -> None:
    result = build_export("sglang", shared_node())
    (pre,), (dec,) = result.pool("prefill"), result.pool("decode")
    assert "--base-gpu-id" not in flags(pre.argv)
    f = flags(dec.argv)
    assert f["--base-gpu-id"] == "4" and f["--port"] == "30001"  # second server on the node: next port
    assert "--disaggregation-decode-tp" not in flags(pre.argv)  # same shape in both pools
    assert "http://node-000:30001" in result.router.argv
    # one node: placer priced the KV transfer over NVLink, and says what SGLang documents for that
    assert any(n.startswith("placer priced the KV transfer over NVLink") for n in result.notes)
    assert any("MC_FORCE_MNNVL=True" in n for n in result.notes)


def test_vllm_kv_transfer_and_proxy(data: DisaggInput) -> None:
    result = build_export("vllm", data)
    prefill, decode = result.pool("prefill"), result.pool("decode")
    for launch in prefill:
        f = flags(launch.argv)
        assert json.loads(f["--kv-transfer-config"] or "") == {
            "kv_connector": "NixlConnector",
            "kv_role": "kv_producer",
        }
        assert f["--data-parallel-size"] == "8" and "--enable-expert-parallel" in f and f["--port"] == "8100"
        assert launch.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == launch.host and "CUDA_VISIBLE_DEVICES" not in launch.env
    head, worker = (flags(launch.argv) for launch in decode)
    assert json.loads(head["--kv-transfer-config"] or "")["kv_role"] == "kv_consumer"
    assert head["--data-parallel-size"] == "16" and head["--data-parallel-size-local"] == "8"
    assert head["--data-parallel-address"] == "node-002" and "--headless" not in head and head["--port"] == "8100"
    assert worker["--data-parallel-start-rank"] == "8" and "--headless" in worker and "--port" not in worker
    assert result.router.argv[1].endswith("toy_proxy_server.py")
    r = flags(result.router.argv)
    assert r["--decoder-hosts"] == "node-002" and r["--decoder-ports"] == "8100"
    i = result.router.argv.index("--prefiller-hosts")
    assert result.router.argv[i : i + 6] == ["--prefiller-hosts", "h0", "h1", "--prefiller-ports", "8100", "8100"]
    assert result.warnings == []
    assert any("different tp/dp/pp" in n for n in result.notes)
    assert written_flags([*result.launches, result.router]) <= set(result.sources)


def test_vllm_cross_node_tensor_group_is_warned() -> None:
    """A decode pool whose pipeline crosses nodes: vLLM needs Ray there; only the head line is written."""
    plan = DisaggregatedPlan(
        gpus=24,
        prefill=pool(8, Parallelism(tp=1, dp_attn=8, ep=8)),
        decode=pool(
            16, Parallelism(pp=2, tp=8, dp_attn=1, ep=8), stages=[Stage(layers=(0, 30)), Stage(layers=(31, 60))]
        ),
    )
    result = build_export("vllm", DisaggInput(load_problem(H800), plan))
    assert len(result.pool("decode")) == 1
    assert any(w.startswith("decode instance 0:") and "Ray" in w for w in result.warnings)
    assert result.pool("decode")[0].env["VLLM_PP_LAYER_PARTITION"] == "31,30"
    sglang = build_export("sglang", DisaggInput(load_problem(H800), plan))
    assert any("decode pool: pp 2" in w and "--disaggregation-prefill-pp" in w for w in sglang.warnings)


def test_vllm_shared_node_gpus_and_ports() -> None:
    result = build_export("vllm", shared_node())
    (pre,), (dec,) = result.pool("prefill"), result.pool("decode")
    assert pre.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and dec.env["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    assert dec.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5608" and flags(dec.argv)["--port"] == "8101"


def test_trtllm_disaggregated_config(data: DisaggInput) -> None:
    result = build_export("trtllm", data)
    config = yaml.safe_load(result.files["disagg_config.yaml"])
    ctx, gen = config["context_servers"], config["generation_servers"]
    assert ctx["num_instances"] == 2 and ctx["urls"] == ["h0:8001", "h1:8001"]
    assert ctx["tensor_parallel_size"] == 8 and ctx["moe_expert_parallel_size"] == 8 and ctx["enable_attention_dp"]
    assert ctx["disable_overlap_scheduler"] is True
    assert gen["num_instances"] == 1 and gen["urls"] == ["node-002:8001"] and gen["tensor_parallel_size"] == 16
    assert gen["moe_expert_parallel_size"] == 16 and gen["moe_tensor_parallel_size"] == 1
    for section in (ctx, gen):
        assert section["cache_transceiver_config"] == {"backend": "DEFAULT", "max_tokens_in_buffer": 4400}
    assert config["hostname"] == "h0" and config["port"] == 8000
    worker = yaml.safe_load(result.files["decode/extra_llm_api_options.yaml"])
    assert worker["tensor_parallel_size"] == 16 and "cache_transceiver_config" in worker
    (dec,) = result.pool("decode")
    assert dec.argv[:2] == ["trtllm-llmapi-launch", "trtllm-serve"]  # one MPI job over two nodes
    assert flags(dec.argv)["--extra_llm_api_options"] == "decode/extra_llm_api_options.yaml"
    assert all(launch.argv[0] == "trtllm-serve" for launch in result.pool("prefill"))
    assert result.router.argv == ["trtllm-serve", "disaggregated", "-c", "disagg_config.yaml"]
    assert any("decode instance 0 spans 2 nodes" in n and "32 ranks" not in n for n in result.notes)
    assert {"context_servers", "cache_transceiver_config", "urls", "trtllm-llmapi-launch"} <= set(result.sources)


@pytest.mark.parametrize("engine", ["sglang", "vllm", "trtllm"])
def test_written_files(engine: str, data: DisaggInput, tmp_path: Path) -> None:
    result, paths = export_plan(engine, data, tmp_path)
    names = {str(p.relative_to(tmp_path)) for p in paths}
    expected = {"launch.sh", "launch_prefill.sh", "launch_decode.sh", "router.sh", "export.json", "NOTES.md"}
    assert expected | {f"{phase}/{f}" for phase in ("prefill", "decode") for f in ("hostfile", "ranks.json")} <= names
    for path in paths:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.suffix == ".sh":
            assert os.access(path, os.X_OK)
    assert (tmp_path / "prefill" / "hostfile").read_text() == "h0 slots=8\nh1 slots=8\n"
    assert (tmp_path / "decode" / "hostfile").read_text() == "node-002 slots=8\nnode-003 slots=8\n"
    ranks = json.loads((tmp_path / "decode" / "ranks.json").read_text())
    assert len(ranks) == 16 and ranks[9]["node"] == 3 and ranks[9]["gpu"] == 1 and ranks[9]["ep_rank"] == 9
    script = (tmp_path / "launch_decode.sh").read_text()
    assert "  node-002)" in script and "h0)" not in script
    assert ("  node-003)" in script) == (engine != "trtllm")  # TensorRT-LLM: one MPI job from the head host
    notes = (tmp_path / "NOTES.md").read_text()
    assert "## Prefill pool" in notes and "## Decode pool" in notes and "## Router" in notes
    for warning in result.warnings:
        assert warning in notes
    for flag in result.sources:
        assert f"| `{flag}` |" in notes
    exported = json.loads((tmp_path / "export.json").read_text())
    assert exported["mode"] == "disaggregated" and exported["router"]["argv"] == result.router.argv


def test_pool_nodes_too_small() -> None:
    plan = two_p_one_d().model_copy(update={"decode": pool(16, Parallelism(tp=1, dp_attn=16, ep=16), nodes=[2])})
    with pytest.raises(InputError) as caught:
        _ = DisaggInput(load_problem(H800), plan).places
    assert "decode.nodes" in str(caught.value)


def test_cli_disaggregated(tmp_path: Path) -> None:
    plan_file = tmp_path / "dsv3-2p1d.json"
    plan_file.write_text(two_p_one_d().model_dump_json(exclude_none=True))
    runner = CliRunner()
    for engine in ("sglang", "vllm", "trtllm"):
        out = tmp_path / engine
        run = runner.invoke(
            app, ["export", str(plan_file), "--engine", engine, "--instance", str(H800), "--out", str(out)]
        )
        assert run.exit_code == 0, run.output
        assert (out / "router.sh").is_file()
    as_json = runner.invoke(app, ["export", str(plan_file), "--engine", "sglang", "--instance", str(H800), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["mode"] == "disaggregated"
    out = tmp_path / "megatron"
    megatron = runner.invoke(
        app, ["export", str(plan_file), "--engine", "megatron", "--instance", str(H800), "--out", str(out)]
    )
    assert megatron.exit_code == 2 and "Megatron-Core" in megatron.output and "Traceback" not in megatron.output
    assert not out.exists()  # nothing half-written
    small = runner.invoke(app, ["export", str(plan_file), "--engine", "vllm", "--instance", str(H200)])
    assert small.exit_code == 2 and "nodes" in small.output  # 32 GPUs on a 2-node cluster


def test_per_pool_expert_map(data: DisaggInput, tmp_path: Path) -> None:
    """A decode pool with its own expert map: SGLang gets it in decode/expert_location.json (the
    prefill pool keeps the default), vLLM says in NOTES.md that it cannot apply it."""
    model = data.problem.model
    ranks = [list(range(r * 16, (r + 1) * 16)) for r in range(16)]
    ranks[0], ranks[1] = ranks[1], ranks[0]
    maps = [ExpertLayerMap(layer=layer, gpus=ranks) for layer in model.moe_layers]
    decode = data.plan.decode.model_copy(update={"expert_map": maps})
    mapped = DisaggInput(data.problem, data.plan.model_copy(update={"decode": decode}), data.hosts)
    sglang = build_export("sglang", mapped)
    rows = json.loads(sglang.files["decode/expert_location.json"])["physical_to_logical_map"]
    assert rows[3][:16] == list(range(16, 32))
    assert json.loads(sglang.files["prefill/expert_location.json"])["physical_to_logical_map"][3] == list(range(256))
    vllm, _ = export_plan("vllm", mapped, tmp_path)
    assert [w for w in vllm.warnings if w.startswith("decode pool: custom expert map")]
    assert not [w for w in vllm.warnings if w.startswith("prefill pool:")]
    assert "decode pool: custom expert map" in (tmp_path / "NOTES.md").read_text()


@pytest.mark.parametrize("engine", ["sglang", "vllm", "trtllm"])
def test_scripts_start_each_hosts_lines(engine: str, data: DisaggInput, tmp_path: Path) -> None:
    """Run the written launch.sh as two hosts with the engines' commands replaced by stubs that
    record their arguments: each host starts exactly its own lines, arguments intact."""
    out = tmp_path / "export"
    result, _ = export_plan(engine, data, out)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    stub = (
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    env = {k: v for k, v in os.environ.items() if k.startswith(('VLLM_', 'CUDA_', 'SGLANG_'))}\n"
        "    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:], env]) + '\\n')\n"
    )
    for name in ("python", "vllm", "trtllm-serve", "trtllm-llmapi-launch"):
        (bin_dir / name).write_text(stub)
        (bin_dir / name).chmod(0o755)
    for host in ("h0", "node-003"):
        log.unlink(missing_ok=True)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PLACER_HOST": host}
        subprocess.run(["bash", str(out / "launch.sh")], env=env, check=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        expected = [launch for launch in [*result.launches, result.router] if launch.host == host]
        assert sorted(json.dumps(c[:-1]) for c in calls) == sorted(json.dumps(launch.argv) for launch in expected)
        for call in calls:
            launch = next(la for la in expected if la.argv == call[:-1])
            assert all(call[-1].get(k) == v for k, v in launch.env.items())
