"""Placement section of the reports: placer against every baseline, on the same statistics and slots."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _rows(report: Any, copy_bytes: float) -> list[tuple[str, ...]]:
    rows = []
    methods = {f"placer (max/mean <= {report.target:g})": [p.metrics for p in report.placer], **report.baselines}
    for name, metrics in methods.items():
        s = report.summary(metrics)
        rows.append(
            (
                name,
                f"{s['max_over_mean_worst']:.3f}",
                f"{s['dedup_cross']:.3f}",
                f"{s['dedup_cross'] * copy_bytes:,.0f}",
                f"{s['plain_cross']:.3f}",
                f"{s['plain_cross'] * copy_bytes:,.0f}",
                f"{s['wasted_slots']:.0f}",
                f"{s['empty_slots']:.0f}",
            )
        )
    return rows


HEADERS = (
    "method",
    "max/mean GPU load (worst layer)",
    "dedup copies/token",
    "dedup B/token",
    "plain copies/token",
    "plain B/token",
    "wasted slots",
    "empty slots",
)


def _lines(report: Any) -> list[str]:
    gap = report.gap
    first = report.placer[0].placement if report.placer else ()
    lines = [
        f"routing statistics: {report.stats_source}",
        f"{report.slots_per_rank} expert slots per EP rank; {len(report.layers)} MoE layers placed in "
        f"{report.wall_s:.2f} s; "
        f"node-model gap (kept co-activation vs bound, worst layer) {'—' if gap is None else f'{gap:.1%}'}",
        f"host order: {' '.join(report.host_order[:16])}{' ...' if len(report.host_order) > 16 else ''}"
        f" (TP groups inside nodes: {'yes' if report.tp_inside_nodes else 'no'})",
        f"expert map, layer {report.layers[0]}: "
        + "; ".join(f"r{r}: {list(e)}" for r, e in enumerate(first[:8]))
        + (" ..." if len(first) > 8 else ""),
    ]
    return lines + [f"note: {n}" for n in report.notes]


def print_placement(console: Console, report: Any, copy_bytes: float) -> None:
    table = Table(
        title="expert placement vs baselines (bytes per token per MoE layer, dispatch + combine; mean over layers)"
    )
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "method" else "right")
    for row in _rows(report, copy_bytes):
        table.add_row(*row)
    console.print(table)
    for line in _lines(report):
        console.print(line, highlight=False)


def placement_markdown(report: Any, copy_bytes: float) -> str:
    out = ["## Expert placement", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(row) + " |" for row in _rows(report, copy_bytes)]
    out += [""] + [f"- {line}" for line in _lines(report)]
    return "\n".join(out) + "\n"


def placement_summary(report: Any) -> dict[str, Any]:
    """JSON-able summary for the plan document."""
    return {
        "routing": report.stats_source,
        "target_max_over_mean": report.target,
        "slots_per_rank": report.slots_per_rank,
        "gap": report.gap,
        "placer": report.summary([p.metrics for p in report.placer]),
        "baselines": {name: report.summary(ms) for name, ms in report.baselines.items()},
        "host_order": report.host_order,
        "notes": report.notes,
    }
