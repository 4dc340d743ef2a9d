"""Pictures of plans and comparisons (matplotlib, Agg backend, PNG and SVG).

matplotlib is imported inside the functions only, so commands that draw nothing stay fast. Every
figure comes from the evaluator or the cost model (through :mod:`placer.report.loads` and the
comparison rows); files are written atomically and reproducibly (no timestamps, fixed SVG ids).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from placer.evaluator import Evaluation
from placer.problem import Problem

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
    ax.set_xlabel("GPU (rank in replica 0)")
    ax.set_ylabel("MoE layer")
    ticks = list(range(0, len(loads.moe_layers), max(1, len(loads.moe_layers) // 16)))
    ax.set_yticks(ticks, [str(loads.moe_layers[i]) for i in ticks])
    for s in range(1, par.pp):  # stage boundaries
        ax.axvline(s * par.stage_width - 0.5, color="white", linewidth=1.5)
    routing = "uniform routing (no statistics)" if evaluation.uniform_routing else "routing statistics"
    ax.set_title(
        f"{problem.name} on {evaluation.gpus} x {problem.hardware.name}: expert load per GPU\n"
        f"pp {par.pp} · ep {par.ep} · tp_moe {par.tp_moe}; max/mean {evaluation.load_imbalance_max:.3f}; {routing}",
        fontsize=10,
    )
    return save_figure(fig, stem, formats)


def topology_picture(
    problem: Problem, evaluation: Evaluation, stem: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """The nodes a plan uses (``topology_graph``), GPUs coloured by stage, links labelled with
    their all-to-all bytes per token per MoE layer (replica 0; other replicas alike)."""
    from placer.report.loads import plan_loads
    from placer.topology import topology_graph

    plt = _pyplot()
    loads = plan_loads(problem, evaluation.plan)
    fabric = problem.fabric
    layout = loads.layout
    used_nodes = sorted(set(layout.node_of))
    graph = topology_graph(fabric, max(used_nodes) + 1)
    # physical GPU vertex of each rank: ranks fill a node's slots in rank order
    filled: dict[int, int] = {}
    vertex_of_rank = []
    for node in layout.node_of:
        slot = filled.get(node, 0)
        filled[node] = slot + 1
        vertex_of_rank.append(node * fabric.gpus_per_node + slot)
    replica_gpus = len(loads.stage_of_rank)
    used_vertices = set(vertex_of_rank)
    keep = {"fabric"} | {
        v for v, d in graph.nodes(data=True) if d.get("node") in used_nodes or d.get("kind") == "scaleup_switch"
    }
    graph = graph.subgraph([v for v in keep if graph.degree(v) > 0 or v == "fabric"]).copy()
    graph.remove_nodes_from(
        [v for v, d in list(graph.nodes(data=True)) if d.get("kind") == "scaleup_switch" and graph.degree(v) == 0]
    )
    # GPUs in physical order along the bottom; each switch centred over the GPUs it serves
    gpus_sorted = sorted(v for v, d in graph.nodes(data=True) if d["kind"] == "gpu")
    xs = np.linspace(-1.0, 1.0, len(gpus_sorted)) if len(gpus_sorted) > 1 else np.zeros(1)
    positions = {v: (float(x), -1.0) for v, x in zip(gpus_sorted, xs, strict=True)}
    for vertex, data in graph.nodes(data=True):
        if data["kind"] == "scaleup_switch":
            members = [positions[g][0] for g in graph.neighbors(vertex) if g in positions]
            positions[vertex] = (float(np.mean(members)), -0.35)
    positions["fabric"] = (0.0, 0.6)
    stage_of_vertex: dict[Any, int] = {}
    traffic_of_edge: dict[tuple[Any, Any], float] = {}
    for rank in range(min(replica_gpus, len(vertex_of_rank))):
        vertex = vertex_of_rank[rank]
        stage_of_vertex[vertex] = loads.stage_of_rank[rank]
        traffic_of_edge[(vertex, "fabric")] = float(loads.scaleout_bytes[rank])
        switch = next(n for n in graph.neighbors(vertex) if n != "fabric")
        traffic_of_edge[(vertex, switch)] = float(loads.scaleup_bytes[rank])
    peak = max(traffic_of_edge.values(), default=0.0) or 1.0
    gpu_count = len(gpus_sorted)
    fig, ax = plt.subplots(figsize=(min(18, 5 + 0.2 * gpu_count), 6))
    for u, v, data in graph.edges(data=True):
        key = (u, v) if (u, v) in traffic_of_edge else (v, u)
        value = traffic_of_edge.get(key, 0.0)
        colour = "#C44E52" if data["kind"] == "scaleout" else "#4C72B0"
        width = 0.3 + 4.0 * value / peak
        (x0, y0), (x1, y1) = positions[u], positions[v]
        ax.plot([x0, x1], [y0, y1], color=colour, linewidth=width, alpha=0.25 if value == 0 else 0.8, zorder=1)
    for vertex, data in graph.nodes(data=True):
        x, y = positions[vertex]
        if data["kind"] == "gpu":
            stage = stage_of_vertex.get(vertex)
            if stage is not None:
                colour = STAGE_COLOURS[stage % len(STAGE_COLOURS)]
            else:  # another replica's GPU, or a GPU of a used node that the plan leaves idle
                colour = "#DDDDDD" if vertex in used_vertices else "white"
            ax.scatter(
                [x],
                [y],
                s=min(120, 4000 / max(1, gpu_count)),
                color=colour,
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
            )
        else:
            ax.scatter([x], [y], s=200, marker="s", color="#333333", zorder=3)
            label = "scale-out network" if data["kind"] == "scaleout_switch" else f"node {data['domain']}"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7)
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
        plt.Line2D([], [], color="#C44E52", label="scale-out link"),
        plt.Line2D([], [], color="#4C72B0", label="NVLink link"),
    ]
    if evaluation.plan.parallelism.replicas > 1:
        handles.append(plt.Line2D([], [], marker="o", linestyle="", color="#DDDDDD", label="other replicas"))
    if len(used_vertices) < gpu_count:
        handles.append(
            plt.Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black", label="unused GPU")
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, framealpha=0.9)
    ax.set_axis_off()
    ax.set_title(
        f"{problem.name} on {evaluation.gpus} x {problem.hardware.name} ({evaluation.nodes} node(s)): "
        "all-to-all bytes per token per MoE layer on each GPU's links (width ∝ bytes)",
        fontsize=10,
    )
    return save_figure(fig, stem, formats)


def hardware_chart(
    rows: Sequence[dict[str, Any]], title: str, stem: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """GPUs needed, and decode and prefill throughput per GPU, per hardware, side by side."""
    plt = _pyplot()
    names = [r["hardware"] for r in rows]
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
            text = "infeasible" if row["status"] == "infeasible" else ("no plan" if value is None else f"{value:,.3g}")
            ax.annotate(
                text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
            )
        ax.set_xticks(positions, names, rotation=30, ha="right")
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(f"{label} [{unit}]")
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, stem, formats)


FRONTIER_STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"))


def frontier_chart(
    rows: Sequence[dict[str, Any]], slo: str, title: str, stem: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """GPUs needed against the swept SLO value, one line per hardware; infeasible points drawn
    as crosses on the x axis."""
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
    ax.set_xlabel(f"{slo} (SLO bound) [{_slo_unit(slo)}]")
    ax.set_ylabel("GPUs needed [GPUs]")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="x on the axis: infeasible", title_fontsize=7)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, stem, formats)


def _slo_unit(slo: str) -> str:
    return {"ttft_s": "s", "tpot_ms": "ms", "max_gpus": "GPUs"}.get(slo, "tokens/ms/GPU")
