"""Per-configuration bounds and objective terms, shared by every backend (F5)-(F8), (J1)-(J4).

All SLOs become upper bounds on the two max-stage times ``T_pre`` and ``T_dec`` of the chosen
configuration, or rule the configuration out whatever the partition (``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from placer.formulation.data import Config, FormulationData
from placer.schema import Objective

TERMS = ("min_gpus", "max_throughput_per_gpu", "min_cross_node_traffic", "min_ttft")


@dataclass(frozen=True)
class StageBounds:
    """Largest stage times (per micro-batch) the SLOs allow for one configuration, in seconds."""

    prefill_s: float
    decode_s: float


def stage_bounds(data: FormulationData, config: Config) -> StageBounds | None:
    """(F5)-(F8): SLOs as bounds on ``T_pre``/``T_dec``; ``None`` when no partition can meet them."""
    slo = data.problem.slo
    counts = data.class_counts
    total_pre = config.total_s("prefill", counts)
    total_dec = config.total_s("decode", counts)
    pre = dec = math.inf
    if slo.max_gpus is not None and config.gpus > slo.max_gpus:
        return None
    if slo.ttft_s is not None:  # (F5) S_pre + (m - 1) T_pre <= TTFT
        if total_pre > slo.ttft_s:
            return None
        if config.micro["prefill"] > 1:
            pre = min(pre, (slo.ttft_s - total_pre) / (config.micro["prefill"] - 1))
    if slo.min_prefill_tokens_per_ms_per_gpu is not None:  # (F6) B L / (m T_pre G) >= floor
        budget = data.prefill_tokens / (slo.min_prefill_tokens_per_ms_per_gpu * 1e3 * config.gpus)
        pre = min(pre, budget / config.micro["prefill"])
    for floor_budget in _decode_budgets(data, config):  # (F7), (F8): TPOT = max(m T_dec, S_dec)
        if total_dec > floor_budget:
            return None
        dec = min(dec, floor_budget / config.micro["decode"])
    return StageBounds(pre, dec)


def _decode_budgets(data: FormulationData, config: Config) -> list[float]:
    slo = data.problem.slo
    budgets = []
    if slo.tpot_ms is not None:
        budgets.append(slo.tpot_ms * 1e-3 * data.problem.workload.output_tokens_per_step)  # step time
    if slo.min_decode_tokens_per_ms_per_gpu is not None:
        budgets.append(data.decode_tokens / (slo.min_decode_tokens_per_ms_per_gpu * 1e3 * config.gpus))
    return budgets


def primary_term(objective: Objective) -> str:
    """The first lexicographic term: cost per token is throughput per GPU times a constant price."""
    return (
        "max_throughput_per_gpu"
        if objective.primary in ("max_throughput_per_gpu", "min_cost_per_token")
        else "min_gpus"
    )


def objective_terms(data: FormulationData) -> list[str]:
    """The lexicographic order of terms the instance asks for (J1)."""
    return terms_for(data.problem.objective)


def terms_for(objective: Objective) -> list[str]:
    """(J1) of an objective: its primary term, then each known tie-break once."""
    order = [primary_term(objective)]
    for term in objective.tie_breaks:
        if term in TERMS and term not in order:
            order.append(term)
    return order


def term_value(data: FormulationData, config: Config, term: str, t_pre: float, t_dec: float) -> float:
    """Value of one objective term for a configuration and its max-stage times (J2)-(J4).

    ``max_throughput_per_gpu`` is minimised as GPU-seconds per batch (``G * period``), which is
    ``tokens / throughput``; ``min_cost_per_token`` is the same times a constant price.
    """
    if term == "min_gpus":
        return float(config.gpus)
    if term == "min_cross_node_traffic":
        return config.cross_node_bytes_per_token
    if term == "min_ttft":
        return config.total_s("prefill", data.class_counts) + (config.micro["prefill"] - 1) * t_pre
    if term == "max_throughput_per_gpu":
        if data.problem.objective.throughput_phase == "prefill":
            return config.gpus * config.micro["prefill"] * t_pre
        return config.gpus * max(config.micro["decode"] * t_dec, config.total_s("decode", data.class_counts))
    raise ValueError(term)


def term_phase(data: FormulationData, term: str) -> str | None:
    """Which max-stage time a term depends on (``None``: only on the configuration)."""
    if term == "min_ttft":
        return "prefill"
    if term == "max_throughput_per_gpu":
        return data.problem.objective.throughput_phase
    return None
