"""Selection data: a finite list of candidates, each scored beforehand by an oracle.

Where a configuration's figures come from a model the backends cannot express in their own terms
(the serving model of :mod:`placer.serving` runs the evaluator many times per configuration), the
optimisation left once every candidate is scored is a *selection*: choose one candidate
minimising the objective terms in lexicographic order. Every backend solves it on the same
integer coefficients built here, so their answers can be compared exactly: the exhaustive scan by
``min`` over ``(costs, index)``, CP-SAT and the MILP as a one-hot choice with one pass per term and
a last pass on the index (ties go to the lowest index in every backend).

Integer scaling: each term's value is multiplied by its scale (``TERM_SCALE``) and rounded to the
nearest integer, so values equal up to float noise get equal coefficients. Two candidates whose
values differ by less than about one unit may tie, and the tie goes to the lower index, the same in
every backend; the answer is exact to one unit of ``TERM_SCALE``. (Soundness does not hang on the
direction of rounding: every candidate is already feasible, and the chosen plan's terms are
recomputed from a fresh evaluation.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Model units per physical unit of each term (every term is minimised):
#: GPUs; GPU-seconds per output token in pico-GPU-seconds (1e12: 300 tokens/s/GPU is 3.3e9 units,
#: so two throughputs tie only within 3e-10 relative); bytes per token; TTFT in nanoseconds.
TERM_SCALE = {
    "min_gpus": 1.0,
    "max_throughput_per_gpu": 1e12,
    "min_cross_node_traffic": 1.0,
    "min_ttft": 1e9,
}


def scaled(value: float, scale: float) -> int:
    """A term's value in integer model units, rounded to the nearest."""
    if not math.isfinite(value):
        raise ValueError(f"cannot scale a non-finite term value {value}")
    return round(value * scale)


@dataclass(frozen=True)
class SelectionData:
    """Candidates (already found feasible) with their lexicographic objective terms.

    ``values[i][k]`` is term ``terms[k]`` of candidate ``i`` in physical units, ``costs[i][k]`` the
    same in integer model units. ``complete`` is false when scoring stopped before every admitted
    configuration was scored (then no backend's optimum over these candidates is a proof), and
    ``bound`` is a lower bound on the primary term over the configurations left unscored (``None``:
    none known)."""

    terms: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    complete: bool = True
    bound: float | None = None

    @property
    def scales(self) -> tuple[float, ...]:
        return tuple(TERM_SCALE[t] for t in self.terms)

    @property
    def costs(self) -> tuple[tuple[int, ...], ...]:
        scales = self.scales
        return tuple(tuple(scaled(v, s) for v, s in zip(row, scales, strict=True)) for row in self.values)

    def __len__(self) -> int:
        return len(self.values)

    def best_reference(self) -> int | None:
        """The lexicographic minimum over (integer costs, index): what every backend must return."""
        costs = self.costs
        return min(range(len(costs)), key=lambda i: (costs[i], i), default=None)
