"""Greedy warm start and local search for the node-level model (no solver).

1. Greedy: copies in decreasing load; each goes to the node, among those with a free slot, no
   copy of the expert yet and load room, where it keeps the most co-activation weight (ties: the
   lightest node). If no node has load room, the lightest node with a slot takes it.
2. Repair and improve by swaps of two copies between nodes (slot counts stay equal): accept a
   swap when it lowers the total load excess over the caps, or keeps every cap and raises the
   kept weight. Moves into free slots are tried the same way. The search stops at a work cap
   (``max_units``, never the clock) when one is given: the assignment so far is complete, only
   less improved, and the same on every machine.
"""

from __future__ import annotations

import numpy as np

from placer.placement.nodemodel import NodeModel

#: work units of one local-search round: one per candidate swap scored, plus a fixed cost per
#: pair of nodes (the Python loop around the vectorised scoring); measured on the 2-core CI
#: machine: ~9e-8 s per unit and ~5e-5 s per node pair, i.e. a pair costs ~550 units
UNITS_PER_NODE_PAIR = 550
#: work units per second of budget (same measurement), to turn a time budget into a work cap
UNITS_PER_S = 1.1e7


def greedy_assign(model: NodeModel, max_units: float | None = None) -> np.ndarray:
    """``assign[e, n]``: whether expert e has a copy on node n."""
    num_e, num_n = model.num_experts, model.num_nodes
    assign = np.zeros((num_e, num_n), dtype=bool)
    if num_n == 1:
        assign[:, 0] = True
        return assign
    w = model.dense_weights()
    slots = model.node_slots.astype(np.int64).copy()
    load = np.zeros(num_n)
    cl = model.copy_load
    # replicated (hot) experts first, each copy on the lightest node without one
    for e in np.argsort(-cl, kind="stable"):
        if model.copies[e] < 2:
            continue
        for _ in range(int(model.copies[e])):
            n = int(np.argmin(np.where((slots > 0) & ~assign[e], load, np.inf)))
            assign[e, n] = True
            slots[n] -= 1
            load[n] += cl[e]
    # single-copy experts grow clusters: the (expert, node) pair with the most weight to the
    # node's copies goes next; with no weight left, the heaviest expert opens the emptiest node
    pending = model.copies == 1
    affinity = w @ assign
    while pending.any():
        room = (
            (slots > 0)[None, :]
            & (load[None, :] + cl[:, None] <= model.node_load_cap[None, :] + 1e-12)
            & pending[:, None]
        )
        score = np.where(room, affinity, -np.inf)
        e, n = np.unravel_index(int(np.argmax(score)), score.shape)
        if not np.isfinite(score[e, n]) or score[e, n] <= 0:
            e = int(np.argmax(np.where(pending, cl, -np.inf)))
            fits = (slots > 0) & (load + cl[e] <= model.node_load_cap + 1e-12)
            pool = fits if fits.any() else slots > 0
            n = int(np.argmax(np.where(pool, slots - 1e-9 * load, -np.inf)))
        assign[e, n] = True
        pending[e] = False
        slots[n] -= 1
        load[n] += cl[e]
        affinity[:, n] += w[:, e]
    return improve(model, assign, w, max_units=max_units)


def _excess(load: np.ndarray, cap: np.ndarray) -> float:
    return float(np.clip(load - cap, 0.0, None).sum())


def improve(
    model: NodeModel,
    assign: np.ndarray,
    w: np.ndarray | None = None,
    max_rounds: int = 300,
    max_units: float | None = None,
) -> np.ndarray:
    """Best-improvement swap/move local search on ``kept - mu * excess``; ``mu`` grows until the
    load caps hold (penalty method). ``max_units`` caps the work (:data:`UNITS_PER_NODE_PAIR`):
    unlike a deadline it stops at the same point on any machine, so the result is deterministic."""
    if model.num_nodes == 1:
        return assign
    w = model.dense_weights() if w is None else w
    assign = assign.copy()
    scale = max(float(w.sum()), 1e-12) / max(float(model.copy_load.sum()), 1e-12)
    mu = 4.0 * scale + 1.0
    budget = [float("inf") if max_units is None else float(max_units)]
    for _ in range(6):
        assign = _descend(model, assign, w, mu, max_rounds, budget)
        if budget[0] <= 0:
            break
        if _excess(model.copy_load @ assign, model.node_load_cap) <= 1e-12:
            break
        mu *= 8.0
    return assign


def _descend(
    model: NodeModel,
    assign: np.ndarray,
    w: np.ndarray,
    mu: float,
    max_rounds: int,
    budget: list[float],
) -> np.ndarray:
    cap = model.node_load_cap
    cl = model.copy_load
    nodes = model.num_nodes
    pairs = nodes * (nodes - 1) // 2
    for _ in range(max_rounds):
        copies = assign.sum(axis=0)
        cost = float((copies.sum() ** 2 - (copies**2).sum()) / 2 + copies.sum() + UNITS_PER_NODE_PAIR * pairs)
        if budget[0] < cost:
            budget[0] = 0.0
            break
        budget[0] -= cost
        load = cl @ assign
        affinity = w @ assign
        over = np.clip(load - cap, 0, None)
        best_score, best_action = 1e-12, None
        for a in range(nodes):
            ea = np.flatnonzero(assign[:, a])
            for b in range(a + 1, nodes):
                eb = np.flatnonzero(assign[:, b])
                if not ea.size or not eb.size:
                    continue
                ok = (~assign[ea, b])[:, None] & (~assign[eb, a])[None, :]
                gain = (
                    (affinity[ea, b] - affinity[ea, a])[:, None]
                    + (affinity[eb, a] - affinity[eb, b])[None, :]
                    - 2 * w[np.ix_(ea, eb)]
                )
                delta = cl[ea][:, None] - cl[eb][None, :]
                new_over = np.clip(load[a] - delta - cap[a], 0, None) + np.clip(load[b] + delta - cap[b], 0, None)
                score = np.where(ok, gain - mu * (new_over - over[a] - over[b]), -np.inf)
                i, j = np.unravel_index(int(np.argmax(score)), score.shape)
                if score[i, j] > best_score:
                    best_score, best_action = float(score[i, j]), (int(ea[i]), a, int(eb[j]), b)
        free = model.node_slots - assign.sum(axis=0)
        for b in np.flatnonzero(free > 0):
            for a in range(nodes):
                if a == b:
                    continue
                ea = np.flatnonzero(assign[:, a] & ~assign[:, b])
                if not ea.size:
                    continue
                gain = affinity[ea, b] - affinity[ea, a]
                new_over = np.clip(load[a] - cl[ea] - cap[a], 0, None) + np.clip(load[b] + cl[ea] - cap[b], 0, None)
                score = gain - mu * (new_over - over[a] - over[b])
                i = int(np.argmax(score))
                if score[i] > best_score:
                    best_score, best_action = float(score[i]), (int(ea[i]), a, None, int(b))
        if best_action is None:
            break
        e, a, f, b = best_action
        assign[e, a], assign[e, b] = False, True
        if f is not None:
            assign[f, b], assign[f, a] = False, True
    return assign
