"""Placement problem of one MoE layer, and a placement (experts on EP ranks).

An EP rank is the unit that holds expert slots: its ``tp_moe`` GPUs hold one shard of each of its
experts, so balance and traffic are computed per rank. Ranks sit on nodes (NVLink domains);
``rank_node[r]`` is the domain of rank ``r``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placer.errors import InputError
from placer.routing.stats import LayerRouting

Placement = tuple[tuple[int, ...], ...]  # placement[r] = logical experts on EP rank r


@dataclass(frozen=True, eq=False)
class LayerPlacementProblem:
    """One MoE layer to place: its routing and the slots of the EP group."""

    routing: LayerRouting
    rank_node: np.ndarray  # [R] domain of each EP rank, relabelled 0..N-1
    slots_per_rank: int
    expert_group: np.ndarray | None = None
    groups_per_token: int | None = None

    @property
    def num_experts(self) -> int:
        return self.routing.num_experts

    @property
    def num_ranks(self) -> int:
        return int(self.rank_node.size)

    @property
    def num_nodes(self) -> int:
        return int(self.rank_node.max()) + 1

    @property
    def ranks_per_node(self) -> np.ndarray:
        return np.bincount(self.rank_node, minlength=self.num_nodes)

    @property
    def redundant_slots(self) -> int:
        return self.num_ranks * self.slots_per_rank - self.num_experts

    def require_slots(self) -> None:
        """Refuse slots that cannot hold every expert once (a placement would drop experts or
        overfill a rank): :class:`~placer.errors.InputError` naming the slot count."""
        if self.slots_per_rank * self.num_ranks < self.num_experts:
            raise InputError(
                [
                    (
                        "placement.slots_per_rank",
                        f"{self.slots_per_rank} slots x {self.num_ranks} ranks = "
                        f"{self.slots_per_rank * self.num_ranks} < {self.num_experts} experts: one slot each needed",
                    )
                ]
            )


def copies_matrix(placement: Placement, num_experts: int) -> np.ndarray:
    """[E, R] number of copies of expert e on rank r (2+ only for a wasted duplicate)."""
    copies = np.zeros((num_experts, len(placement)), dtype=np.int64)
    for rank, experts in enumerate(placement):
        for expert in experts:
            copies[expert, rank] += 1
    return copies


def check_placement(placement: Placement, problem: LayerPlacementProblem, allow_duplicates: bool = False) -> list[str]:
    """Invariant violations: every expert placed, slots respected, at most one copy per rank."""
    problems = []
    if len(placement) != problem.num_ranks:
        problems.append(f"{len(placement)} ranks for {problem.num_ranks}")
    copies = copies_matrix(placement, problem.num_experts)
    missing = np.flatnonzero(copies.sum(axis=1) == 0)
    if missing.size:
        problems.append(f"experts {missing[:5].tolist()} have no slot")
    full = [r for r, experts in enumerate(placement) if len(experts) > problem.slots_per_rank]
    if full:
        problems.append(f"ranks {full[:5]} exceed {problem.slots_per_rank} slots")
    if not allow_duplicates and (copies > 1).any():
        problems.append("an expert has two copies on one rank")
    return problems


def without_duplicates(placement: Placement) -> Placement:
    """``placement`` with every second copy of an expert on one rank dropped (its slot left empty):
    under local-first serving a duplicate serves nothing, so load and traffic do not change."""
    return tuple(tuple(sorted(set(experts))) for experts in placement)
