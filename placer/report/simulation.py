"""What ``placer simulate`` shows: a table of the simulated latencies and throughput, and a picture
of one replica's queue and running batch over time (the warm-up shaded, since it is not measured).
A disaggregated plan shows the same for the whole deployment, each stage of a request's life apart
(prefill wait and prefill, the wait for decode KV, the KV transfer) and each pool's figures, and a
picture of both pools' queues over time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from placer.report.plots import FORMATS, plain_axis, plain_number, save_figure
from placer.simulate import Simulation, Stats
from placer.simulate_disagg import STATES, DisaggSimulation

_STAT_NAMES = ("mean", "p50", "p90", "p99")


def print_simulation(console: Console, sim: Simulation | DisaggSimulation, title: str) -> None:
    """Latency percentiles, throughput and the mean batch and queue of a simulation."""
    if isinstance(sim, DisaggSimulation):
        print_disagg_simulation(console, sim, title)
        return
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


def print_disagg_simulation(console: Console, sim: DisaggSimulation, title: str) -> None:
    """A disaggregated simulation: latencies by stage, the whole's throughput, each pool's figures."""
    run = sim.run
    table = Table(title=title, title_justify="left")
    table.add_column("latency (ms)")
    for name in _STAT_NAMES:
        table.add_column(name, justify="right")
    for label, values in (
        ("TTFT", run.ttft_s),
        ("  prefill wait", run.prefill_wait_s),
        ("  prefill", run.prefill_s),
        ("  wait for decode KV", run.decode_wait_s),
        ("  KV transfer", run.transfer_s),
        ("TPOT", run.tpot_s),
    ):
        row = Stats.of(values).to_dict(1e3)
        table.add_row(label, *(plain_number(row[name]) for name in _STAT_NAMES))
    console.print(table)
    doc = sim.to_dict()
    pre, kv, dec = doc["prefill"], doc["kv_transfer"], doc["decode"]
    assert isinstance(pre, dict) and isinstance(kv, dict) and isinstance(dec, dict)
    figures = Table(show_header=False, box=None, pad_edge=False)
    figures.add_column()
    figures.add_column(justify="right")
    rows: tuple[tuple[str, object], ...] = (
        (f"output tokens/s ({sim.gpus} GPUs)", sim.output_tokens_per_s),
        ("output tokens/s per GPU", sim.output_tokens_per_s_per_gpu),
        ("requests/s", sim.requests_per_s),
        ("mean requests in flight", doc["mean_concurrency"]),
        (f"prefill pool: {sim.prefill_replicas} x dp {sim.prefill_dp}, {sim.prefill_gpus} GPUs", None),
        ("  prompt alone on every rank (s)", sim.prompt_s),
        ("  utilisation (prompt tokens / capacity)", pre["utilisation"]),
        ("  busy fraction", pre["busy_fraction"]),
        ("  mean waiting", pre["mean_waiting"]),
        ("  mean prefilling", pre["mean_prefilling"]),
        (f"KV transfer ({sim.link.kind})", None),
        ("  link utilisation", kv["utilisation"]),
        ("  mean in transfer", kv["mean_in_transfer"]),
        ("  mean waiting for decode KV", kv["mean_waiting_for_decode_kv"]),
        (f"decode pool: {sim.decode_replicas} x dp {sim.decode_dp}, {sim.decode_gpus} GPUs", None),
        ("  mean batch per replica", dec["mean_batch_per_replica"]),
        ("  busy fraction", dec["busy_fraction"]),
        ("  step at batch 1 (ms)", dec["step_at_batch_1_ms"]),
        ("  KV capacity per replica (tokens)", sim.decode_kv_capacity_tokens),
    )
    for label, value in rows:
        figures.add_row(label, "" if value is None else plain_number(float(value)))  # type: ignore[arg-type]
    console.print(figures)
    console.print(
        f"{run.ttft_s.size:,} requests measured over {plain_number(run.window_s)} s after a warm-up of "
        f"{plain_number(run.warmup_s)} s; {run.prefill_steps:,} prefill and {run.decode_steps:,} decode steps; "
        f"seed {sim.seed}",
        highlight=False,
    )
    for note in sim.notes:
        console.print(f"note: {note}", highlight=False)


def disagg_simulation_figure(sim: DisaggSimulation, title: str) -> Any:
    """Both pools over time (unsaved figure): above, the prefill pool's waiting and prefilling
    requests; below, the requests waiting for decode KV, in transfer and decoding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, counts = sim.run.timeline
    series = dict(zip(STATES, counts, strict=True))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.step(times, series["prefilling"], where="post", label="prefilling", color="#4C72B0")
    top.step(times, series["prefill_queue"], where="post", label="waiting for prefill", color="#DD8452")
    bottom.step(times, series["decoding"], where="post", label="decoding", color="#55A868")
    bottom.step(times, series["transferring"], where="post", label="KV in transfer", color="#8172B3")
    bottom.step(times, series["decode_queue"], where="post", label="waiting for decode KV", color="#C44E52")
    ttft, tpot = sim.run.ttft.to_dict(1e3), sim.run.tpot.to_dict(1e3)
    top.set_title(
        f"{title}\nTTFT mean {plain_number(ttft['mean'])} ms, p99 {plain_number(ttft['p99'])} ms; "
        f"TPOT mean {plain_number(tpot['mean'])} ms; {plain_number(sim.output_tokens_per_s)} tokens/s",
        fontsize=9,
    )
    for ax, label in (
        (top, f"prefill pool ({sim.prefill_replicas} x dp {sim.prefill_dp})"),
        (bottom, f"KV path and decode pool ({sim.decode_replicas} x dp {sim.decode_dp})"),
    ):
        if sim.run.warmup_s > 0:
            ax.axvspan(0, sim.run.warmup_s, color="#8C8C8C", alpha=0.15, label="warm-up (not measured)")
        ax.set_ylabel(f"requests\n{label}", fontsize=8)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        plain_axis(ax.xaxis)
        plain_axis(ax.yaxis)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    bottom.set_xlabel("simulated time [s]")
    return fig


def simulation_figure(sim: Simulation | DisaggSimulation, title: str) -> Any:
    """Queue length and running requests of the simulated replica over time (unsaved figure)."""
    if isinstance(sim, DisaggSimulation):
        return disagg_simulation_figure(sim, title)
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


def simulation_picture(
    sim: Simulation | DisaggSimulation, title: str, stem: Path, formats: Sequence[str] = ("png",)
) -> list[Path]:
    """Write :func:`simulation_figure` as ``stem.png`` (and any other of ``FORMATS``)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"formats: {sorted(unknown)} not in {FORMATS}")
    return save_figure(simulation_figure(sim, title), stem, formats)
