"""Pictures of plans and comparisons (matplotlib, Agg backend, PNG and SVG).

matplotlib is imported inside the functions only, so commands that draw nothing stay fast. Every
figure comes from the evaluator or the cost model (through :mod:`placer.report.loads` and the
comparison rows); files are written atomically and reproducibly (no timestamps, fixed SVG ids).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from placer.evaluator import Evaluation
from placer.problem import Problem
from placer.serving_disagg import DisaggEvaluation

FORMATS = ("png", "svg")
STAGE_COLOURS = (
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#C44E52",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#8C8C8C",
    "#CCB974",
    "#64B5CD",
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "placer"  # stable element ids: diffs show real changes
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable SVGs
    import matplotlib.pyplot as plt

    return plt


def plain_number(value: float, digits: int = 3) -> str:
    """``digits`` significant figures without scientific notation: 3,250 not 3.25e+03, 0.0125 not 1.25e-02."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    if decimals <= 0:
        return f"{round(value, decimals):,.0f}"
    return f"{value:,.{decimals}f}".rstrip("0").rstrip(".")


def plain_axis(axis: Any) -> None:
    """Ticks of ``axis`` as plain, thousands-separated numbers (no offset, no ``1e3`` multiplier)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _pos: plain_number(value, 6)))
    axis.set_minor_formatter(FuncFormatter(lambda _value, _pos: ""))


def save_figure(fig: Any, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem.png`` / ``stem.svg`` via temporary files and rename (never half-written)."""
    plt = _pyplot()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{fmt}")
        os.close(handle)
        try:
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight", metadata=metadata)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    plt.close(fig)
    return paths


def placement_heatmap(
    problem: Problem, evaluation: Evaluation, stem: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """MoE layers x GPUs (replica 0) heatmap of expert load; blank cells: layer not on that GPU."""
    return save_figure(placement_figure(problem, evaluation), stem, formats)


#: Written over a heatmap whose loads all come from uniform routing: without this the picture is
#: one flat colour that reads as a rendering fault rather than as "no statistics were given".
UNIFORM_NOTE = "no routing statistics given: uniform routing assumed,\nso every GPU of a stage carries the same load"


def placement_figure(problem: Problem, evaluation: Evaluation) -> Any:
    """The heatmap's figure (unsaved), for :func:`placement_heatmap` and for tests."""
    from placer.report.loads import plan_loads

    plt = _pyplot()
    loads = plan_loads(problem, evaluation.plan)
    par = evaluation.plan.parallelism
    gpus = loads.expert_load.shape[1]
    fig, ax = plt.subplots(figsize=(min(16, 3 + 0.22 * gpus), min(14, 2.5 + 0.13 * len(loads.moe_layers))))
    masked = np.ma.masked_invalid(loads.expert_load)
    peak = float(np.nanmax(loads.expert_load)) if np.isfinite(loads.expert_load).any() else 1.0
    image = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=peak)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("expert load [(token, expert) pairs per token]")
    plain_axis(bar.ax.yaxis)
    ax.set_xlabel("GPU (rank in replica 0)")
    ax.set_ylabel("MoE layer")
    plain_axis(ax.xaxis)
    ticks = list(range(0, len(loads.moe_layers), max(1, len(loads.moe_layers) // 16)))
    ax.set_yticks(ticks, [str(loads.moe_layers[i]) for i in ticks])
    for s in range(1, par.pp):  # stage boundaries
        ax.axvline(s * par.stage_width - 0.5, color="white", linewidth=1.5)
    if evaluation.uniform_routing:
        routing = "uniform routing (no routing statistics given)"
        ax.text(
            0.5, 0.5, UNIFORM_NOTE, transform=ax.transAxes, ha="center", va="center", fontsize=10,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85},
        )  # fmt: skip
    else:
        routing = "routing statistics"
    ax.set_title(
        f"{problem.name} on {evaluation.gpus} x {problem.hardware.name}: expert load per GPU\n"
        f"pp {par.pp} · ep {par.ep} · tp_moe {par.tp_moe}; max/mean {evaluation.load_imbalance_max:.3f}; {routing}",
        fontsize=10,
    )
    return fig


def topology_picture(
    problem: Problem, evaluation: Evaluation | DisaggEvaluation, stem: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """The NVLink domains a plan uses, each a box of its GPUs (coloured by stage), joined to the
    scale-out network by ONE line whose width is the domain's all-to-all bytes per token per MoE
    layer leaving it (the sum over its GPUs); the box edge's width is the bytes kept on NVLink.

    One line per domain, not per GPU: with 128 GPUs per-GPU lines are a wall that hides the labels.
    Replicas are identical, so every replica's GPUs carry replica 0's figures. A disaggregated
    plan draws its pools and the KV path between them (:func:`disagg_topology_figure`)."""
    if isinstance(evaluation, DisaggEvaluation):
        return save_figure(disagg_topology_figure(problem, evaluation), stem, formats)
    return save_figure(topology_figure(problem, evaluation), stem, formats)


def topology_figure(problem: Problem, evaluation: Evaluation) -> Any:
    """The topology picture's figure (unsaved), for :func:`topology_picture` and for tests."""
    from matplotlib.patches import FancyBboxPatch

    from placer.report.loads import plan_loads

    plt = _pyplot()
    loads = plan_loads(problem, evaluation.plan)
    layout = loads.layout
    replica_gpus = len(loads.stage_of_rank)
    per_domain = _domain_slots(layout.node_of, layout.domain_of, problem.fabric.gpus_per_node)
    out_bytes = {d: 0.0 for d in per_domain}
    up_bytes = {d: 0.0 for d in per_domain}
    for rank, domain in enumerate(layout.domain_of):
        out_bytes[domain] += float(loads.scaleout_bytes[rank % replica_gpus])
        up_bytes[domain] += float(loads.scaleup_bytes[rank % replica_gpus])
    out_peak = max(out_bytes.values(), default=0.0) or 1.0
    up_peak = max(up_bytes.values(), default=0.0) or 1.0
    most = max(len(slots) for slots in per_domain.values())
    cols = min(most, 4 if most <= 16 else 8)  # narrow boxes leave room for the labels
    gap = 3.6  # between boxes, in GPU spacings: room for the labels
    widths = [cols for _ in per_domain]
    total = sum(widths) + gap * (len(widths) - 1)
    many = len(per_domain) > 24  # labels shrink to the domain number
    label_size = 7 if len(per_domain) <= 12 else 6
    fig, ax = plt.subplots(figsize=(min(18.0, 3.0 + 0.1 * total + 0.35 * len(per_domain)), 5.2))
    marker = max(8.0, min(60.0, 2500.0 / max(1, sum(len(v) for v in per_domain.values()))))
    fabric_xy = (total / 2 - 0.5, 5.0)
    x0 = 0.0
    lowest = 0.0
    for domain, slots in per_domain.items():
        rows = -(-len(slots) // cols)
        top, bottom = 0.0, -0.8 * rows - 0.2
        lowest = min(lowest, bottom)
        centre = x0 + (cols - 1) / 2
        link_width = 0.4 + 7.0 * out_bytes[domain] / out_peak
        alpha = 0.25 if out_bytes[domain] == 0 else 0.85
        ax.plot(
            [centre, fabric_xy[0]], [top, fabric_xy[1]], color="#C44E52", linewidth=link_width, alpha=alpha, zorder=1
        )
        box = FancyBboxPatch(
            (x0 - 0.5, bottom), cols, top - bottom, boxstyle="round,pad=0.05,rounding_size=0.2",
            facecolor="#EEF2FA", edgecolor="#4C72B0", linewidth=0.6 + 3.5 * up_bytes[domain] / up_peak, zorder=2,
        )  # fmt: skip
        ax.add_patch(box)
        for index, (rank, _node) in enumerate(slots):
            x, y = x0 + index % cols, -0.6 - 0.8 * (index // cols)
            ax.scatter([x], [y], s=marker, color=_gpu_colour(rank, replica_gpus, loads.stage_of_rank),
                       edgecolors="black", linewidths=0.4, zorder=3)  # fmt: skip
        nodes = sorted({node for _, node in slots})
        name = f"node {nodes[0]}" if len(nodes) == 1 else f"nodes {nodes[0]}–{nodes[-1]}"
        text = name.split()[-1] if many else f"{name}\nout {out_bytes[domain]:,.0f} B\nNVLink {up_bytes[domain]:,.0f} B"
        ax.text(centre, bottom - 0.25, text, ha="center", va="top", fontsize=label_size, zorder=4)
        x0 += cols + gap
    ax.scatter([fabric_xy[0]], [fabric_xy[1]], s=260, marker="s", color="#333333", zorder=3)
    ax.text(fabric_xy[0], fabric_xy[1] + 0.35, "scale-out network", ha="center", va="bottom", fontsize=8)
    ax.set_xlim(-1.5, total + 0.5)
    ax.set_ylim(lowest - 1.5, fabric_xy[1] + 1.0)
    ax.set_axis_off()
    ax.legend(
        handles=_topology_legend(plt, evaluation, loads, any(r is None for v in per_domain.values() for r, _ in v)),
        loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip
    ax.set_title(
        f"{problem.name} on {evaluation.gpus} x {problem.hardware.name} ({evaluation.nodes} node(s)): all-to-all "
        "bytes per token per MoE layer\nred line width ∝ bytes leaving each NVLink domain (sum of its GPUs); "
        "blue box edge ∝ bytes kept on NVLink",
        fontsize=10,
    )
    return fig


def _domain_slots(
    node_of: Sequence[int], domain_of: Sequence[int], gpus_per_node: int
) -> dict[int, list[tuple[int | None, int]]]:
    """Per NVLink domain (in order), its GPU slots as ``(rank or None if idle, node)``: ranks fill
    a node's slots in rank order; a used node's idle GPUs are drawn too."""
    by_node: dict[int, list[int]] = {}
    domain_of_node: dict[int, int] = {}
    for rank, (node, domain) in enumerate(zip(node_of, domain_of, strict=True)):
        by_node.setdefault(node, []).append(rank)
        domain_of_node[node] = domain
    slots: dict[int, list[tuple[int | None, int]]] = {}
    for node in sorted(by_node):
        ranks: list[int | None] = list(by_node[node])
        ranks += [None] * max(0, gpus_per_node - len(ranks))
        slots.setdefault(domain_of_node[node], []).extend((rank, node) for rank in ranks)
    return dict(sorted(slots.items()))


def _gpu_colour(rank: int | None, replica_gpus: int, stage_of_rank: Sequence[int]) -> str:
    if rank is None:
        return "white"  # a GPU of a used node that the plan leaves idle
    return STAGE_COLOURS[stage_of_rank[rank % replica_gpus] % len(STAGE_COLOURS)]


def _topology_legend(plt: Any, evaluation: Evaluation, loads: Any, idle: bool) -> list[Any]:
    handles = []
    for s in range(evaluation.plan.parallelism.pp):
        rank = loads.stage_of_rank.index(s)
        label = (
            f"stage {s}: per GPU {loads.scaleup_bytes[rank]:,.0f} B over NVLink, "
            f"{loads.scaleout_bytes[rank]:,.0f} B scale-out"
        )
        handles.append(
            plt.Line2D([], [], marker="o", linestyle="", color=STAGE_COLOURS[s % len(STAGE_COLOURS)], label=label)
        )
    handles += [
        plt.Line2D([], [], color="#C44E52", linewidth=3, label="scale-out link of a domain (width ∝ bytes)"),
        plt.Line2D([], [], color="#4C72B0", linewidth=2, label="NVLink domain (edge width ∝ bytes)"),
    ]
    if evaluation.plan.parallelism.replicas > 1:
        handles.append(plt.Line2D([], [], linestyle="", label="replicas > 0: same colours and figures as replica 0"))
    if idle:
        handles.append(
            plt.Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black", label="idle GPU")
        )
    return handles


def hardware_chart(
    rows: Sequence[dict[str, Any]], title: str, stem: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """GPUs needed, and decode and prefill throughput per GPU, per hardware, side by side."""
    return save_figure(hardware_figure(rows, title), stem, formats)


def hardware_figure(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """The comparison chart's figure (unsaved), for :func:`hardware_chart` and for tests."""
    plt = _pyplot()
    names = [r.get("name", r["hardware"]) for r in rows]  # a split comparison names the kind too
    panels = (
        ("gpus", "GPUs needed", "GPUs"),
        ("decode_tokens_per_ms_per_gpu", "decode throughput", "tokens/ms/GPU"),
        ("prefill_tokens_per_ms_per_gpu", "prefill throughput", "tokens/ms/GPU"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(max(10, 1.3 * len(names) * 3), 4))
    positions = np.arange(len(names))
    for ax, (key, label, unit) in zip(axes, panels, strict=True):
        values = [r.get(key) for r in rows]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(positions, heights, color=[STAGE_COLOURS[i % len(STAGE_COLOURS)] for i in range(len(names))])
        for bar, value, row in zip(bars, values, rows, strict=True):
            text = (
                "infeasible" if row["status"] == "infeasible" else ("no plan" if value is None else plain_number(value))
            )
            ax.annotate(
                text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
            )
        ax.set_xticks(positions, names, rotation=30, ha="right")
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(f"{label} [{unit}]")
        plain_axis(ax.yaxis)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


FRONTIER_STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"))


def frontier_chart(
    rows: Sequence[dict[str, Any]], slo: str, title: str, stem: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """GPUs needed against the swept SLO value, one line per hardware; infeasible points drawn
    as crosses on the x axis."""
    return save_figure(frontier_figure(rows, slo, title), stem, formats)


def frontier_figure(rows: Sequence[dict[str, Any]], slo: str, title: str) -> Any:
    """The frontier chart's figure (unsaved), for :func:`frontier_chart` and for tests."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    hardware = list(dict.fromkeys(r["hardware"] for r in rows))
    for i, hw in enumerate(hardware):
        colour = STAGE_COLOURS[i % len(STAGE_COLOURS)]
        points = sorted((r["slo_overrides"][slo], r.get("gpus")) for r in rows if r["hardware"] == hw)
        xs = [x for x, g in points if g is not None]
        ys = [g for x, g in points if g is not None]
        # Distinct markers and dashes keep hardware with identical answers visible on top of each other.
        style = FRONTIER_STYLES[i % len(FRONTIER_STYLES)]
        ax.plot(
            xs, ys, marker=style[0], linestyle=style[1], markersize=9 - 1.5 * (i % 4), color=colour, label=hw, alpha=0.8
        )
        missing = [x for x, g in points if g is None]
        if missing:
            ax.scatter(missing, [0] * len(missing), marker="x", color=colour, zorder=3)
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["slo_overrides"][slo] for r in rows}))  # the swept values, labelled plainly
    plain_axis(ax.xaxis)
    plain_axis(ax.yaxis)
    ax.set_xlabel(f"{slo} (SLO bound) [{_slo_unit(slo)}]")
    ax.set_ylabel("GPUs needed [GPUs]")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="x on the axis: infeasible", title_fontsize=7)
    ax.set_title(title, fontsize=10)
    return fig


def _slo_unit(slo: str) -> str:
    return {"ttft_s": "s", "tpot_ms": "ms", "max_gpus": "GPUs"}.get(slo, "tokens/ms/GPU")


#: Colours of the two pools of a disaggregated plan (the GPUs and the KV path's two legs).
POOL_COLOURS = {"prefill": "#4C72B0", "decode": "#DD8452"}


def pool_slots(evaluation: DisaggEvaluation, gpus_per_node: int) -> dict[int, list[str | None]]:
    """Per node used (in order), each GPU slot's pool (``None``: idle). A pool's ranks fill its
    nodes in order (``placer.schema.plan.Pool``); on a node both pools share, the prefill pool's
    GPUs come first and the decode pool's take the next free slots."""
    return _fill(evaluation, gpus_per_node)[0]


def _fill(
    evaluation: DisaggEvaluation, gpus_per_node: int
) -> tuple[dict[int, list[str | None]], dict[tuple[str, int], int]]:
    """:func:`pool_slots`, and the pool rank each (pool, node) starts at (ranks follow the pool's
    node list, which need not be sorted)."""
    slots: dict[int, list[str | None]] = {}
    starts: dict[tuple[str, int], int] = {}
    for phase, nodes in (("prefill", evaluation.nodes_prefill), ("decode", evaluation.nodes_decode)):
        gpus = evaluation.plan.pool(phase).gpus
        left = gpus
        for node in nodes:
            row = slots.setdefault(node, [])
            take = min(left, gpus_per_node - len(row))
            starts[(phase, node)] = gpus - left
            row.extend([phase] * take)
            left -= take
    filled = {node: row + [None] * max(0, gpus_per_node - len(row)) for node, row in sorted(slots.items())}
    return filled, starts


def disagg_topology_figure(problem: Problem, evaluation: DisaggEvaluation) -> Any:
    """The nodes of a disaggregated plan, each a box of its GPUs coloured by pool, and the KV
    cache's path from the prefill pool to the decode pool: over NVLink (a direct arrow, both pools
    in one NVLink domain) or through the scale-out network (one line from each prefill node to
    the network and one from it to each decode node), labelled with the bytes per request, the
    lanes, the link's utilisation and the transfer time."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    plt = _pyplot()
    gpn = problem.fabric.gpus_per_node
    slots, starts = _fill(evaluation, gpn)
    transfer = evaluation.point.transfer
    nvlink = transfer.path.kind == "nvlink"
    cols = min(gpn, 4 if gpn <= 16 else 12)
    rows = -(-gpn // cols)
    gap = 2.4
    total = len(slots) * cols + gap * (len(slots) - 1)
    fig, ax = plt.subplots(figsize=(min(18.0, max(8.0, 4.5 + 0.28 * total)), 4.2 if nvlink else 5.4))
    marker = max(12.0, min(80.0, 2500.0 / max(1, len(slots) * gpn)))
    network = (total / 2 - 0.5, 4.2)
    bottom = -0.8 * rows - 0.2
    points: dict[str, list[tuple[float, float]]] = {"prefill": [], "decode": [], "idle": []}
    tops: dict[str, list[float]] = {"prefill": [], "decode": []}
    x0 = 0.0
    for node, row in slots.items():
        box = FancyBboxPatch(
            (x0 - 0.5, bottom), cols, -bottom, boxstyle="round,pad=0.05,rounding_size=0.2",
            facecolor="#F4F4F4", edgecolor="#555555", linewidth=1.0, zorder=2,
        )  # fmt: skip
        ax.add_patch(box)
        for index, phase in enumerate(row):
            points[phase or "idle"].append((x0 + index % cols, -0.6 - 0.8 * (index // cols)))
        counts = {phase: row.count(phase) for phase in ("prefill", "decode") if phase in row}
        parts = []
        for phase, n in counts.items():
            tops[phase].append(x0 + (cols - 1) / 2)
            per_replica = (
                evaluation.plan.pool(phase).parallelism.gpus // evaluation.plan.pool(phase).parallelism.replicas
            )
            first, last = starts[(phase, node)] // per_replica, (starts[(phase, node)] + n - 1) // per_replica
            parts.append(f"{n} {phase} ({'replica ' + str(first) if first == last else f'replicas {first}–{last}'})")
        text = f"node {node}\n" + "\n".join(parts)
        ax.text(x0 + (cols - 1) / 2, bottom - 0.25, text, ha="center", va="top", fontsize=7, zorder=4)
        x0 += cols + gap
    for phase, xy in points.items():
        if not xy:
            continue
        colour = POOL_COLOURS.get(phase, "white")
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], s=marker, color=colour, edgecolors="black",
                   linewidths=0.4, zorder=3, gid=f"{phase}-gpus")  # fmt: skip
    kv_text = (
        f"KV cache {plain_number(transfer.bytes_per_request / 1e6)} MB/request over "
        f"{'NVLink' if nvlink else 'scale-out'}, {transfer.lanes} lane(s), link {transfer.link_utilisation:.1%} "
        f"busy, {plain_number(transfer.mean_s * 1e3)} ms"
    )
    if nvlink:
        start = (sum(tops["prefill"]) / len(tops["prefill"]), 0.15)
        end = (sum(tops["decode"]) / len(tops["decode"]), 0.15)
        if abs(start[0] - end[0]) < 0.5:  # one node holds both pools: arrow between their halves
            start, end = (start[0] - cols / 4, 0.15), (start[0] + cols / 4, 0.15)
        arrow = FancyArrowPatch(
            start, end, connectionstyle="arc3,rad=-0.5", arrowstyle="-|>", mutation_scale=14,
            color="#2C7A2C", linewidth=2.2, zorder=5, gid="kv-path",
        )  # fmt: skip
        ax.add_patch(arrow)
        ax.text((start[0] + end[0]) / 2, 1.9, kv_text, ha="center", va="bottom", fontsize=8, color="#2C7A2C")
    else:
        for phase in ("prefill", "decode"):
            for x in tops[phase]:
                ends = ((x, 0.1), network) if phase == "prefill" else (network, (x, 0.1))
                ax.add_patch(
                    FancyArrowPatch(
                        *ends, arrowstyle="-|>", mutation_scale=12, color=POOL_COLOURS[phase], linewidth=1.6,
                        alpha=0.85, zorder=1, gid=f"kv-{phase}-leg",
                    )
                )  # fmt: skip
        ax.scatter([network[0]], [network[1]], s=260, marker="s", color="#333333", zorder=3)
        ax.text(network[0], network[1] + 0.35, f"scale-out network\n{kv_text}", ha="center", va="bottom", fontsize=8)
    ax.set_xlim(-1.5, total + 0.5)
    ax.set_ylim(bottom - 1.6, 2.6 if nvlink else network[1] + 1.6)
    ax.set_axis_off()
    plan = evaluation.plan
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=POOL_COLOURS[phase],
                   label=f"{phase} pool: {plan.pool(phase).parallelism.label}, {plan.pool(phase).gpus} GPUs")
        for phase in ("prefill", "decode")
    ]  # fmt: skip
    if points["idle"]:
        handles.append(
            plt.Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black", label="idle GPU")
        )
    handles.append(
        plt.Line2D([], [], color="#2C7A2C" if nvlink else "#333333", linewidth=2, label=f"KV path: {kv_text}")
    )
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, fontsize=8, frameon=False)
    xpyd = f"{plan.prefill.parallelism.replicas}P{plan.decode.parallelism.replicas}D"
    ax.set_title(
        f"{problem.name} on {evaluation.gpus} x {problem.hardware.name} ({evaluation.nodes} node(s)), disaggregated "
        f"{xpyd}\nGPUs coloured by pool; the KV cache goes from the prefill pool to the decode pool",
        fontsize=10,
    )
    return fig
