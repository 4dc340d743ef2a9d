"""The frontier as a table, Markdown and a picture (``placer frontier``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from placer.frontier import FrontierPoint

#: What a frontier with disaggregated plans shows, under its table.
DISAGG_NOTE = (
    "`P … + D …`: a disaggregated plan, the prefill pool's degrees then the decode pool's (GPUs count both). "
    "Each disaggregated TPOT point is the best pair of pools with its concurrency chosen as for an aggregated "
    "point; a demand point is the better of both kinds when both are allowed."
)


def _no_plan(point: FrontierPoint) -> str:
    """Why a point has no plan, naming the kind asked for when it was not only aggregated."""
    reason = point.reason or ""
    return reason if point.mode == "aggregated" else f"{point.mode}: {reason}"


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def print_frontier(console: Console, name: str, points: Sequence[FrontierPoint]) -> None:
    """One row per point: the bound, the optimum's throughput and interactivity, its plan."""
    for axis, title in (("tpot_ms", "most output tokens/s per GPU at each TPOT bound"), ("rate_rps", "fewest GPUs")):
        rows = [p for p in points if p.axis == axis]
        if not rows:
            continue
        table = Table(title=f"{name}: {title}", title_justify="left")
        bound = "TPOT bound\nms" if axis == "tpot_ms" else "demand\nrequests/s"
        for column in (bound, "status\n(gap)", "tokens/s\nper GPU", "tokens/s\nper user", "TPOT\nms", "TTFT\ns",
                       "concurrency", "GPUs", "degrees"):  # fmt: skip
            table.add_column(column, justify="left" if column in ("degrees", "status\n(gap)") else "right")
        for p in rows:
            gap = f" ({p.gap:.1%})" if p.gap else ""
            table.add_row(
                _num(p.value, 1 if p.value < 10 else 0),
                p.status + gap,
                _num(p.tokens_per_s_per_gpu),
                _num(p.tokens_per_s_per_user, 1),
                _num(p.tpot_ms, 1),
                _num(p.ttft_s, 2),
                _num(p.concurrency),
                _num(p.gpus),
                p.degrees or _no_plan(p)[:60],
            )
        console.print(table)
    if any(p.mode != "aggregated" for p in points):
        console.print(f"[dim]{DISAGG_NOTE}[/]", highlight=False)


def frontier_markdown(name: str, points: Sequence[FrontierPoint], picture: str | None) -> str:
    lines = [f"# {name}: frontier", ""]
    if picture:
        lines += [f"![frontier]({picture})", ""]
    lines += [
        "Each row is a proven optimum (status and gap as the solver reports them): most output tokens/s per GPU "
        "with TPOT at most the bound, the concurrency chosen by the solver; or, for a demand, the fewest GPUs.",
        "",
        "| axis | bound | status | tokens/s/GPU | tokens/s/user | TPOT ms | TTFT s | concurrency | GPUs | degrees |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p.axis} | {p.value:g} | {p.status} | {_num(p.tokens_per_s_per_gpu)} | "
            f"{_num(p.tokens_per_s_per_user, 1)} | {_num(p.tpot_ms, 1)} | {_num(p.ttft_s, 2)} | "
            f"{_num(p.concurrency)} | {_num(p.gpus)} | {p.degrees or _no_plan(p)} |"
        )
    if any(p.mode != "aggregated" for p in points):
        lines += ["", DISAGG_NOTE]
    return "\n".join(lines) + "\n"


#: Marker and colour of each curve (the aggregated one as before disaggregation existed).
SERIES_STYLES = {"aggregated": ("o", "#3b6fb6"), "disaggregated": ("s", "#DD8452")}


def frontier_figure(name: str, points: Sequence[FrontierPoint]):  # type: ignore[no-untyped-def]
    """Tokens/s per GPU against tokens/s per user, each optimum labelled with its degrees."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    solved = [p for p in points if p.axis == "tpot_ms" and p.tokens_per_s_per_gpu is not None]
    solved.sort(key=lambda p: p.tokens_per_s_per_user or 0.0)
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    xs = [p.tokens_per_s_per_user for p in solved]
    ys = [p.tokens_per_s_per_gpu for p in solved]
    modes = list(dict.fromkeys(p.mode for p in points if p.axis == "tpot_ms"))
    for mode in modes:  # one curve per kind of plan: aggregated, disaggregated
        curve = [(x, y) for p, x, y in zip(solved, xs, ys, strict=True) if p.mode == mode]
        style = SERIES_STYLES.get(mode, SERIES_STYLES["aggregated"])
        label = f"{mode} plans" if len(modes) > 1 else None
        ax.plot([c[0] for c in curve], [c[1] for c in curve], marker=style[0], color=style[1], label=label)
    labelled = set()
    for p, x, y in zip(solved, xs, ys, strict=True):
        if (x, y, p.degrees) in labelled:  # the same optimum at two bounds: one label
            continue
        labelled.add((x, y, p.degrees))
        degrees = (p.degrees or "").replace(" + ", "\n+ ")  # a disaggregated plan's two pools on two lines
        ax.annotate(
            f"{degrees}\nn={p.concurrency:,.0f}, {p.gpus} GPUs",
            (x, y),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=7,
        )
    if len(modes) > 1:
        ax.legend(fontsize=8, loc="lower left")
    plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel("tokens/s per user (1,000 / TPOT in ms)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title(f"{name}\nmost output tokens/s per GPU at each TPOT bound (each point a proven optimum)", fontsize=10)
    ax.set_ylim(0, max(ys, default=1.0) * 1.18)
    ax.set_xlim(0, max(xs, default=1.0) * 1.3)
    ax.grid(True, alpha=0.3)
    missing = [p for p in points if p.axis == "tpot_ms" and p.tokens_per_s_per_gpu is None]
    if missing:
        bounds = ", ".join(f"{p.value:g}" for p in missing)
        ax.text(0.99, 0.98, f"no plan at TPOT <= {bounds} ms", transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="#a33")  # fmt: skip
    fig.tight_layout()
    return fig


def write_frontier(out: Path, name: str, points: Sequence[FrontierPoint]) -> list[Path]:
    """``frontier.png``, ``frontier.md`` and ``frontier.json`` in ``out``."""
    import json

    import matplotlib.pyplot as plt

    from placer.files import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    written = []
    figure = frontier_figure(name, points)
    png = out / "frontier.png"
    figure.savefig(png, dpi=120)
    plt.close(figure)
    written.append(png)
    markdown = out / "frontier.md"
    write_atomic(markdown, frontier_markdown(name, points, png.name))
    written.append(markdown)
    document = out / "frontier.json"
    write_atomic(document, json.dumps({"instance": name, "points": [p.to_dict() for p in points]}, indent=2) + "\n")
    written.append(document)
    return written
