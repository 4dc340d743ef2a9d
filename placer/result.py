"""Solve results: one status enum mapped once from each backend, and the result a user gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the result sits below the evaluator and placement it refers to
    from placer.evaluator import Evaluation
    from placer.placement.plan import PlacementReport
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


@dataclass(frozen=True)
class SearchInfo:
    """How the answer was found: the search space, the backend the portfolio picked, the passes,
    the re-solve rounds, and what stopped the search early. Wall-clock figures are the ``*_s``
    fields (a document keeps them under ``timings``, so the rest compares byte for byte)."""

    configurations_enumerated: int = 0
    configurations_in_model: int = 0
    fixed_by_presolve: int = 0
    gpu_cap: int | None = None
    gpu_cap_reason: str = ""
    warm_start_gpus: int | None = None
    backend_choice: str = ""  # which backend ran and why (the portfolio's rule)
    passes: tuple[str, ...] = ()
    resolve: tuple[str, ...] = ()
    formulation_complete: bool = True  # False: the build was stopped before every configuration was costed
    stopped: str | None = None  # why the command stopped early ("time limit reached", "interrupted (Ctrl-C)")
    interrupted: bool = False
    warm_start_wall_s: float = 0.0
    build_s: float = 0.0
    search_wall_s: float = 0.0
    placement_wall_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready values (tuples as lists), keyed by field name."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Result:
    """A solve's answer: status, the plan (re-checked by the evaluator), objective, bound, gap.

    Frozen: every step that adds to it builds a new one (``dataclasses.replace``), so a result
    handed out at Ctrl-C cannot change under the caller."""

    status: SolveStatus
    backend: str
    wall_s: float
    plan: Plan | None = None
    evaluation: Evaluation | None = None
    objective: float | None = None
    objective_term: str | None = None
    bound: float | None = None
    gap: float | None = None
    terms: Mapping[str, float] = field(default_factory=dict)
    explanation: tuple[str, ...] = ()
    search: SearchInfo = field(default_factory=SearchInfo)
    interrupted: bool = False  # Ctrl-C stopped the search: the plan is the incumbent, not proven
    placement: PlacementReport | None = None  # the placement of the plan's experts, when placed
