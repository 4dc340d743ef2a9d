"""How much of a GPU's memory a plan may fill (M5 of ``docs/cost-model.md``).

Here rather than in the evaluator so that the formulation, the placement and the evaluator read
one figure without the formulation importing the evaluator.
"""

from __future__ import annotations

import math

from placer.costmodel.params import weight_bytes
from placer.problem import Problem


def usable_memory_bytes(problem: Problem) -> float:
    """HBM a plan may fill: capacity less the stated margin (M5)."""
    return problem.hardware.hbm_bytes * (1 - problem.params.memory_margin_fraction)


def fewest_gpus_for_weights(problem: Problem) -> int:
    """Every weight is held at least once: ``ceil(weight bytes / usable HBM per GPU)`` GPUs is a
    lower bound on any plan's GPU count, from the architecture alone (no search)."""
    weights = weight_bytes(problem.model)
    return max(1, math.ceil(weights / usable_memory_bytes(problem)))
