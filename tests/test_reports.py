"""Report generation for one instance: plan JSON, Markdown with its pictures, compare.md and the
charts, written reproducibly (no wall-clock times, no timestamps in the SVGs)."""

from __future__ import annotations

import json
from pathlib import Path

from placer.compare import SolveSettings, compare
from placer.report.comparison import write_comparison
from placer.report.loads import plan_loads

ROOT = Path(__file__).resolve().parents[1]
MOE10B = ROOT / "instances" / "moe10b.json"


def test_report_files_for_one_instance(tmp_path: Path) -> None:
    comparison = compare(MOE10B, ["instance"], SolveSettings(time_limit_s=None), sweep=("ttft_s", [1.0, 5.0]), jobs=1)
    first = {p.relative_to(tmp_path): p.read_bytes() for p in write_comparison(comparison, tmp_path / "a")}
    folder = tmp_path / "a" / "moe10b"
    plan = json.loads((folder / "seed-400tf.json").read_text())
    assert plan["status"] == "optimal" and "wall_s" not in plan["solver"]
    report = (folder / "seed-400tf.md").read_text()
    for picture in ("seed-400tf-placement.png", "seed-400tf-topology.png"):
        assert f"]({picture})" in report
        assert (folder / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = (folder / picture.replace(".png", ".svg")).read_text()
        assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg
    summary = (folder / "compare.md").read_text()
    assert "| seed-400tf |" in summary and "](compare.png)" in summary and "](frontier-ttft_s.png)" in summary
    assert "**" in summary  # the binding constraint is in bold
    # a second run writes the same bytes: diffs of results/ show only moved answers
    again = compare(MOE10B, ["instance"], SolveSettings(time_limit_s=None), sweep=("ttft_s", [1.0, 5.0]), jobs=1)
    second = {p.relative_to(tmp_path / "a").as_posix(): p.read_bytes() for p in write_comparison(again, tmp_path / "a")}
    for name in ("moe10b/compare.md", "moe10b/seed-400tf.json", "moe10b/seed-400tf.md", "moe10b/compare.svg"):
        assert first[Path("a") / name] == second[name], name


def test_plan_loads_rows_sum_to_top_k() -> None:
    from placer.loading import load_plan
    from placer.problem import load_problem

    problem = load_problem(MOE10B)
    plan = load_plan(ROOT / "plans" / "seed000-tp2-ep4-pp4.json")
    loads = plan_loads(problem, plan)
    top_k, tp_moe = problem.model.moe.top_k, plan.parallelism.tp_moe
    width = plan.parallelism.stage_width
    for i, layer in enumerate(loads.moe_layers):
        stage = next(s for s, st in enumerate(plan.stages) if st.first <= layer <= st.last)
        row = loads.expert_load[i, stage * width : (stage + 1) * width]
        assert abs(row.sum() - top_k * tp_moe) < 1e-9
        assert all(v != v for j, v in enumerate(loads.expert_load[i]) if not stage * width <= j < (stage + 1) * width)
