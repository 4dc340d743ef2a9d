"""Error hierarchy.

An *input* error (exit code 2) is the user's to fix and carries the field that is wrong.
"No feasible plan" is an answer, not an error: it is returned as a result with an explanation
(exit code 3). Anything else is a bug in placer and is allowed to raise normally.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID_INPUT = 2
EXIT_INFEASIBLE = 3
EXIT_NO_PLAN_IN_TIME = 4


class PlacerError(Exception):
    """Base class of the errors placer raises on purpose."""


class InputError(PlacerError):
    """Invalid user input: one message per problem, each naming the field and the reason.

    Parameters
    ----------
    problems
        ``(field, reason)`` pairs, e.g. ``("workload.batch_size", "must be > 0, got -3")``.
    source
        The file the input came from, if any, for the message.
    """

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f"{self.source}: " if self.source else ""
        lines = [f"{where}{field}: {reason}" if field else f"{where}{reason}" for field, reason in self.problems]
        return "\n".join(lines)

    @classmethod
    def single(cls, field: str, reason: str, source: str | None = None) -> InputError:
        return cls([(field, reason)], source)


class PlanMismatchError(PlacerError):
    """The solver's own figures for a plan disagree with the independent evaluator: a bug."""
