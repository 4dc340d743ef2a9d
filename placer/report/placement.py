"""Placement section of the reports: placer against every baseline, on the same statistics and slots."""

from __future__ import annotations

import dataclasses
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


TRADE_HEADERS = (
    "redundant slots/GPU",
    "slots/rank",
    "HBM headroom GB",
    "headroom / KV cache",
    "max/mean worst",
    "max/mean mean",
    "dedup copies/token",
    "throughput tokens/ms/GPU",
    "feasible",
    "chosen",
)


def _trade_rows(report: Any) -> list[tuple[str, ...]]:
    rows = []
    for c in report.slot_trade:
        if not c.placed:
            rows.append((str(c.redundant_per_gpu), str(c.slots_per_rank), *(["—"] * 6), c.reason, ""))
            continue
        rows.append(
            (
                str(c.redundant_per_gpu),
                str(c.slots_per_rank),
                f"{c.memory_headroom_bytes / 1e9:.2f}",
                f"{c.memory_headroom_bytes / c.kv_cache_bytes:.2f}x" if c.kv_cache_bytes > 0 else "—",
                f"{c.max_over_mean_worst:.3f}",
                f"{c.max_over_mean_mean:.3f}",
                f"{c.dedup_copies_per_token:.3f}",
                f"{c.throughput_tokens_per_ms_per_gpu:.3f}",
                "yes" if c.feasible else "no",
                "<-" if c.redundant_per_gpu == report.redundant_per_gpu else "",
            )
        )
    return rows


def _lines(report: Any, wall_clock: bool = True) -> list[str]:
    gap = report.gap
    first = report.placer[0].placement if report.placer else ()
    limit = "" if report.time_limit_s is None else f" (work budget {report.time_limit_s:g} s)"
    timing = f" in {report.wall_s:.2f} s{limit}" if wall_clock else limit
    lines = [
        f"routing statistics: {report.stats_source}",
        f"{report.slots_per_rank} expert slots per EP rank ({report.redundant_per_gpu} redundant per GPU; memory "
        f"holds up to {report.memory_max_redundant}); {len(report.layers)} MoE layers placed{timing}; "
        f"node-model gap (kept co-activation vs bound, worst layer) {'—' if gap is None else f'{gap:.1%}'}",
        f"host order: {' '.join(report.host_order[:16])}{' ...' if len(report.host_order) > 16 else ''}"
        f" (TP groups inside nodes: {'yes' if report.tp_inside_nodes else 'no'})",
        f"expert map, layer {report.layers[0]}: "
        + "; ".join(f"r{r}: {list(e)}" for r, e in enumerate(first[:8]))
        + (" ..." if len(first) > 8 else ""),
    ]
    return lines + [f"note: {n}" for n in report.notes]


def ep_ranks(report: Any) -> int:
    """EP ranks of the placed plan (the rows of a layer's expert map)."""
    return len(report.placer[0].placement) if report.placer else 0


#: What the reports say instead of a table of zeros when every GPU holds every expert.
NOTHING_TO_PLACE = (
    "nothing to place (ep = 1: every GPU holds all experts of its stage, so there is no "
    "all-to-all traffic to reduce and no load to balance across EP ranks)"
)


def print_placement(console: Console, report: Any, copy_bytes: float) -> None:
    if ep_ranks(report) <= 1:
        console.print(f"expert placement: {NOTHING_TO_PLACE}", highlight=False)
        return
    table = Table(
        title="expert placement vs baselines (bytes per token per MoE layer, dispatch + combine; mean over layers)"
    )
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "method" else "right")
    for row in _rows(report, copy_bytes):
        table.add_row(*row)
    console.print(table)
    if len(report.slot_trade) > 1:
        trade = Table(title="redundant slots per GPU: balance and traffic against HBM left for the KV cache")
        for h in TRADE_HEADERS:
            trade.add_column(h, justify="right")
        for row in _trade_rows(report):
            trade.add_row(*row)
        console.print(trade)
    for line in _lines(report):
        console.print(line, highlight=False)


def placement_markdown(report: Any, copy_bytes: float, wall_clock: bool = True) -> str:
    """The placement section; ``wall_clock=False`` leaves out the run time (committed reports)."""
    if ep_ranks(report) <= 1:
        return f"## Expert placement\n\nN{NOTHING_TO_PLACE[1:]}.\n"
    out = ["## Expert placement", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(row) + " |" for row in _rows(report, copy_bytes)]
    if len(report.slot_trade) > 1:
        out += ["", "| " + " | ".join(TRADE_HEADERS) + " |", "|" + "---|" * len(TRADE_HEADERS)]
        out += ["| " + " | ".join(row) + " |" for row in _trade_rows(report)]
    out += [""] + [f"- {line}" for line in _lines(report, wall_clock)]
    return "\n".join(out) + "\n"


def placement_summary(report: Any) -> dict[str, Any]:
    """JSON-able summary for the plan document (with ep = 1 only the statement that there is
    nothing to place, not a table of zeros against the baselines)."""
    if ep_ranks(report) <= 1:
        return {"routing": report.stats_source, "ep": 1, "nothing_to_place": NOTHING_TO_PLACE}
    return {
        "routing": report.stats_source,
        "target_max_over_mean": report.target,
        "slots_per_rank": report.slots_per_rank,
        "gap": report.gap,
        "redundant_slots_per_gpu": report.redundant_per_gpu,
        "memory_max_redundant_slots_per_gpu": report.memory_max_redundant,
        "balance_lower_bound": report.balance_bound,
        "timed_out_layers": report.timed_out_layers,
        "slot_trade": [dataclasses.asdict(c) for c in report.slot_trade],
        "placer": report.summary([p.metrics for p in report.placer]),
        "baselines": {name: report.summary(ms) for name, ms in report.baselines.items()},
        "host_order": report.host_order,
        "notes": report.notes,
    }


def print_place(console: Console, outcome: Any) -> None:
    """Terminal report: the placement table, then the evaluator's figures with each map."""
    print_placement(console, outcome.report, outcome.copy_bytes)
    maps = [("placed expert map", outcome.placed_eval), ("plan's own map", outcome.contiguous_eval)]
    for label, ev in maps[:1] if ep_ranks(outcome.report) <= 1 else maps:
        broken = [c.name for c in ev.slo + ev.rules if not c.ok]
        console.print(
            f"evaluator, {label}: TTFT {ev.ttft_s:.3f} s, TPOT {ev.tpot_s * 1e3:.3f} ms, decode "
            f"{ev.decode_tokens_per_ms_per_gpu:.2f} tokens/ms/GPU, max/mean GPU load {ev.load_imbalance_max:.3f}, "
            f"cross-node {ev.cross_node_bytes_per_token:,.0f} B/token/MoE layer (dedup), "
            f"{'meets every constraint' if not broken else f'breaks {broken}'}",
            highlight=False,
        )
