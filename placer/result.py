"""Solve results: one status enum mapped once from each backend, and the result a user gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from placer.evaluator import Evaluation
    from placer.schema import Plan


class SolveStatus(str, Enum):
    """Outcome of a solve. Only ``OPTIMAL`` claims optimality, and only when the solver proved it."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"  # a plan, with a gap: the time limit stopped the proof
    INFEASIBLE = "infeasible"
    NO_PLAN = "no_plan_in_time"


@dataclass(frozen=True)
class BackendSolution:
    """What a backend returns: the chosen configuration and partition, and its proof status.

    ``terms`` are the lexicographic objective values in the formulation's physical units;
    ``bound`` and ``gap`` are those of the primary term.
    """

    backend: str
    status: SolveStatus
    config_index: int | None
    stage_starts: tuple[int, ...]  # first layer of each stage
    terms: dict[str, float]
    bound: float | None
    wall_s: float
    pass_statuses: tuple[str, ...] = ()
    interrupted: bool = False  # Ctrl-C stopped the search; the plan is the incumbent at that moment


@dataclass
class Result:
    """A solve's answer: status, the plan (re-checked by the evaluator), objective, bound, gap."""

    status: SolveStatus
    backend: str
    wall_s: float
    plan: Plan | None = None
    evaluation: Evaluation | None = None
    objective: float | None = None
    objective_term: str | None = None
    bound: float | None = None
    gap: float | None = None
    terms: dict[str, float] = field(default_factory=dict)
    explanation: list[str] = field(default_factory=list)
    search: dict[str, object] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C stopped the search: the plan is the incumbent, not proven
    placement: Any = None  # placer.placement.plan.PlacementReport of the plan, when experts were placed
