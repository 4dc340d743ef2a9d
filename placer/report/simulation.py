"""What ``placer simulate`` shows: a table of the simulated latencies and throughput, and a picture
of one replica's queue and running batch over time (the warm-up shaded, since it is not measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from placer.report.plots import FORMATS, plain_axis, plain_number, save_figure
from placer.simulate import Simulation


def print_simulation(console: Console, sim: Simulation, title: str) -> None:
    """Latency percentiles, throughput and the mean batch and queue of a simulation."""
    run = sim.run
    table = Table(title=title, title_justify="left")
    table.add_column("latency (ms)")
    for name in ("mean", "p50", "p90", "p99"):
        table.add_column(name, justify="right")
    for label, stats in (("TTFT", run.ttft), ("TPOT", run.tpot)):
        row = stats.to_dict(1e3)
        table.add_row(label, *(plain_number(row[name]) for name in ("mean", "p50", "p90", "p99")))
    console.print(table)
    figures = Table(show_header=False, box=None, pad_edge=False)
    figures.add_column()
    figures.add_column(justify="right")
    rows = (
        ("output tokens/s per replica", run.output_tokens_per_s),
        ("output tokens/s per GPU", sim.output_tokens_per_s_per_gpu),
        (f"output tokens/s ({sim.replicas} replicas, {sim.gpus} GPUs)", sim.output_tokens_per_s),
        ("requests/s", sim.requests_per_s),
        ("mean running requests per replica", run.mean_running),
        ("mean decode batch per replica", run.mean_decode_batch),
        ("mean queue per replica", run.mean_queue),
        ("KV capacity per replica (tokens)", sim.kv_capacity_tokens),
        ("prefill budget per step (tokens)", sim.chunk_tokens),
    )
    for label, value in rows:
        figures.add_row(label, plain_number(float(value)))
    console.print(figures)
    console.print(
        f"{run.ttft_s.size:,} requests measured over {plain_number(run.window_s)} s after a warm-up of "
        f"{plain_number(run.warmup_s)} s; {run.steps:,} engine steps; seed {sim.seed}",
        highlight=False,
    )
    for note in sim.notes:
        console.print(f"note: {note}", highlight=False)


def simulation_figure(sim: Simulation, title: str) -> Any:
    """Queue length and running requests of the simulated replica over time (unsaved figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, queued, running = sim.run.timeline
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.step(times, running, where="post", label="running (admitted) requests", color="#4C72B0")
    ax.step(times, queued, where="post", label="queued requests", color="#DD8452")
    if sim.run.warmup_s > 0:
        ax.axvspan(0, sim.run.warmup_s, color="#8C8C8C", alpha=0.15, label="warm-up (not measured)")
    ttft, tpot = sim.run.ttft.to_dict(1e3), sim.run.tpot.to_dict(1e3)
    ax.set_title(
        f"{title}\nTTFT mean {plain_number(ttft['mean'])} ms, p99 {plain_number(ttft['p99'])} ms; "
        f"TPOT mean {plain_number(tpot['mean'])} ms; {plain_number(sim.run.output_tokens_per_s)} tokens/s per replica",
        fontsize=9,
    )
    ax.set_xlabel("simulated time [s]")
    ax.set_ylabel("requests on one replica")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    plain_axis(ax.xaxis)
    plain_axis(ax.yaxis)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def simulation_picture(sim: Simulation, title: str, stem: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write :func:`simulation_figure` as ``stem.png`` (and any other of ``FORMATS``)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"formats: {sorted(unknown)} not in {FORMATS}")
    return save_figure(simulation_figure(sim, title), stem, formats)
