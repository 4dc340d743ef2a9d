"""Node-level local search (first stage of :func:`placer.placement.improve.search_layer`).

State: copies per (expert, node); a node's copies are packed onto its ranks afterwards
(:func:`placer.placement.packing.pack_ranks`). Working on nodes rather than ranks lets one move
change which nodes serve an expert without first making room on a particular rank, which is where
the traffic is decided; the rank-level search (:class:`placer.placement.search.RankSearch`) then
repairs what the packing leaves over the cap.

Penalty [selections/token]: each node's load over its cap, plus each copy's load over its cap,
a rank's cap less the lightest copies that must share its rank (a full node puts ``S - 1`` others
beside it): a node under its cap can still pack badly, one hot copy beside four cold ones.
Moves: one copy added to a node with a free slot, moved between nodes, replacing a redundant copy
of another expert, or two copies swapped between nodes; scored from exact single-expert deltas
(sums of two for the two-expert moves), each applied only after an exact check.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from placer.placement.data import LayerPlacementProblem, Placement
from placer.placement.packing import pack_ranks
from placer.placement.search import MAX_TARGETS, PENALTY_WEIGHT, TrafficState


class NodeSearch(TrafficState):
    def __init__(
        self,
        problem: LayerPlacementProblem,
        counts: np.ndarray,
        traces: np.ndarray,
        node_cap: np.ndarray,
        rank_cap: float,
        like: TrafficState | None = None,
    ):
        super().__init__(problem, counts, traces, like)
        self.node_slots = self.rpn * problem.slots_per_rank
        self.node_cap = node_cap
        self.rank_cap = rank_cap
        self.contrib = self.per_copy * self.cnt  # [E, N] load of e on node n
        self.node_load = self.contrib.sum(axis=0)
        self.copy_cap = np.full(self.cnt.shape[1], rank_cap)
        self.refresh_copy_caps()

    def refresh_copy_caps(self) -> None:
        """A copy's cap on node n: the rank cap less the lightest copies that must share its rank."""
        slots = self.problem.slots_per_rank
        caps = np.full(self.cnt.shape[1], self.rank_cap)
        for n in range(self.cnt.shape[1]):
            copies = int(self.cnt[:, n].sum())
            beside = max(0, copies - 1 - (int(self.rpn[n]) - 1) * slots)
            if beside:
                held = np.flatnonzero(self.cnt[:, n])
                caps[n] -= np.sort(np.repeat(self.per_copy[held, n], self.cnt[held, n]))[:beside].sum()
        self.copy_cap = caps

    def _copy_penalty(self, per_copy: np.ndarray) -> np.ndarray:
        return np.clip(per_copy - self.copy_cap, 0.0, None).sum(axis=-1)

    def node_penalty(self, node_load: np.ndarray) -> np.ndarray:
        return np.clip(node_load - self.node_cap, 0.0, None).sum(axis=-1)

    def penalty(self) -> float:
        per_copy = np.where(self.cnt > 0, self.per_copy, 0.0)
        return float(self.node_penalty(self.node_load) + self._copy_penalty(per_copy).sum())

    def objective(self) -> float:
        return self.traffic + PENALTY_WEIGHT * self.penalty()

    def set_counts(self, e: int, row: np.ndarray) -> None:
        self._set_counts(e, row)
        new = self.per_copy[e] * row
        self.node_load += new - self.contrib[e]
        self.contrib[e] = new

    def _targets(self) -> np.ndarray:
        num_n = self.cnt.shape[1]
        if num_n <= MAX_TARGETS:
            return np.arange(num_n)
        free = self.node_slots - self.cnt.sum(axis=0)
        order = np.lexsort((self.node_load / self.node_cap, ~(free > 0)))
        return np.sort(order[:MAX_TARGETS])

    def sweep(self, max_tries: int = 256) -> int:
        """Score every move, apply the best improving ones on distinct experts (each checked
        exactly); the number applied."""
        num_e, num_n = self.cnt.shape
        free = self.node_slots - self.cnt.sum(axis=0)
        targets = self._targets()
        base_pen = float(self.node_penalty(self.node_load))
        copy_pen = self._copy_penalty(np.where(self.cnt > 0, self.per_copy, 0.0))  # [E]
        add = {
            "dt": np.full((num_e, num_n), np.inf),
            "dl": np.zeros((num_e, num_n, num_n)),
            "dc": np.zeros((num_e, num_n)),
        }
        drop = {
            "dt": np.full((num_e, num_n), np.inf),
            "dl": np.zeros((num_e, num_n, num_n)),
            "dc": np.zeros((num_e, num_n)),
        }
        moves: list[tuple[float, int, int, int, int, int]] = []  # (score, e, from, to, kind, f)
        movers: dict[tuple[int, int], list[tuple[int, float, np.ndarray]]] = {}
        for e in range(num_e):
            row = self.cnt[e]
            held = np.flatnonzero(row > 0)
            room = targets[row[targets] < self.rpn[targets]]
            kinds = [(0, -1, int(b)) for b in room]
            kinds += [(1, int(a), -1) for a in held if row.sum() >= 2]
            kinds += [(2, int(a), int(b)) for a in held for b in room if b != a]
            if not kinds:
                continue
            kind = np.array(kinds)
            rows = np.repeat(row[None, :], len(kinds), axis=0)
            sel = kind[:, 0] != 0
            rows[np.flatnonzero(sel), kind[sel, 1]] -= 1
            sel = kind[:, 0] != 1
            rows[np.flatnonzero(sel), kind[sel, 2]] += 1
            dt = self.traffic_deltas(e, rows)
            per_copy = self._per_copy(rows, np.full(len(rows), e))
            dcopy = self._copy_penalty(np.where(rows > 0, per_copy, 0.0)) - copy_pen[e]
            dload = per_copy * rows - self.contrib[e][None, :]
            pen = self.node_penalty(self.node_load[None, :] + dload) - base_pen + dcopy
            score = dt + PENALTY_WEIGHT * pen
            for m, (k, a, b) in enumerate(kinds):
                if k == 0:
                    add["dt"][e, b], add["dl"][e, b], add["dc"][e, b] = dt[m], dload[m], dcopy[m]
                    if free[b] > 0:
                        moves.append((float(score[m]), e, -1, b, 0, -1))
                elif k == 1:
                    drop["dt"][e, a], drop["dl"][e, a], drop["dc"][e, a] = dt[m], dload[m], dcopy[m]
                else:
                    if free[b] > 0:
                        moves.append((float(score[m]), e, a, b, 2, -1))
                    movers.setdefault((a, b), []).append((e, float(dt[m] + PENALTY_WEIGHT * dcopy[m]), dload[m]))
        moves += self._replace_moves(add, drop, base_pen)
        moves += self._swap_moves(movers, base_pen)
        moves.sort(key=lambda m: m[0])
        applied, tries, used = 0, 0, set()
        for move in moves:
            if move[0] >= -1e-12 or tries >= max_tries:
                break
            experts = {move[1], move[5]} - {-1}
            if experts & used:
                continue
            tries += 1
            if self._try(move):
                applied += 1
                used |= experts
        return applied

    def _replace_moves(self, add, drop, base_pen):  # type: ignore[no-untyped-def]
        """On node b, drop a redundant copy of f and add a copy of e (the best few per node)."""
        out = []
        for b in range(self.cnt.shape[1]):
            fs = np.flatnonzero(np.isfinite(drop["dt"][:, b]))
            es = np.flatnonzero(np.isfinite(add["dt"][:, b]))
            if not fs.size or not es.size:
                continue
            dl = drop["dl"][fs, b][:, None, :] + add["dl"][es, b][None, :, :]
            pen = (
                self.node_penalty(self.node_load + dl)
                - base_pen
                + drop["dc"][fs, b][:, None]
                + add["dc"][es, b][None, :]
            )
            score = drop["dt"][fs, b][:, None] + add["dt"][es, b][None, :] + PENALTY_WEIGHT * pen
            score[fs[:, None] == es[None, :]] = np.inf
            self.units += dl.size
            for flat in np.argsort(score, axis=None)[:16]:
                i, j = np.unravel_index(flat, score.shape)
                if score[i, j] < 0:
                    out.append((float(score[i, j]), int(es[j]), -1, b, 3, int(fs[i])))
        return out

    def _swap_moves(self, movers, base_pen):  # type: ignore[no-untyped-def]
        """A copy of e from a to b and one of f from b to a; for node pairs with an overloaded
        node when there is one (balance first), else for every pair."""
        out = []
        over = self.node_load > self.node_cap + 1e-12
        for (a, b), forward in movers.items():
            if a > b or (over.any() and not (over[a] or over[b])):
                continue
            backward = movers.get((b, a), [])
            if not backward:
                continue
            fe = np.array([m[0] for m in forward])
            be = np.array([m[0] for m in backward])
            dl = np.array([m[2] for m in forward])[:, None, :] + np.array([m[2] for m in backward])[None, :, :]
            pen = self.node_penalty(self.node_load + dl) - base_pen
            score = np.array([m[1] for m in forward])[:, None] + np.array([m[1] for m in backward])[None, :]
            score = score + PENALTY_WEIGHT * pen
            score[fe[:, None] == be[None, :]] = np.inf
            self.units += dl.size
            for flat in np.argsort(score, axis=None)[:16]:
                i, j = np.unravel_index(flat, score.shape)
                if score[i, j] < 0:
                    out.append((float(score[i, j]), int(fe[i]), a, b, 4, int(be[j])))
        return out

    def _try(self, move) -> bool:  # type: ignore[no-untyped-def]
        """Apply ``move`` when it lowers the objective exactly; else leave the state as it was."""
        before = self.objective()
        _, e, a, b, kind, f = move
        old = {e: self.cnt[e].copy()}
        row = self.cnt[e].copy()
        row[b] += 1
        if kind in (2, 4):
            row[a] -= 1
        if kind in (3, 4):
            old[f] = self.cnt[f].copy()
            frow = self.cnt[f].copy()
            frow[b] -= 1
            if kind == 4:
                frow[a] += 1
            self.set_counts(f, frow)
        self.set_counts(e, row)
        fits = (self.cnt[:, b].sum() <= self.node_slots[b]) and (self.cnt[:, b] <= self.rpn[b]).all()
        if fits and self.objective() < before - 1e-12:
            return True
        for x, r in old.items():
            self.set_counts(x, r)
        return False

    def run(self, max_units: float | None, stop: Callable[[], bool] | None = None) -> int:
        """Sweeps until none improves, the work cap is spent or ``stop`` is set; sweeps done."""
        sweeps = 0
        while max_units is None or self.units < max_units:
            if stop is not None and stop():
                break
            sweeps += 1
            self.refresh_copy_caps()
            if self.sweep() == 0:
                break
        return sweeps

    def placement(self) -> Placement:
        """Each node's copies packed onto its ranks (LPT + swaps, one copy of an expert per rank)."""
        problem = self.problem
        ranks: dict[int, tuple[int, ...]] = {}
        for n in range(problem.num_nodes):
            node_ranks = [int(r) for r in np.flatnonzero(problem.rank_node == n)]
            held = np.flatnonzero(self.cnt[:, n])
            experts = np.repeat(held, self.cnt[held, n])
            weights = np.repeat(self.per_copy[held, n], self.cnt[held, n])
            packs = pack_ranks(experts, weights, len(node_ranks), problem.slots_per_rank)
            for rank, pack in zip(node_ranks, packs, strict=True):
                ranks[rank] = tuple(sorted(int(experts[i]) for i in pack))
        return tuple(ranks[r] for r in range(problem.num_ranks))
