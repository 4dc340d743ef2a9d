"""The inference phase as an index: prefill and decode, and per-phase values indexed by phase.

A request passes through two phases with different shapes (a prompt's worth of tokens per
sequence, then one step's worth). Every per-phase figure of the cost tables and the formulation
data is held as a :class:`PerPhase` indexed by :data:`PHASES` rather than as a pair of spelled-out
names, so code loops over phases and a pool can later be "a configuration for a set of phases".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

Phase = Literal["prefill", "decode"]

#: The phases in their fixed order (prefill first: the order every per-phase loop keeps).
PHASES: tuple[Phase, ...] = ("prefill", "decode")

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class PerPhase(Generic[T]):
    """One value per phase, read as ``values[phase]`` (or ``.prefill`` / ``.decode``)."""

    prefill: T
    decode: T

    def __getitem__(self, phase: Phase) -> T:
        if phase == "prefill":
            return self.prefill
        if phase == "decode":
            return self.decode
        raise KeyError(phase)

    def __iter__(self) -> Iterator[T]:
        """The values in :data:`PHASES` order, so ``prefill, decode = values`` unpacks."""
        return iter((self.prefill, self.decode))

    def items(self) -> Iterator[tuple[Phase, T]]:
        return ((phase, self[phase]) for phase in PHASES)

    def map(self, fn: Callable[[T], U]) -> PerPhase[U]:
        """``fn`` applied to each phase's value."""
        return PerPhase(fn(self.prefill), fn(self.decode))

    @staticmethod
    def build(fn: Callable[[Phase], U]) -> PerPhase[U]:
        """``fn(phase)`` for each phase, evaluated in :data:`PHASES` order."""
        prefill = fn("prefill")
        return PerPhase(prefill, fn("decode"))
