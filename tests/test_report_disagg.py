"""Reports of disaggregated plans (issue 12 item 5): ``placer evaluate`` per pool and for the
whole, ``placer solve`` with ``--disaggregation`` (terminal, JSON, ``--out`` files read back), the
topology picture with the pools and the KV path, and the compare and frontier rows.

The instance is DeepSeek-V3 on two H200 nodes of 8 (closed loop of 170 requests, 4,000-token
prompts, 500 output tokens); the example plan puts one 8-GPU pool on each node (1P1D)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from placer import api
from placer.cli import app
from placer.compare import Entry, SolveSettings, Task, entry_row, problem_for_task, with_disaggregation
from placer.frontier import disagg_tpot_problem, frontier, point_from, tpot_problem
from placer.loading import load_any_plan
from placer.report.comparison import write_comparison
from placer.report.frontier import DISAGG_NOTE, frontier_markdown
from placer.report.plots import disagg_topology_figure, pool_slots, topology_picture
from placer.report.terminal import print_result
from placer.schema import DisaggregatedPlan
from placer.serving_disagg import DisaggEvaluation, evaluate_disaggregated

ROOT = Path(__file__).resolve().parents[1]
INSTANCE = ROOT / "instances" / "deepseek-v3-h200-serving.json"
PLAN = ROOT / "tests" / "data" / "disagg-1p1d.plan.json"
#: DeepSeek-V3's MLA cache per token: (kv_lora_rank 512 + rope dim 64) x 61 layers x 2 bytes (BF16
#: KV cache), times the 4,000-token prompt: the bytes one request's KV sends from prefill to decode.
KV_BYTES_PER_REQUEST = (512 + 64) * 61 * 2 * 4000


def _evaluate_json(plan: Path, instance: Path = INSTANCE) -> dict:
    outcome = CliRunner().invoke(app, ["evaluate", str(instance), str(plan), "--json"])
    assert outcome.exit_code == 0, outcome.output
    return json.loads(outcome.stdout)


def _write_plan(tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    data = json.loads(PLAN.read_text())
    change(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def solved():  # type: ignore[no-untyped-def]
    """The instance solved with disaggregation only (about 5 s): problem and result."""
    problem = with_disaggregation(api.load_problem(INSTANCE), "only")
    return problem, api.solve(problem)


def test_evaluate_json_gives_every_figure_per_pool_and_for_the_whole() -> None:
    doc = _evaluate_json(PLAN)
    assert doc["schema_version"] == "placer.plan/2" and doc["mode"] == "disaggregated"
    ev = doc["evaluation"]
    pre, dec, whole = ev["pools"]["prefill"], ev["pools"]["decode"], ev["whole"]
    # the packed placement: prefill on node 0, decode on node 1, so the KV crosses the scale-out fabric
    assert (pre["gpus"], pre["nodes"], dec["gpus"], dec["nodes"]) == (8, [0], 8, [1])
    assert pre["label"] == dec["label"] == "pp1 tp1 dp8 ep8 tpm1 x1"
    kv = whole["kv_transfer"]
    assert kv["path"] == "scaleout" and kv["bytes_per_request"] == KV_BYTES_PER_REQUEST
    assert kv["lanes"] >= 1 and 0 < kv["link_utilisation"] < 1 and kv["mean_ms"] >= kv["alone_ms"] > 0
    # the whole's throughput is the rate times the output length, shared over all 16 GPUs
    assert whole["output_tokens_per_s"] == pytest.approx(whole["rate_rps"] * 500)
    assert whole["output_tokens_per_s_per_gpu"] * 16 == pytest.approx(whole["output_tokens_per_s"])
    # and per pool over the pool's own 8 GPUs: prompt tokens on prefill, output tokens on decode
    assert pre["prompt_tokens_per_s_per_pool_gpu"] * 8 == pytest.approx(whole["rate_rps"] * 4000)
    assert dec["output_tokens_per_s_per_pool_gpu"] * 8 == pytest.approx(whole["output_tokens_per_s"])
    # a closed loop of 170: Little's law holds over the whole deployment
    assert whole["concurrency"] == pytest.approx(170, rel=1e-3)
    p = whole["ttft_percentiles_s"]
    assert p["p50"] <= p["p90"] <= p["p99"] and whole["ttft_s"] > pre["latency_s"]
    assert dec["kv_tokens_used_per_replica"] <= dec["kv_capacity_tokens_per_replica"]
    for pool in (pre, dec):
        memory = pool["stages"][0]["memory_bytes"]
        parts = ("weights", "kv_cache", "activations", "runtime_reserve")
        assert memory["total"] == pytest.approx(sum(memory[k] for k in parts))
        assert pool["memory_bytes_per_gpu_max"] == pytest.approx(memory["total"])
        assert 0 < pool["utilisation"] < 1
    # every SLO of the whole with its slack, and each pool's rules under that pool
    assert set(doc["slo"]) == {"ttft", "tpot", "gpu_budget", "kv_cache", "kv_link", "stable"}
    assert doc["slo"]["ttft"]["slack"] == pytest.approx(1 - whole["ttft_s"] / 2.0)
    assert "prefill.memory_per_gpu" in pre["checks"] and "prefill_nodes" in pre["checks"]
    assert "decode.memory_per_gpu" in dec["checks"] and not any(k.startswith("prefill") for k in dec["checks"])
    assert set(ev["rules"]) >= set(pre["checks"]) | set(dec["checks"])
    assert ev["feasible"] is True and ev["binding_constraint"] == "gpu_budget"


def test_evaluate_json_matches_the_evaluator_and_reads_back(tmp_path: Path) -> None:
    doc = _evaluate_json(PLAN)
    problem = api.load_problem(INSTANCE)
    evaluation = evaluate_disaggregated(problem, load_any_plan(PLAN))  # type: ignore[arg-type]
    assert doc["metrics"] == pytest.approx(evaluation.metrics())
    assert doc["evaluation"]["whole"]["ttft_s"] == pytest.approx(evaluation.point.ttft_s)
    # the document (decisions plus output-only figures) is itself a plan file: same figures again
    copy = tmp_path / "again.json"
    copy.write_text(json.dumps(doc))
    assert _evaluate_json(copy)["metrics"] == doc["metrics"]


def test_evaluate_terminal_shows_pools_whole_and_every_check() -> None:
    outcome = CliRunner().invoke(app, ["evaluate", str(INSTANCE), str(PLAN)])
    assert outcome.exit_code == 0, outcome.output
    text = outcome.stdout
    for words in ("disaggregated 1P1D", "prefill pool", "decode pool", "prefill latency of one prompt",
                  "decode step", "KV cache capacity per replica", "TTFT, p99", "KV transfer path",
                  "scale-out (across nodes)", "KV link utilisation", "requests in flight", "gpu_budget (binding)",
                  "prefill.memory_per_gpu", "decode.memory_per_gpu", "cluster_nodes"):  # fmt: skip
        assert words in text, words


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # both pools cover 60 layers, DeepSeek-V3 has 61: the pool's partition is named
        (lambda d: [d[p]["stages"][0].update(layers=[0, 59]) for p in ("prefill", "decode")], "prefill.stages[0]"),
        (lambda d: d["decode"]["stages"][0].update(layers=[0, 59]), "decode.stages"),
        (lambda d: d.update(gpus=17), "gpus"),
        (lambda d: d["decode"].update(nodes=[1, 1]), "decode.nodes"),
    ],
)
def test_bad_disaggregated_plans_exit_2_naming_the_field(tmp_path: Path, change, field: str) -> None:  # type: ignore[no-untyped-def]
    outcome = CliRunner().invoke(app, ["evaluate", str(INSTANCE), str(_write_plan(tmp_path, change))])
    assert outcome.exit_code == 2, outcome.output
    assert field in outcome.output and "Traceback" not in outcome.output


def test_a_burst_workload_is_refused_naming_workload_kind() -> None:
    outcome = CliRunner().invoke(app, ["evaluate", str(ROOT / "instances" / "deepseek-v3-h800.json"), str(PLAN)])
    assert outcome.exit_code == 2, outcome.output
    assert "workload.kind" in outcome.output


def test_solve_result_prints_writes_and_reads_back(solved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    problem, result = solved
    assert isinstance(result.plan, DisaggregatedPlan) and isinstance(result.evaluation, DisaggEvaluation)
    document = api.result_document(result, problem, timings=False)
    assert document["mode"] == "disaggregated" and document["status"] == "optimal"
    assert document["objective"]["described"][0]["equivalent"]["value"] == pytest.approx(
        result.evaluation.decode_tokens_per_ms_per_gpu
    )
    plan_path, report_path = api.write_outputs(tmp_path, problem, result.evaluation, document)
    # the written plan is a placer.plan/2 file that evaluate reads back to the same figures
    back = load_any_plan(plan_path)
    assert isinstance(back, DisaggregatedPlan) and back.prefill == result.plan.prefill
    _, again = api.evaluate_files(INSTANCE, plan_path)
    assert again.metrics() == pytest.approx(result.evaluation.metrics())
    report = report_path.read_text()
    for words in ("**Status:** optimal", "## Pools", "## Whole deployment", "KV transfer per request", "| ttft |"):
        assert words in report, words
    console = Console(record=True, width=200)
    print_result(console, problem, result)
    text = console.export_text()
    assert "OPTIMAL" in text and "proven-optimal plan" in text and "decode pool" in text


def test_solve_cli_disaggregation_option(solved) -> None:  # type: ignore[no-untyped-def]
    _, result = solved
    outcome = CliRunner().invoke(app, ["solve", str(INSTANCE), "--disaggregation", "only", "--json", "--no-timings"])
    assert outcome.exit_code == 0, outcome.output
    cli = json.loads(outcome.stdout)
    assert cli["mode"] == "disaggregated" and cli["gpus"] == result.evaluation.gpus
    assert cli["prefill"]["parallelism"] == result.plan.prefill.parallelism.model_dump()
    assert cli["metrics"] == pytest.approx(result.evaluation.metrics())
    bad = CliRunner().invoke(app, ["solve", str(INSTANCE), "--disaggregation", "sometimes"])
    assert bad.exit_code == 2 and "--disaggregation" in bad.output


def test_the_override_leaves_the_instance_alone_when_not_given() -> None:
    problem = api.load_problem(INSTANCE)
    assert problem.objective.disaggregation == "off"
    assert with_disaggregation(problem, None) is problem and with_disaggregation(problem, "off") is problem
    assert with_disaggregation(problem, "allow").objective.disaggregation == "allow"
    settings = SolveSettings(disaggregation="only")
    task_problem = problem_for_task(problem, Task(str(INSTANCE), "instance"), settings.disaggregation)
    assert task_problem.objective.disaggregation == "only"


def test_topology_picture_shows_the_pools_and_the_scaleout_kv_path(tmp_path: Path) -> None:
    problem = api.load_problem(INSTANCE)
    evaluation = evaluate_disaggregated(problem, load_any_plan(PLAN))  # type: ignore[arg-type]
    fig = disagg_topology_figure(problem, evaluation)
    ax = fig.axes[0]
    gpus = {c.get_gid(): len(c.get_offsets()) for c in ax.collections if c.get_gid()}
    assert gpus == {"prefill-gpus": 8, "decode-gpus": 8}
    legs = sorted(p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith("kv-"))
    assert legs == ["kv-decode-leg", "kv-prefill-leg"]  # node 0 -> network -> node 1
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "scale-out network" in texts and "281 MB/request over scale-out" in texts
    assert "node 0\n8 prefill (replica 0)" in texts and "node 1\n8 decode (replica 0)" in texts
    written = topology_picture(problem, evaluation, tmp_path / "topo")
    assert [p.name for p in written] == ["topo.png", "topo.svg"] and all(p.stat().st_size > 0 for p in written)


def test_topology_picture_of_pools_sharing_a_node_draws_the_nvlink_path(tmp_path: Path) -> None:
    def four_and_four(d: dict) -> None:
        d["gpus"] = 8
        for pool in ("prefill", "decode"):
            d[pool].update(gpus=4, parallelism={"tp": 1, "dp_attn": 4, "ep": 4})

    problem = api.load_problem(INSTANCE)
    evaluation = evaluate_disaggregated(problem, load_any_plan(_write_plan(tmp_path, four_and_four)))  # type: ignore[arg-type]
    assert pool_slots(evaluation, 8) == {0: ["prefill"] * 4 + ["decode"] * 4}
    ax = disagg_topology_figure(problem, evaluation).axes[0]
    assert [p.get_gid() for p in ax.patches if p.get_gid() == "kv-path"] == ["kv-path"]
    assert "over NVLink" in " ".join(t.get_text() for t in ax.texts)


def test_pool_slots_follow_the_nodes_written() -> None:
    problem = api.load_problem(INSTANCE)
    data = json.loads(PLAN.read_text())
    data["prefill"]["nodes"], data["decode"]["nodes"] = [1], [0]
    plan = DisaggregatedPlan.model_validate(data)
    evaluation = evaluate_disaggregated(problem, plan)
    assert pool_slots(evaluation, 8) == {0: ["decode"] * 8, 1: ["prefill"] * 8}
    # two prefill replicas of 8 over nodes [3, 1]: ranks follow the list, so node 3 holds replica 0
    data["gpus"], data["prefill"]["gpus"], data["prefill"]["nodes"] = 24, 16, [3, 1]
    data["prefill"]["parallelism"]["replicas"] = 2
    problem = problem.replace(cluster=problem.cluster.model_copy(update={"num_nodes": 4}))
    evaluation = evaluate_disaggregated(problem, DisaggregatedPlan.model_validate(data))
    assert pool_slots(evaluation, 8) == {0: ["decode"] * 8, 1: ["prefill"] * 8, 3: ["prefill"] * 8}
    texts = [t.get_text() for t in disagg_topology_figure(problem, evaluation).axes[0].texts]
    assert "node 3\n8 prefill (replica 0)" in texts and "node 1\n8 prefill (replica 1)" in texts


def test_compare_row_and_files_of_a_disaggregated_answer(solved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from placer.compare import Comparison
    from placer.report.terminal import degrees_text

    problem, result = solved
    entry = Entry(Task(str(INSTANCE), problem.hardware.name), problem, result)
    row = entry_row(entry)
    plan, evaluation = result.plan, result.evaluation
    assert row["mode"] == "disaggregated" and row["gpus"] == plan.gpus == plan.prefill.gpus + plan.decode.gpus
    assert row["prefill"]["parallelism"] == plan.prefill.parallelism.model_dump()
    assert row["decode"]["nodes"] == list(evaluation.nodes_decode) and row["kv_path"] == "scaleout"
    memories = [c.value for c in evaluation.rules if c.name.endswith("memory_per_gpu")]
    assert row["memory_gb_per_gpu_max"] == max(memories) and row["memory_headroom_gb"] > 0
    p, d = plan.prefill.parallelism, plan.decode.parallelism
    assert degrees_text(row) == f"P {p.pp}·{p.tp}·{p.dp_attn}·{p.ep}·{p.tp_moe}·{p.replicas} + D " + (
        f"{d.pp}·{d.tp}·{d.dp_attn}·{d.ep}·{d.tp_moe}·{d.replicas}"
    )
    written = write_comparison(Comparison(problem.name, problem, [entry]), tmp_path, formats=("png",))
    names = {path.name for path in written}
    assert {"h200-prefill-placement.png", "h200-decode-placement.png", "h200-topology.png", "h200.json"} <= names
    markdown = (tmp_path / problem.name / "compare.md").read_text()
    assert degrees_text(row) in markdown and "disaggregated plan" in markdown
    report = (tmp_path / problem.name / "h200.md").read_text()
    assert "Pools and the KV path between them" in report and "## Pools" in report


def test_frontier_point_of_a_disaggregated_answer(solved) -> None:  # type: ignore[no-untyped-def]
    _, result = solved
    point = point_from("tpot_ms", 50.0, result, "disaggregated")
    plan = result.plan
    assert point.mode == "disaggregated" and point.gpus == plan.gpus
    assert point.degrees == f"P {plan.prefill.parallelism.label} + D {plan.decode.parallelism.label}"
    assert point.concurrency == pytest.approx(170, rel=1e-3)
    assert point.tokens_per_s_per_gpu == pytest.approx(result.evaluation.point.output_tokens_per_s_per_gpu)
    assert point.tokens_per_s_per_user == pytest.approx(1000 / point.tpot_ms)
    markdown = frontier_markdown("x", [point], None)
    assert DISAGG_NOTE in markdown and point.degrees in markdown


def test_frontier_problems_by_kind() -> None:
    problem = with_disaggregation(api.load_problem(INSTANCE), "allow")
    aggregated = tpot_problem(problem, 30.0)
    assert aggregated.objective.disaggregation == "off" and aggregated.objective.concurrency == "auto"
    disaggregated = disagg_tpot_problem(problem, 30.0)
    assert disaggregated.objective.disaggregation == "only" and disaggregated.objective.concurrency == "auto"
    assert disaggregated.workload == aggregated.workload and disaggregated.slo.tpot_ms == 30.0


def test_disaggregated_frontier_never_rises_as_the_bound_tightens() -> None:
    problem = with_disaggregation(api.load_problem(INSTANCE), "only")
    points = frontier(problem, tpot_ms=(50.0, 27.0), time_limit_s=None)
    assert [p.mode for p in points] == ["disaggregated", "disaggregated"]
    loose, tight = points
    assert loose.status == "optimal" and loose.tpot_ms <= 50.0
    # 27 ms excludes the 27.3 ms optimum at 50 ms: a lower optimum, or none
    assert tight.tokens_per_s_per_gpu is None or tight.tokens_per_s_per_gpu <= loose.tokens_per_s_per_gpu
    assert tight.tokens_per_s_per_gpu is None or tight.tpot_ms <= 27.0


def test_an_unstable_load_reads_as_null_and_violated(tmp_path: Path) -> None:
    # 1,000 requests/s of 4,000-token prompts is far beyond one 8-GPU prefill pool (its capacity is
    # about 20 requests/s, see the first test): the latencies are infinite, JSON null, "stable" broken
    data = json.loads(INSTANCE.read_text())
    data["model"] = str(ROOT / data["model"])
    data["workload"] = {"kind": "rate", "rate_rps": 1000, "prompt_tokens": {"min": 4000, "max": 4000},
                        "output_tokens": 500}  # fmt: skip
    instance = tmp_path / "rate.json"
    instance.write_text(json.dumps(data))
    doc = _evaluate_json(PLAN, instance)
    assert doc["evaluation"]["whole"]["ttft_s"] is None and doc["evaluation"]["feasible"] is False
    assert doc["slo"]["stable"]["ok"] is False and "prefill pool at utilisation" in doc["evaluation"]["whole"]["reason"]
    json.dumps(doc, allow_nan=False)  # no infinity or NaN anywhere
    outcome = CliRunner().invoke(app, ["evaluate", str(instance), str(PLAN)])
    assert outcome.exit_code == 0 and "unstable:" in outcome.stdout and "VIOLATED" in outcome.stdout


def test_compare_with_disaggregation_allowed_sets_both_kinds_side_by_side(tmp_path: Path) -> None:
    from placer.compare import compare, comparison_document

    settings = SolveSettings(time_limit_s=None, disaggregation="allow")
    comparison = compare(INSTANCE, ["instance"], settings, jobs=1)
    assert comparison.split and [e.task.disaggregation for e in comparison.entries] == ["off", "only"]
    document = comparison_document(comparison, timings=False)
    aggregated, disaggregated = document["rows"]
    assert (aggregated["name"], aggregated["mode"]) == ("h200-aggregated", "aggregated")
    assert (disaggregated["name"], disaggregated["mode"]) == ("h200-disaggregated", "disaggregated")
    assert "parallelism" in aggregated and "prefill" in disaggregated and "parallelism" not in disaggregated
    (kinds,) = document["kinds"]
    ratio = disaggregated["decode_tokens_per_ms_per_gpu"] / aggregated["decode_tokens_per_ms_per_gpu"]
    assert kinds["throughput_per_gpu_ratio"] == pytest.approx(ratio)
    assert kinds["aggregated"]["gpus"] == aggregated["gpus"] and kinds["disaggregated"]["gpus"] == disaggregated["gpus"]
    # the winner is the one with the smaller lexicographic terms of the instance's objective
    a, d = (list(e.result.terms.values()) for e in comparison.entries)
    assert kinds["better"] == ("disaggregated" if d < a else "aggregated")
    write_comparison(comparison, tmp_path, formats=("png",))
    folder = tmp_path / comparison.instance
    assert (folder / "h200-aggregated.json").is_file() and (folder / "h200-disaggregated.json").is_file()
    assert load_any_plan(folder / "h200-disaggregated.json").gpus == disaggregated["gpus"]
    markdown = (folder / "compare.md").read_text()
    assert "## Disaggregated against aggregated" in markdown and f"{ratio:.3f}x" in markdown
    console = Console(record=True, width=220)
    from placer.report.terminal import print_comparison

    print_comparison(console, document)
    text = console.export_text()
    assert f"({ratio:.3f}x)" in text and f"better: {kinds['better']}" in text and "disaggregated" in text


def test_frontier_figure_draws_one_curve_per_kind() -> None:
    from placer.frontier import FrontierPoint
    from placer.report.frontier import frontier_figure

    def point(value: float, tpot: float, per_gpu: float, mode: str) -> FrontierPoint:
        degrees = (
            "pp1 tp1 dp8 ep8 tpm1 x1"
            if mode == "aggregated"
            else "P pp1 tp2 dp4 ep8 tpm1 x1 + D pp1 tp1 dp8 ep8 tpm1 x1"
        )
        return FrontierPoint("tpot_ms", value, "optimal", 0.0, 16, degrees, 170.0, tpot, 0.3, 1000 / tpot, per_gpu,
                             mode=mode)  # fmt: skip

    points = [point(50, 45, 600, "aggregated"), point(30, 28, 430, "aggregated"), point(50, 27, 380, "disaggregated")]
    ax = frontier_figure("x", points).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["aggregated plans", "disaggregated plans"]
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [2, 1]
    assert any("\n+ D pp1" in t.get_text() for t in ax.texts)  # a disaggregated label on two lines
    # an aggregated-only frontier keeps its single unlabelled curve
    assert frontier_figure("x", points[:2]).axes[0].get_legend() is None
