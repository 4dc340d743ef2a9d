"""A sweep for people: the terminal table, the progress bar, the JSON outcome, and the pictures
of its table: cost per million output tokens against demand (one line per
hardware, one panel per model) and the Pareto front of output tokens/s per GPU against tokens/s per
user across hardware. Both read only the table's rows (:mod:`placer.sweep.analysis`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from placer.sweep.analysis import cheapest_by_demand, pareto_front, planned

if TYPE_CHECKING:
    from rich.console import Console

    from placer.sweep.point import PointAnswer
    from placer.sweep.run import SweepOutcome

#: one colour per hardware profile, in the order the table first names them
COLOURS = ("#3b6fb6", "#d1603d", "#3f9b5a", "#8e5ab5", "#b5952a", "#5aa5b5", "#b55a7f", "#6b6b6b")


def _hardware_colours(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    names = list(dict.fromkeys(str(r["hardware_name"]) for r in rows))
    return {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}


def _panels(count: int):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(count, 2)
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 4.4 * rows), squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def cost_figure(name: str, rows: Sequence[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """USD per million output tokens against demand; ``None`` when no row has a demand and a price."""
    curves = cheapest_by_demand(rows, ("model_name", "hardware_name"))
    if not curves:
        return None
    models = list(dict.fromkeys(key[0] for key in curves))
    colours = _hardware_colours(rows)
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=True):
        for (m, hardware), pairs in curves.items():
            if m != model:
                continue
            xs, ys = zip(*pairs, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3.5, label=hardware, color=colours[hardware])
        demands = [d for (m, _), pairs in curves.items() if m == model for d, _ in pairs]
        if max(demands) > 20 * min(demands):
            ax.set_xscale("log")
        ax.set_xlabel("demand, output tokens/s")
        ax.set_ylabel("USD per million output tokens")
        ax.set_title(model, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: GPU rental per million output tokens at each demand (fewest GPUs, cheapest plan)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def pareto_figure(name: str, rows: Sequence[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """Output tokens/s per GPU against tokens/s per user, every planned point and each hardware's
    Pareto front; ``None`` when no planned row has both figures."""
    points = [
        r for r in planned(rows)
        if r.get("tokens_per_s_per_user") is not None and r.get("output_tokens_per_s_per_gpu") is not None
    ]  # fmt: skip
    if not points:
        return None
    models = list(dict.fromkeys(r["model_name"] for r in points))
    colours = _hardware_colours(points)
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=True):
        for hardware, colour in colours.items():
            mine = [r for r in points if r["model_name"] == model and r["hardware_name"] == hardware]
            if not mine:
                continue
            xy = [(r["tokens_per_s_per_user"], r["output_tokens_per_s_per_gpu"]) for r in mine]
            ax.scatter([x for x, _ in xy], [y for _, y in xy], s=10, alpha=0.35, color=colour)
            front = [xy[i] for i in pareto_front(xy)]
            ax.plot([x for x, _ in front], [y for _, y in front], marker="o", markersize=4, drawstyle="steps-pre",
                    color=colour, label=f"{hardware} front")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("tokens/s per user (1 / TPOT)")
        ax.set_ylabel("output tokens/s per GPU")
        ax.set_title(model, fontsize=10)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: throughput per GPU against interactivity (dots: every planned point; lines: Pareto fronts)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def write_sweep_pictures(out: Path, name: str, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """``cost.png`` and ``pareto.png`` in ``out`` (each only when the table has what it plots)."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, figure in (("cost.png", cost_figure(name, rows)), ("pareto.png", pareto_figure(name, rows))):
        if figure is None:
            continue
        path = out / filename
        figure.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(figure)
        written.append(path)
    return written


#: rows printed in the terminal; a larger sweep prints its counts and where the table is
MAX_PRINTED_ROWS = 60


@contextmanager
def sweep_progress(console: Console, disable: bool = False) -> Iterator[tuple[Callable, Callable]]:
    """A progress bar over the solves a sweep runs: ``(on_start, on_done)`` for :func:`placer.api.sweep`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=disable) as progress:
        bar = progress.add_task("solving", total=0)

        def on_start(count: int) -> None:
            progress.update(bar, total=count)

        def on_done(answer: PointAnswer) -> None:
            progress.advance(bar)

        yield on_start, on_done


def sweep_document(outcome: SweepOutcome) -> dict[str, Any]:
    """The outcome as JSON: counts, the files written, and the rows (no wall-clock figure)."""
    columns, rows = outcome.table()
    return {
        "sweep": outcome.spec.name,
        "points": len(outcome.points),
        "distinct_instances": len({p.key for p in outcome.points}),
        "solved_this_run": len(outcome.solved),
        "cached": len(outcome.cached),
        "failed": [p.index for p in outcome.failed],
        "complete": outcome.complete,
        "written": [str(p) for p in outcome.written],
        "columns": columns,
        "rows": rows,
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"
    return str(value)


def print_sweep(console: Console, outcome: SweepOutcome) -> None:
    """The table's inputs and headline figures (up to :data:`MAX_PRINTED_ROWS` rows), then the counts."""
    from rich.table import Table

    columns, rows = outcome.table()
    axes = [c for c in columns if c in outcome.points[0].inputs] if outcome.points else []
    if rows and len(rows) <= MAX_PRINTED_ROWS:
        table = Table(title=f"sweep {outcome.spec.name}", show_lines=False)
        shown = ["point", *axes, "status", "gpus", "degrees", "ttft_s", "tpot_ms", "output_tokens_per_s_per_gpu",
                 "usd_per_million_output_tokens"]  # fmt: skip
        headers = {"output_tokens_per_s_per_gpu": "tok/s/GPU", "usd_per_million_output_tokens": "USD/M tok"}
        for column in shown:
            table.add_column(headers.get(column, column), justify="right" if column != "degrees" else "left")
        for row in rows:
            cells = [_fmt(row.get(c)) for c in shown]
            if row.get("error") or row.get("reason"):
                cells[shown.index("degrees")] = str(row.get("error") or row.get("reason"))[:60]
            table.add_row(*cells)
        console.print(table)
    missing = len(outcome.points) - len(rows)
    console.print(
        f"{len(outcome.points)} points ({len({p.key for p in outcome.points})} distinct): "
        f"{len(outcome.solved)} solved now, {len(outcome.cached)} from the cache, {len(outcome.failed)} failed"
        + (f", {missing} not solved yet (rerun to continue)" if missing else ""),
        highlight=False,
    )
    for path in outcome.written:
        console.print(f"wrote {path}", highlight=False)
