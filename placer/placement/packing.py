"""Second level of the decomposition: one node's copies onto its ranks, balancing rank load.

Longest-processing-time first with a slot capacity per rank and no two copies of an expert on
one rank, then pairwise swaps between the busiest rank and the others while they lower the
busiest load. Traffic does not change inside a node (scale-up only), so balance is the only goal.
"""

from __future__ import annotations

import numpy as np


def pack_ranks(experts: np.ndarray, weights: np.ndarray, ranks: int, slots: int) -> list[list[int]]:
    """Indices into ``experts`` per rank."""
    packs: list[list[int]] = [[] for _ in range(ranks)]
    totals = np.zeros(ranks)
    for i in np.argsort(-weights, kind="stable"):
        ok = np.array([len(p) < slots and all(experts[j] != experts[i] for j in p) for p in packs])
        r = int(np.argmin(np.where(ok, totals, np.inf)))
        packs[r].append(int(i))
        totals[r] += weights[i]
    for _ in range(200):
        top = int(np.argmax(totals))
        best = (0.0, None)
        for other in range(ranks):
            if other == top:
                continue
            for i in packs[top]:
                # move into a free slot
                if len(packs[other]) < slots and all(experts[j] != experts[i] for j in packs[other]):
                    new_max = max(totals[top] - weights[i], totals[other] + weights[i])
                    if totals[top] - new_max > best[0] + 1e-15:
                        best = (totals[top] - new_max, (i, None, other))
                for j in packs[other]:
                    d = weights[i] - weights[j]
                    if d <= 0:
                        continue
                    if any(experts[x] == experts[j] for x in packs[top] if x != i) or any(
                        experts[x] == experts[i] for x in packs[other] if x != j
                    ):
                        continue
                    new_max = max(totals[top] - d, totals[other] + d)
                    if totals[top] - new_max > best[0] + 1e-15:
                        best = (totals[top] - new_max, (i, j, other))
        if best[1] is None:
            break
        i, j, other = best[1]
        packs[top].remove(i)
        packs[other].append(i)
        totals[top] -= weights[i]
        totals[other] += weights[i]
        if j is not None:
            packs[other].remove(j)
            packs[top].append(j)
            totals[other] -= weights[j]
            totals[top] += weights[j]
    return packs
