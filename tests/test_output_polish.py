"""What users read: objective terms named with units, --json comparable byte for byte, pictures
that say what they show (no flat heatmap without a word, no 3.25e+03), explanations in grammatical
English, and no table of zeros when there is nothing to place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from placer import api
from placer.cli import app
from placer.explain import OP_CAUSES
from placer.report import plots
from placer.report.objective import TERM_LABELS, describe_terms
from placer.report.placement import placement_markdown

ROOT = Path(__file__).resolve().parents[1]
MOE10B = ROOT / "instances" / "moe10b.json"
PP4_PLAN = ROOT / "plans" / "seed000-tp2-ep4-pp4.json"
SOLVE = ["solve", str(MOE10B), "--json", "--workers", "1", "--time-limit", "30"]


@pytest.fixture(scope="module")
def solved() -> tuple[Any, Any]:
    problem = api.load_problem(MOE10B)
    return problem, api.solve(problem, time_limit_s=None, workers=1)


def _keys(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in [f"{path}{key}", *_keys(v, f"{path}{key}.")]]
    if isinstance(value, list):
        return [k for i, v in enumerate(value) for k in _keys(v, f"{path}{i}.")]
    return []


def test_objective_terms_have_names_and_units_in_every_report(solved: tuple[Any, Any], tmp_path: Path) -> None:
    problem, result = solved
    assert problem.objective.throughput_phase == "prefill"
    document = api.result_document(result, problem)
    described = {d["term"]: d for d in document["objective"]["described"]}
    assert list(described) == list(result.terms)  # lexicographic order kept, internal keys kept
    assert all(d["label"] and d["unit"] and d["meaning"] for d in described.values())
    gpu_seconds = described["max_throughput_per_gpu"]
    assert gpu_seconds["label"] == "GPU-seconds per prefill batch" and gpu_seconds["unit"] == "GPU·s"
    # the throughput it stands for: tokens of a prefill batch over the GPU-seconds
    tokens = problem.workload.batch_size * problem.workload.prompt_tokens.max
    throughput = gpu_seconds["equivalent"]["value"]
    assert throughput == pytest.approx(tokens / (gpu_seconds["value"] * 1e3), rel=1e-9)
    assert throughput == document["metrics"]["prefill_tokens_per_ms_per_gpu"]
    # decode phase reads as a decode step
    (decode,) = describe_terms({"max_throughput_per_gpu": 2.0}, "decode")
    assert decode["label"] == "GPU-seconds per decode step" and "equivalent" not in decode
    assert set(TERM_LABELS) >= set(result.terms)

    terminal = CliRunner().invoke(app, SOLVE[:2] + ["--time-limit", "30"])
    assert terminal.exit_code == 0, terminal.output
    assert "max_throughput_per_gpu =" not in terminal.stdout
    assert "GPU-seconds per prefill batch = 1.92 GPU·s (= prefill throughput 682.5 tokens/ms/GPU)" in terminal.stdout

    api.write_outputs(tmp_path, problem, result.evaluation, document)
    markdown = (tmp_path / "moe10b.md").read_text()
    assert "| GPU-seconds per prefill batch | 1.92 (= 682.5 tokens/ms/GPU prefill throughput) | GPU·s |" in markdown
    assert f"**Solver:** {result.backend} — objective GPUs 1, bound 1" in markdown


def test_json_without_timings_is_byte_identical_across_runs(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, [*SOLVE, "--no-timings"])
    second = runner.invoke(app, [*SOLVE, "--no-timings"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert first.stdout.encode() == second.stdout.encode()
    assert "timings" not in json.loads(first.stdout)

    timed = runner.invoke(app, [*SOLVE, "--out", str(tmp_path)])
    document = json.loads(timed.stdout)
    clocks = document.pop("timings")
    assert clocks["solve_wall_s"] >= 0 and "build_s" in clocks and "placement_wall_s" in clocks
    # every wall-clock figure is under "timings", none elsewhere
    assert not [k for k in _keys(document) if k.endswith(("wall_s", "build_s", "elapsed_s"))]
    assert document == json.loads(first.stdout)
    # the file solve --out writes, timings included, still reads back as a plan
    evaluated = runner.invoke(app, ["evaluate", str(MOE10B), str(tmp_path / "moe10b.plan.json"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output


def test_topology_picture_draws_one_link_per_node_with_labels_clear() -> None:
    problem, evaluation = api.evaluate_files(MOE10B, PP4_PLAN)
    figure = plots.topology_figure(problem, evaluation)
    ax = figure.axes[0]
    assert evaluation.nodes == 4 and len(ax.lines) == 4  # aggregated: not one line per GPU (32)
    labels = [t.get_text() for t in ax.texts if t.get_text().startswith("node")]
    assert labels[0].splitlines() == ["node 0", "out 0 B", "NVLink 51,610 B"]
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().y0 <= ax.get_window_extent().y0 + 1  # under the axes


def test_heatmap_without_routing_statistics_says_so_and_ticks_are_plain() -> None:
    problem, evaluation = api.evaluate_files(MOE10B, PP4_PLAN)
    assert evaluation.uniform_routing
    figure = plots.placement_figure(problem, evaluation)
    ax = figure.axes[0]
    assert "no routing statistics given" in ax.get_title()
    assert any(t.get_text() == plots.UNIFORM_NOTE for t in ax.texts)
    colourbar = figure.axes[1].yaxis.get_major_formatter()
    assert colourbar(0.0125, 0) == "0.0125" and colourbar(3250.0, 0) == "3,250"


def test_chart_numbers_have_no_scientific_notation() -> None:
    assert plots.plain_number(3250) == "3,250" and plots.plain_number(0.0125) == "0.0125"
    assert plots.plain_number(1_234_567) == "1,230,000" and plots.plain_number(4.0227) == "4.02"
    rows = [
        {"hardware": "a", "status": "optimal", "gpus": 3250, "decode_tokens_per_ms_per_gpu": 12_500.0,
         "prefill_tokens_per_ms_per_gpu": 0.000125},
        {"hardware": "b", "status": "infeasible", "gpus": None},
    ]  # fmt: skip
    figure = plots.hardware_figure(rows, "t")
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert {"3,250", "12,500", "0.000125", "infeasible"} <= set(texts)
    for ax in figure.axes:
        formatter = ax.yaxis.get_major_formatter()
        assert all("e" not in formatter(v, 0) for v in (3250.0, 1e6, 2.5e-5))
    sweep = [
        {"hardware": "a", "slo_overrides": {"ttft_s": v}, "gpus": g} for v, g in ((1000.0, 8), (2500.0, 4), (5000.0, 2))
    ]
    frontier = plots.frontier_figure(sweep, "ttft_s", "t")
    frontier.canvas.draw()
    ticks = [t.get_text() for t in frontier.axes[0].get_xticklabels()]
    assert ticks == ["1,000", "2,500", "5,000"]


def test_explanations_agree_subject_and_verb() -> None:
    for cause, verb in OP_CAUSES.values():  # a plural head noun takes "take", a singular one "takes"
        assert cause.split()[-1].endswith("s") == (verb == "take"), (cause, verb)
    problem = api.load_problem(ROOT / "instances" / "moe10b-decode.json")
    result = api.solve(problem, time_limit_s=None, workers=1)
    text = " ".join(result.explanation)
    assert result.status.value == "infeasible" and "takes 98% of a layer's decode time" in text
    assert "reads takes" not in text and "e+" not in text


def test_nothing_to_place_when_ep_is_one(solved: tuple[Any, Any], tmp_path: Path) -> None:
    problem, result = solved
    assert result.plan.parallelism.ep == 1
    summary = api.result_document(result, problem)["search"]["placement"]
    assert "nothing to place" in summary["nothing_to_place"] and "baselines" not in summary
    markdown = placement_markdown(result.placement, 1.0)
    assert "Nothing to place (ep = 1" in markdown and "EPLB" not in markdown and "0.000" not in markdown
    plan = tmp_path / "ep1.json"
    plan.write_text(
        json.dumps({"gpus": 1, "parallelism": {"pp": 1, "tp": 1, "ep": 1}, "stages": [{"layers": [0, 15]}]})
    )
    placed = CliRunner().invoke(app, ["place", str(MOE10B), str(plan)])
    assert placed.exit_code == 0, placed.output
    assert "nothing to place (ep = 1" in placed.stdout and "EPLB" not in placed.stdout
    assert placed.stdout.count("evaluator,") == 1
