"""Solve one instance on several hardware profiles (and, optionally, over a sweep of one SLO).

Every solve is independent, so they run in separate worker processes; results come back in the
order asked for, whatever order they finish in, so tables and files are deterministic.

Swapping the hardware of an instance
------------------------------------
An instance names its hardware and describes its cluster. The cluster's *shape* belongs to the
machine, the cluster's *size* and *network* to the site. When the hardware changes
(:func:`problem_on_hardware`):

* ``gpus_per_node`` and ``nvlink_domain_gpus`` come from the new profile (an H800 node has 8
  GPUs, a GB200 NVL72 rack 72 in one NVLink domain);
* the cluster's own NVLink and RDMA bandwidth and latency overrides are dropped: they describe the
  original machine's links, and the profile carries its own;
* the GPU *budget* is kept: ``num_nodes`` becomes the fewest nodes of the new shape holding at
  least as many GPUs as the original cluster (``ceil(old_nodes * old_gpus_per_node / new)``),
  and an unlimited cluster stays unlimited;
* the scale-out oversubscription (a property of the site's fat tree) and every SLO, including
  ``max_gpus``, stay as they are.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.catalogue import hardware_catalogue
from placer.costmodel.memory import usable_memory_bytes
from placer.errors import InputError
from placer.evaluator import Evaluation
from placer.executors import Executor, LocalExecutor
from placer.problem import Problem, load_problem
from placer.result import Result, SolveStatus
from placer.schema import ClusterSpec, SLOs
from placer.serving_disagg import DisaggEvaluation

GB = 1e9
MS_PER_HOUR = 3.6e6

#: ``--hardware`` token that stands for the instance's own hardware profile
OWN_HARDWARE = "instance"


@dataclass(frozen=True)
class SolveSettings:
    """Solver settings shared by every solve of a comparison (one worker and a fixed seed keep
    CP-SAT deterministic when it proves optimality within the limit)."""

    backend: str = "auto"
    time_limit_s: float | None = 60.0  # wall clock per solve; None: none (tests, deterministic)
    workers: int = 1
    seed: int = 0
    max_gpus: int | None = None
    disaggregation: str | None = None  # "off" | "allow" | "only" overrides objective.disaggregation


#: The values of ``objective.disaggregation`` (and of the CLI's ``--disaggregation``).
DISAGGREGATION_MODES = ("off", "allow", "only")
#: The kind of plan a restricted solve returns.
KINDS = {"off": "aggregated", "only": "disaggregated"}


def with_disaggregation(problem: Problem, mode: str | None) -> Problem:
    """``problem`` with ``objective.disaggregation`` set to ``mode`` (None: as the instance says)."""
    if mode is None or mode == problem.objective.disaggregation:
        return problem
    if mode not in DISAGGREGATION_MODES:
        raise InputError.single("--disaggregation", f"expected one of {', '.join(DISAGGREGATION_MODES)}, got {mode!r}")
    return problem.replace(objective=problem.objective.model_copy(update={"disaggregation": mode}))


@dataclass(frozen=True)
class Task:
    """One independent solve: an instance file on a hardware profile, with SLO overrides."""

    instance: str
    hardware: str
    slo_overrides: tuple[tuple[str, float], ...] = ()
    #: this solve's own objective.disaggregation: "off" or "only" in a comparison that sets the two
    #: kinds of plan side by side (``allow``); None: the settings' or the instance's
    disaggregation: str | None = None

    @property
    def kind(self) -> str | None:
        """ "aggregated" or "disaggregated" when this solve was restricted to one kind of plan."""
        return KINDS.get(self.disaggregation or "")

    @property
    def name(self) -> str:
        """The row's name and its files' stem: the hardware, with the kind in a split comparison."""
        return f"{self.hardware}-{self.kind}" if self.kind else self.hardware


@dataclass
class Entry:
    """A finished task: the problem it solved and the solver's result."""

    task: Task
    problem: Problem
    result: Result

    @property
    def evaluation(self) -> Evaluation | DisaggEvaluation | None:
        return self.result.evaluation


@dataclass
class Comparison:
    """One instance across hardware; ``sweep`` holds the SLO sweep's entries, if one was asked."""

    instance: str
    base: Problem
    entries: list[Entry]
    sweep_key: str | None = None
    sweep: list[Entry] = field(default_factory=list)
    split: bool = False  # each hardware solved twice, aggregated only and disaggregated only


def parse_hardware_list(text: str) -> list[str]:
    """``"h100-sxm,h200"`` -> names; checks each against the catalogue (``instance`` = own)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError.single("--hardware", "no hardware named")
    catalogue = hardware_catalogue()
    unknown = [n for n in names if n != OWN_HARDWARE and n not in catalogue]
    if unknown:
        raise InputError.single(
            "--hardware",
            f"unknown hardware {', '.join(unknown)}; known: {', '.join(sorted(catalogue))} (or '{OWN_HARDWARE}')",
        )
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """``"ttft_s=1,2,5,10"`` -> ``("ttft_s", [1, 2, 5, 10])``; the key must be an SLO field."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not values.strip():
        raise InputError.single("--sweep", f"expected SLO=V1,V2,... (for example ttft_s=1,2,5,10), got {text!r}")
    if key not in SLOs.model_fields:
        raise InputError.single("--sweep", f"{key!r} is not an SLO; choose from {', '.join(SLOs.model_fields)}")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise InputError.single("--sweep", f"values must be numbers, got {values!r}") from None
    if any(v <= 0 for v in numbers):
        raise InputError.single("--sweep", "values must be positive")
    return key, sorted(set(numbers))


def problem_on_hardware(problem: Problem, hardware_name: str) -> Problem:
    """``problem`` on another hardware profile, with the cluster reshaped by the rule in the
    module docstring. The instance's own hardware returns ``problem`` unchanged."""
    if hardware_name in (OWN_HARDWARE, problem.hardware.name):
        return problem
    hardware = hardware_catalogue()[hardware_name]
    old = problem.cluster
    num_nodes = None
    if old.num_nodes is not None:
        old_gpus = old.num_nodes * problem.fabric.gpus_per_node
        num_nodes = math.ceil(old_gpus / hardware.gpus_per_node)
    cluster = ClusterSpec(
        gpus_per_node=hardware.gpus_per_node,
        num_nodes=num_nodes,
        nvlink_domain_gpus=hardware.nvlink_domain_gpus,
        scaleout_oversubscription=old.scaleout_oversubscription,
    )
    return problem.replace(hardware=hardware, cluster=cluster)


def problem_for_task(base: Problem, task: Task, disaggregation: str | None = None) -> Problem:
    problem = with_disaggregation(problem_on_hardware(base, task.hardware), disaggregation)
    if task.slo_overrides:
        slo = SLOs.model_validate({**problem.slo.model_dump(), **dict(task.slo_overrides)})
        problem = problem.replace(slo=slo)
    return problem


def run_task(task: Task, settings: SolveSettings) -> tuple[Task, Problem, Result]:
    """Load, reshape and solve one task (top level so that worker processes can import it)."""
    from placer.solve import solve

    problem = problem_for_task(load_problem(task.instance), task, task.disaggregation or settings.disaggregation)
    result = solve(
        problem,
        backend=settings.backend,
        time_limit_s=settings.time_limit_s,
        workers=settings.workers,
        seed=settings.seed,
        max_gpus=settings.max_gpus,
    )
    return task, problem, result


def run_tasks(
    tasks: Sequence[Task],
    settings: SolveSettings,
    jobs: int | None = None,
    on_done: Callable[[Task, Result], None] | None = None,
    executor: Executor | None = None,
) -> list[tuple[Task, Problem, Result]]:
    """Run every task, ``jobs`` at a time in worker processes (1: in this process), or on
    ``executor`` (the one ``placer sweep`` uses: local processes or Ray); the answers come back in
    the order of ``tasks``, and a task that raised raises here."""
    if executor is None:
        executor = LocalExecutor(jobs if jobs is not None else (os.cpu_count() or 1))
    results: dict[int, tuple[Task, Problem, Result]] = {}
    for index, outcome, error in executor.map_unordered(functools.partial(run_task, settings=settings), tasks):
        if error is not None:
            raise error
        results[index] = outcome
        if on_done is not None:
            on_done(outcome[0], outcome[2])
    return [results[i] for i in range(len(tasks))]


def compare_tasks(
    instance: str | Path, hardware: Sequence[str], sweep: tuple[str, list[float]] | None = None, split: bool = False
) -> list[Task]:
    """The base solve on each hardware (``split``: aggregated only, then disaggregated only), then
    each sweep value on each hardware (the better of both kinds when both are allowed)."""
    path = str(instance)
    if split:
        tasks = [Task(path, hw, (), mode) for hw in hardware for mode in KINDS]
    else:
        tasks = [Task(path, hw) for hw in hardware]
    if sweep is not None:
        key, values = sweep
        tasks += [Task(path, hw, ((key, value),)) for value in values for hw in hardware]
    return tasks


def compare(
    instance: str | Path,
    hardware: Sequence[str],
    settings: SolveSettings = SolveSettings(),
    sweep: tuple[str, list[float]] | None = None,
    jobs: int | None = None,
    on_done: Callable[[Task, Result], None] | None = None,
    executor: Executor | None = None,
) -> Comparison:
    """Solve ``instance`` on every hardware profile (and sweep point); input errors surface here,
    in the calling process, before any worker starts. With disaggregation ``allow`` (the instance's
    or ``settings``'), each hardware is solved aggregated only and disaggregated only, so the two
    kinds of plan stand side by side and :func:`kind_summary` says which wins and by how much."""
    base = load_problem(instance)
    # 'instance' names the instance's own profile: a list that also names it solves it once
    hardware = list(dict.fromkeys(base.hardware.name if hw == OWN_HARDWARE else hw for hw in hardware))
    split = (settings.disaggregation or base.objective.disaggregation) == "allow"
    tasks = compare_tasks(instance, hardware, sweep, split)
    for task in tasks:  # reshaping and SLO overrides fail here, not in a worker
        problem_for_task(base, task, task.disaggregation or settings.disaggregation)
    done = run_tasks(tasks, settings, jobs, on_done, executor)
    entries = [Entry(t, p, r) for t, p, r in done]
    count = len(hardware) * (len(KINDS) if split else 1)
    return Comparison(
        instance=base.name,
        base=base,
        entries=entries[:count],
        sweep_key=sweep[0] if sweep else None,
        sweep=entries[count:],
        split=split,
    )


def usd_per_million_tokens(price_per_gpu_hour_usd: float | None, tokens_per_ms_per_gpu: float) -> float | None:
    """GPU rental cost of a million tokens at a throughput, in USD (None without a price)."""
    if price_per_gpu_hour_usd is None or tokens_per_ms_per_gpu <= 0:
        return None
    return price_per_gpu_hour_usd / (tokens_per_ms_per_gpu * MS_PER_HOUR) * 1e6


def entry_row(entry: Entry) -> dict[str, Any]:
    """One row of the comparison table, JSON-ready; every figure is the evaluator's, named with
    its unit. Infeasible hardware keeps its row, with the reason."""
    result, problem = entry.result, entry.problem
    row: dict[str, Any] = {
        "hardware": problem.hardware.name,
        "gpus_per_node": problem.fabric.gpus_per_node,
        "status": result.status.value,
        "gap": result.gap,
        "price_per_gpu_hour_usd": problem.hardware.price_per_gpu_hour_usd,
    }
    if entry.task.slo_overrides:
        row["slo_overrides"] = dict(entry.task.slo_overrides)
    if entry.task.kind:
        row.update({"name": entry.task.name, "solved_as": entry.task.kind, "mode": entry.task.kind})
    evaluation = result.evaluation
    if evaluation is None:
        if result.status == SolveStatus.INFEASIBLE:
            row["reason"] = result.explanation[0] if result.explanation else "infeasible"
        else:
            row["reason"] = "no plan within the time limit"
        return row
    row.update({"mode": "aggregated", "gpus": evaluation.gpus, "nodes": evaluation.nodes})  # the plan's kind
    if isinstance(evaluation, DisaggEvaluation):
        row["mode"] = "disaggregated"
        row.update(_pool_columns(evaluation))
        memory = max((c for c in evaluation.rules if c.name.endswith(".memory_per_gpu")), key=lambda c: c.value)
    else:
        row["parallelism"] = evaluation.plan.parallelism.model_dump()
        row["stages"] = [list(st.layers) for st in evaluation.stages]
        memory = next(c for c in evaluation.slo if c.name == "memory_per_gpu")
    binding = evaluation.binding
    price = problem.hardware.price_per_gpu_hour_usd
    row.update(
        {
            "ttft_s": evaluation.ttft_s,
            "tpot_ms": evaluation.tpot_s * 1e3,
            "prefill_tokens_per_ms_per_gpu": evaluation.prefill_tokens_per_ms_per_gpu,
            "decode_tokens_per_ms_per_gpu": evaluation.decode_tokens_per_ms_per_gpu,
            "memory_gb_per_gpu_max": memory.value,
            "memory_headroom_gb": usable_memory_bytes(problem) / GB - memory.value,
            "cross_node_bytes_per_token": evaluation.cross_node_bytes_per_token,
            "binding_constraint": binding.name if binding else None,
            "binding_slack": binding.slack if binding else None,
            "usd_per_million_output_tokens": usd_per_million_tokens(price, evaluation.decode_tokens_per_ms_per_gpu),
            "usd_per_million_prompt_tokens": usd_per_million_tokens(price, evaluation.prefill_tokens_per_ms_per_gpu),
        }
    )
    return row


def _pool_columns(evaluation: DisaggEvaluation) -> dict[str, Any]:
    """A disaggregated row's own columns: each pool's degrees, GPUs, nodes and partition, and the
    KV path between them with its transfer time."""
    plan = evaluation.plan
    columns: dict[str, Any] = {}
    for phase, nodes in (("prefill", evaluation.nodes_prefill), ("decode", evaluation.nodes_decode)):
        pool = plan.pool(phase)
        columns[phase] = {
            "gpus": pool.gpus,
            "nodes": list(nodes),
            "parallelism": pool.parallelism.model_dump(),
            "stages": [list(st.layers) for st in pool.stages],
        }
    transfer = evaluation.point.transfer
    columns["kv_path"] = transfer.path.kind
    columns["kv_transfer_ms"] = transfer.mean_s * 1e3 if math.isfinite(transfer.mean_s) else None
    return columns


def _better(aggregated: Entry, disaggregated: Entry) -> str | None:
    """The kind whose plan wins under the instance's objective: the one with a feasible plan, else
    the lexicographically smaller terms (a tie goes to the aggregated plan, the simpler to run)."""
    has = {
        kind: e.result.evaluation is not None and e.result.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
        for kind, e in (("aggregated", aggregated), ("disaggregated", disaggregated))
    }
    if not any(has.values()):
        return None
    if not all(has.values()):
        return next(kind for kind, ok in has.items() if ok)
    a, d = aggregated.result.terms, disaggregated.result.terms
    keys = [k for k in a if k in d]
    return "disaggregated" if [d[k] for k in keys] < [a[k] for k in keys] else "aggregated"


def kind_summary(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Per hardware of a split comparison: both kinds' GPUs and output throughput per GPU, the
    better kind under the objective, and disaggregated over aggregated throughput per GPU."""
    summary = []
    for aggregated, disaggregated in zip(entries[0::2], entries[1::2], strict=True):
        figures = {}
        for kind, entry in (("aggregated", aggregated), ("disaggregated", disaggregated)):
            solved = entry.result.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
            evaluation = entry.result.evaluation if solved else None
            figures[kind] = {
                "status": entry.result.status.value,
                "gpus": evaluation.gpus if evaluation is not None else None,
                "decode_tokens_per_ms_per_gpu": (
                    evaluation.decode_tokens_per_ms_per_gpu if evaluation is not None else None
                ),
                "objective": entry.result.objective if solved else None,
            }
        a_tp = figures["aggregated"]["decode_tokens_per_ms_per_gpu"]
        d_tp = figures["disaggregated"]["decode_tokens_per_ms_per_gpu"]
        summary.append(
            {
                "hardware": aggregated.problem.hardware.name,
                **figures,
                "better": _better(aggregated, disaggregated),
                "throughput_per_gpu_ratio": d_tp / a_tp if a_tp and d_tp is not None else None,
            }
        )
    return summary


def comparison_document(comparison: Comparison, timings: bool = True) -> dict[str, Any]:
    """The comparison as JSON: one row per hardware, then the sweep rows. Wall-clock figures sit
    under ``timings`` (solve seconds per row, in row order), which ``timings=False`` leaves out so
    two runs give the same bytes."""
    doc: dict[str, Any] = {
        "instance": comparison.instance,
        "instance_hardware": comparison.base.hardware.name,
        "rows": [entry_row(e) for e in comparison.entries],
    }
    if comparison.split:
        doc["kinds"] = kind_summary(comparison.entries)
    if comparison.sweep_key is not None:
        doc["sweep"] = {"slo": comparison.sweep_key, "rows": [entry_row(e) for e in comparison.sweep]}
    if timings:
        doc["timings"] = {
            "solve_wall_s": [round(e.result.wall_s, 3) for e in comparison.entries],
            "sweep_solve_wall_s": [round(e.result.wall_s, 3) for e in comparison.sweep],
        }
    return doc
