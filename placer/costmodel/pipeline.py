"""Pipeline composition: stage times per micro-batch -> TTFT, TPOT and throughput (P1)-(P4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PhaseTimes:
    """Phase figures of one replica."""

    ttft_s: float
    prefill_period_s: float
    tpot_s: float


def ttft_s(stage_s: Sequence[float], sends_s: float, micro_batches: int) -> float:
    """(P1) ``sum_s t_s + (m - 1) max_s t_s + sends``: the last micro-batch leaves the last stage."""
    return sum(stage_s) + (micro_batches - 1) * max(stage_s) + sends_s


def prefill_period_s(stage_s: Sequence[float], micro_batches: int) -> float:
    """(P2) Steady state with batches back to back: the slowest stage is busy ``m * t_max``."""
    return micro_batches * max(stage_s)


def tpot_s(stage_s: Sequence[float], sends_s: float, micro_batches: int) -> float:
    """(P3) A sequence gets its next token when its micro-batch has gone round the pipeline and
    the slowest stage has served all micro-batches: ``max(m t_max, sum_s t_s + sends)``."""
    return max(micro_batches * max(stage_s), sum(stage_s) + sends_s)


def tokens_per_ms_per_gpu(tokens: float, period_s: float, gpus: int) -> float:
    """(P4) Tokens per millisecond per GPU."""
    return tokens / (period_s * 1e3) / gpus
