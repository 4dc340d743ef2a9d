"""What a worker runs for one point, and the figures it sends back.

The worker solves, turns the result into a flat dictionary of figures (small, JSON-ready: this is
what crosses the process or network boundary and what the cache keeps) and never raises: an
exception becomes the point's ``error``, so one bad point is one row, never a lost sweep.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from typing import Any

from placer.compare import SolveSettings, usd_per_million_tokens
from placer.problem import Problem
from placer.result import Result, SolveStatus
from placer.schema import DisaggregatedPlan
from placer.solve import solve

#: status of a point whose solve raised (the solver's own statuses are ``SolveStatus`` values)
ERROR_STATUS = "error"

#: the figures every point has, in column order (missing ones are empty)
FIGURE_COLUMNS = (
    "status",
    "gap",
    "objective",
    "objective_term",
    "bound",
    "gpus",
    "nodes",
    "replicas",
    "mode",
    "degrees",
    "concurrency",
    "ttft_s",
    "tpot_ms",
    "tokens_per_s_per_user",
    "output_tokens_per_s_per_gpu",
    "prefill_tokens_per_ms_per_gpu",
    "decode_tokens_per_ms_per_gpu",
    "memory_gb_per_gpu_max",
    "cross_node_bytes_per_token",
    "binding_constraint",
    "usd_per_hour",
    "usd_per_million_output_tokens",
    "reason",
    "error",
)


@dataclass(frozen=True)
class PointJob:
    """One solve to run: the point's key (to file the answer under), its problem, the settings."""

    key: str
    problem: Problem
    settings: SolveSettings


@dataclass(frozen=True)
class PointAnswer:
    """A finished point: its figures (:data:`FIGURE_COLUMNS`) and the wall time of the solve."""

    key: str
    figures: dict[str, Any]
    wall_s: float

    @property
    def failed(self) -> bool:
        return self.figures.get("status") == ERROR_STATUS


def solve_point(job: PointJob) -> PointAnswer:
    """Solve one point (top level: worker processes and Ray tasks import it); never raises."""
    started = time.perf_counter()
    try:
        s = job.settings
        result = solve(
            job.problem,
            backend=s.backend,
            time_limit_s=s.time_limit_s,
            workers=s.workers,
            seed=s.seed,
            max_gpus=s.max_gpus,
        )
        figures = result_figures(job.problem, result)
    except Exception as exc:  # noqa: BLE001 - the point's row carries it; the sweep goes on
        figures = error_figures(exc)
    return PointAnswer(job.key, figures, time.perf_counter() - started)


def error_figures(exc: BaseException) -> dict[str, Any]:
    """The figures of a point whose solve raised: the error's type, message and where it came from."""
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return {"status": ERROR_STATUS, "error": f"{type(exc).__name__}: {exc}{where}"}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def result_figures(problem: Problem, result: Result) -> dict[str, Any]:
    """A solve's answer as flat figures with units in their names; no wall-clock time among them."""
    figures: dict[str, Any] = {
        "status": result.status.value,
        "gap": _finite(result.gap),
        "objective": _finite(result.objective),
        "objective_term": result.objective_term,
        "bound": _finite(result.bound),
    }
    evaluation = result.evaluation
    if evaluation is None:
        if result.status == SolveStatus.INFEASIBLE:
            figures["reason"] = result.explanation[0] if result.explanation else "infeasible"
        else:
            figures["reason"] = "no plan within the time limit"
        return figures
    serving = evaluation.serving
    tpot_s = serving.tpot_s if serving is not None else evaluation.tpot_s
    plan = evaluation.plan
    disaggregated = isinstance(plan, DisaggregatedPlan)
    if disaggregated:
        # a prefill pool and a decode pool: the engine instances of both, the requests in flight
        tokens_per_s_per_gpu = serving.output_tokens_per_s_per_gpu
        replicas, concurrency = serving.prefill_replicas + serving.decode_replicas, serving.concurrency
        degrees = f"prefill {plan.prefill.parallelism.label} + decode {plan.decode.parallelism.label}"
    elif serving is not None:
        tokens_per_s_per_gpu = serving.output_tokens_per_s_per_gpu
        replicas, concurrency = serving.replicas, serving.concurrency_per_replica * serving.replicas
    else:
        tokens_per_s_per_gpu = evaluation.decode_tokens_per_ms_per_gpu * 1e3
        replicas, concurrency = evaluation.plan.parallelism.replicas, float(problem.workload.batch_size)
    if not disaggregated:
        degrees = plan.parallelism.label
    memory = next((c.value for c in evaluation.slo if c.name == "memory_per_gpu"), None)
    binding = evaluation.binding
    price = problem.hardware.price_per_gpu_hour_usd
    figures.update(
        {
            "gpus": evaluation.gpus,
            "nodes": evaluation.nodes,
            "replicas": replicas,
            "mode": "disaggregated" if disaggregated else "aggregated",
            "degrees": degrees,
            "concurrency": _finite(concurrency),
            "ttft_s": _finite(evaluation.ttft_s),
            "tpot_ms": _finite(tpot_s * 1e3),
            "tokens_per_s_per_user": 1.0 / tpot_s if tpot_s > 0 and math.isfinite(tpot_s) else None,
            "output_tokens_per_s_per_gpu": _finite(tokens_per_s_per_gpu),
            "prefill_tokens_per_ms_per_gpu": _finite(evaluation.prefill_tokens_per_ms_per_gpu),
            "decode_tokens_per_ms_per_gpu": _finite(evaluation.decode_tokens_per_ms_per_gpu),
            "memory_gb_per_gpu_max": _finite(memory),
            "cross_node_bytes_per_token": _finite(evaluation.cross_node_bytes_per_token),
            "binding_constraint": binding.name if binding else None,
            "usd_per_hour": price * evaluation.gpus if price is not None else None,
            # the GPUs' rental over the output tokens they serve (at the demand, for a rate workload)
            "usd_per_million_output_tokens": usd_per_million_tokens(price, tokens_per_s_per_gpu / 1e3),
        }
    )
    return figures
