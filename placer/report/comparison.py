"""Files of a hardware comparison: per hardware the plan JSON, its Markdown report and pictures;
per instance ``compare.md``, ``compare.json`` and the comparison charts.

Committed results must diff only when an answer moves, so these files leave out wall-clock times
(solver and build seconds); status, objective, bound and gap stay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from placer.compare import Comparison, Entry, comparison_document
from placer.report.plan_json import dumps
from placer.report.terminal import degrees_text, fmt
from placer.serving_disagg import DisaggEvaluation


def stable_document(document: dict[str, Any]) -> dict[str, Any]:
    """A plan document without wall-clock figures."""
    doc = json.loads(json.dumps(document))
    if isinstance(doc.get("solver"), dict):
        doc["solver"].pop("wall_s", None)
    if isinstance(doc.get("search"), dict):
        doc["search"].pop("build_s", None)
    return doc


def _stable_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]


def write_entry(entry: Entry, folder: Path, formats: Sequence[str], pictures: bool) -> list[Path]:
    """``<hardware>.json``, ``<hardware>.md`` and, for a plan, its placement and topology pictures."""
    from placer.files import write_atomic
    from placer.report.markdown import evaluation_markdown
    from placer.report.result_json import result_document

    hw = entry.task.name if entry.task.kind else entry.problem.hardware.name  # file stem: hardware (and kind)
    document = stable_document(result_document(entry.result, entry.problem, timings=False))
    written: list[Path] = []
    figures: list[tuple[str, str]] = []
    evaluation = entry.evaluation
    if evaluation is not None and pictures:
        from placer.report import plots

        disaggregated = isinstance(evaluation, DisaggEvaluation)
        if entry.problem.model.moe is not None and disaggregated:
            for phase in ("prefill", "decode"):  # each pool's own expert load, as an aggregated plan
                pool_eval = getattr(evaluation, phase)
                written += plots.placement_heatmap(
                    entry.problem, pool_eval, folder / f"{hw}-{phase}-placement", formats
                )
                figures.append(
                    (f"Expert load per (MoE layer, GPU), {phase} pool", f"{hw}-{phase}-placement.{formats[0]}")
                )
        elif entry.problem.model.moe is not None:
            written += plots.placement_heatmap(entry.problem, evaluation, folder / f"{hw}-placement", formats)
            figures.append(("Expert load per (MoE layer, GPU)", f"{hw}-placement.{formats[0]}"))
        written += plots.topology_picture(entry.problem, evaluation, folder / f"{hw}-topology", formats)
        caption = "Pools and the KV path between them" if disaggregated else "Topology with all-to-all traffic per link"
        figures.append((caption, f"{hw}-topology.{formats[0]}"))
    if evaluation is not None:
        report = evaluation_markdown(entry.problem, evaluation, document, pictures=figures)
    else:
        reason = "\n".join(f"- {line}" for line in entry.result.explanation) or "- no plan within the time limit"
        report = f"# {entry.problem.name} on {hw}: {entry.result.status.value}\n\n{reason}\n"
    json_path, md_path = folder / f"{hw}.json", folder / f"{hw}.md"
    write_atomic(json_path, dumps(document))
    write_atomic(md_path, report)
    return [json_path, md_path, *written]


def write_comparison(
    comparison: Comparison, out_dir: str | Path, formats: Sequence[str] = ("png", "svg"), pictures: bool = True
) -> list[Path]:
    """Everything for one instance under ``out_dir/<instance>/``."""
    from placer.files import write_atomic

    folder = Path(out_dir) / comparison.instance
    written: list[Path] = []
    for entry in comparison.entries:
        written += write_entry(entry, folder, formats, pictures)
    document = comparison_document(comparison, timings=False)
    document["rows"] = _stable_rows(document["rows"])
    charts: list[tuple[str, str]] = []
    if pictures:
        from placer.report import plots

        title = f"{comparison.instance}: fewest GPUs meeting the SLOs, and throughput per GPU, per hardware"
        written += plots.hardware_chart(document["rows"], title, folder / "compare", formats)
        charts.append(("Hardware comparison", f"compare.{formats[0]}"))
        if "sweep" in document:
            key = document["sweep"]["slo"]
            document["sweep"]["rows"] = _stable_rows(document["sweep"]["rows"])
            written += plots.frontier_chart(
                document["sweep"]["rows"],
                key,
                f"{comparison.instance}: GPUs needed against {key}",
                folder / f"frontier-{key}",
                formats,
            )
            charts.append((f"GPUs needed against {key}", f"frontier-{key}.{formats[0]}"))
    write_atomic(folder / "compare.json", json.dumps(document, indent=2) + "\n")
    write_atomic(folder / "compare.md", comparison_markdown(document, charts))
    return [*written, folder / "compare.json", folder / "compare.md"]


#: Under the table of a split comparison (disaggregation ``allow``).
KINDS_NOTE = (
    "Each hardware solved twice under the same SLOs: aggregated plans only and disaggregated plans only; "
    "throughput is output tokens per ms per GPU over all the plan's GPUs; 'better' is the winner under the "
    "instance's objective (its lexicographic terms; a tie goes to the aggregated plan)."
)


def _cell(row: dict[str, Any], key: str, digits: int = 4) -> str:
    value = row.get(key)
    return "—" if value is None else fmt(value, digits)


def comparison_markdown(document: dict[str, Any], charts: Sequence[tuple[str, str]] = ()) -> str:
    """The comparison table (binding constraint in bold), the sweep, and the charts."""
    lines = [
        f"# {document['instance']} across hardware",
        "",
        f"Instance hardware: {document['instance_hardware']}. Each row is a separate solve of the same instance; "
        "the cluster keeps its GPU budget with the profile's node shape (see `placer/compare.py`).",
        "",
        "| hardware | GPUs | nodes | pp·tp·dp_attn·ep·tp_moe·replicas | TTFT [s] | TPOT [ms] | prefill [tokens/ms/GPU] "
        "| decode [tokens/ms/GPU] | memory headroom [GB] | cross-node [B/token/MoE layer] | binding constraint (slack) "
        "| $/M output tokens | $/M prompt tokens | status | gap | plan |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---|",
    ]
    reasons = []
    for row in document["rows"]:
        hw = row.get("name", row["hardware"])
        gap = "—" if row.get("gap") is None else f"{row['gap']:.2%}"
        if "gpus" not in row:
            lines.append(f"| {hw} |" + " — |" * 12 + f" {row['status']} | {gap} | [report]({hw}.md) |")
            reasons.append(f"- **{hw}**: {row.get('reason', '')}")
            continue
        degrees = degrees_text(row)
        binding = (
            f"**{row['binding_constraint']}** ({row['binding_slack']:+.1%})" if row.get("binding_constraint") else "—"
        )
        lines.append(
            f"| {hw} | {row['gpus']} | {row['nodes']} | {degrees} | {_cell(row, 'ttft_s')} | {_cell(row, 'tpot_ms')} | "
            f"{_cell(row, 'prefill_tokens_per_ms_per_gpu')} | {_cell(row, 'decode_tokens_per_ms_per_gpu')} | "
            f"{_cell(row, 'memory_headroom_gb')} | {_cell(row, 'cross_node_bytes_per_token')} | {binding} | "
            f"{_cell(row, 'usd_per_million_output_tokens', 3)} | {_cell(row, 'usd_per_million_prompt_tokens', 3)} | "
            f"{row['status']} | {gap} | [report]({hw}.md) |"
        )
    if reasons:
        lines += ["", "Why no plan:", "", *reasons]
    lines += [
        "",
        "Throughput is per GPU and per phase; memory headroom is the usable HBM (capacity less the margin) minus the "
        "fullest GPU; cost is the profile's GPU-hour price over the phase's throughput (— when the profile has no "
        "price).",
    ]
    if any(row.get("mode") == "disaggregated" for row in document["rows"]):
        lines += [
            "",
            "`P … + D …`: a disaggregated plan, the prefill pool's degrees then the decode pool's; its GPUs, "
            "throughput per GPU and headroom (fullest GPU of either pool) count both pools.",
        ]
    if document.get("kinds"):
        lines += ["", "## Disaggregated against aggregated", "", KINDS_NOTE, ""]
        lines += ["| hardware | aggregated GPUs | disaggregated GPUs | aggregated [tokens/ms/GPU] "
                  "| disaggregated [tokens/ms/GPU] | disaggregated / aggregated | better |"]  # fmt: skip
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        for item in document["kinds"]:
            a, d = item["aggregated"], item["disaggregated"]
            ratio = item["throughput_per_gpu_ratio"]
            lines.append(
                f"| {item['hardware']} | {a['gpus'] or a['status']} | {d['gpus'] or d['status']} | "
                f"{_cell(a, 'decode_tokens_per_ms_per_gpu')} | {_cell(d, 'decode_tokens_per_ms_per_gpu')} | "
                f"{'—' if ratio is None else f'{ratio:.3f}x'} | {item['better'] or 'neither'} |"
            )
    sweep = document.get("sweep")
    if sweep:
        key = sweep["slo"]
        hardware = list(dict.fromkeys(r["hardware"] for r in sweep["rows"]))
        values = sorted({r["slo_overrides"][key] for r in sweep["rows"]})
        lines += ["", f"## GPUs needed against {key}", "", f"| {key} | " + " | ".join(hardware) + " |"]
        lines.append("|---:|" + "---:|" * len(hardware))
        for value in values:
            cells = []
            for hw in hardware:
                row = next(r for r in sweep["rows"] if r["hardware"] == hw and r["slo_overrides"][key] == value)
                cells.append(str(row["gpus"]) if "gpus" in row else row["status"])
            lines.append(f"| {fmt(value)} | " + " | ".join(cells) + " |")
    for caption, path in charts:
        lines += ["", f"## {caption}", "", f"![{caption}]({path})"]
    return "\n".join(lines) + "\n"
