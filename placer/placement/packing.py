"""Second level of the decomposition: one node's copies onto its ranks, balancing rank load.

Longest-processing-time first with a slot capacity per rank and no two copies of an expert on
one rank, then pairwise swaps between the busiest rank and the others while they lower the
busiest load. Traffic does not change inside a node (scale-up only), so balance is the only goal.
"""

from __future__ import annotations

import numpy as np


def _make_room(
    packs: list[list[int]], totals: np.ndarray, experts: np.ndarray, weights: np.ndarray, i: int, slots: int
) -> bool:
    """Every rank with a free slot already holds ``experts[i]``: move an item ``j`` of a rank
    ``p`` without that expert into a free slot of rank ``q`` (which must not hold ``experts[j]``)
    and put ``i`` in its place; the exchange that leaves the lighter of ``p`` and ``q`` heavier
    the least. False when no such exchange exists (then the caller overfills, as before)."""
    best: tuple[float, int, int, int] | None = None
    for q, pack_q in enumerate(packs):
        if len(pack_q) >= slots:
            continue
        held_q = {int(experts[x]) for x in pack_q}
        for p, pack_p in enumerate(packs):
            if p == q or any(experts[x] == experts[i] for x in pack_p):
                continue
            for j in pack_p:
                if int(experts[j]) in held_q:
                    continue
                peak = max(totals[p] - weights[j] + weights[i], totals[q] + weights[j])
                if best is None or peak < best[0]:
                    best = (peak, p, q, j)
    if best is None:
        return False
    _, p, q, j = best
    packs[p].remove(j)
    packs[q].append(j)
    packs[p].append(i)
    totals[p] += weights[i] - weights[j]
    totals[q] += weights[j]
    return True


def pack_ranks(experts: np.ndarray, weights: np.ndarray, ranks: int, slots: int) -> list[list[int]]:
    """Indices into ``experts`` per rank."""
    packs: list[list[int]] = [[] for _ in range(ranks)]
    totals = np.zeros(ranks)
    ids, local = np.unique(experts, return_inverse=True)
    holds = np.zeros((ranks, ids.size), dtype=bool)  # rank already holds the expert
    fill = np.zeros(ranks, dtype=np.int64)
    for i in np.argsort(-weights, kind="stable"):
        ok = (fill < slots) & ~holds[:, local[i]]
        if not ok.any() and _make_room(packs, totals, experts, weights, int(i), slots):
            holds[:] = False
            for r, pack in enumerate(packs):
                holds[r, local[pack]] = True
            fill = np.array([len(p) for p in packs])
            continue
        r = int(np.argmin(np.where(ok, totals, np.inf)))
        packs[r].append(int(i))
        totals[r] += weights[i]
        holds[r, local[i]] = True
        fill[r] += 1
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
