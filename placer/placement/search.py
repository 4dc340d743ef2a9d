"""Node-level local search on the measured objective: copies per (expert, node), seeded by EPLB.

Why: the node model (:mod:`placer.placement.nodemodel`) scores pairs of experts and homes each
expert on one node (or spills it evenly), so it neither sees what a token really sends (the set of
nodes it touches) nor uses the local-first saving of an expert copied on several nodes. This
search works on the quantity the metrics measure (:mod:`placer.placement.metrics`), at node level:

* state: ``cnt[e, n]`` copies of expert e on node n (at most one per rank, at most the node's
  slots in all); every expert keeps a copy;
* traffic: node-deduplicated cross-node copies per token, exact over a token sample (the traces
  when known, else tokens drawn from the declared group-limited routing, :func:`model_traces`),
  local-first serving: a token from node a uses a's copies when a holds the expert, else all
  copies in proportion to ``cnt[e, n] / C_e``. Kept incrementally per (token, source, node) as a
  sum of ``log(1 - share)`` and a count of shares equal to 1;
* balance: a copy of e on node n carries ``p_e (rpn_n / R + R_without_e cnt[e, n] / (R C_e)) /
  cnt[e, n]`` (its node's own tokens, plus its part of the tokens of the ranks on nodes without
  e), the exact per-rank load of (T3) once the node's copies sit on distinct ranks; penalty = load
  of each node over its cap plus load of each copy over the rank cap;
* moves: one copy of an expert added to a node with a free slot, moved between nodes, replaced
  (a redundant copy dropped, another expert's copy added in its slot), or two copies swapped
  between nodes. Each sweep scores every move from per-expert exact deltas (sums of two for the
  two-expert moves), applies the best disjoint ones after an exact check and repeats until a sweep
  finds nothing or the work budget is spent (counted in work units, never the clock).

Objective: ``traffic + PENALTY_WEIGHT * penalty`` (balance first). Started from EPLB hierarchical's
map, the search keeps its traffic unless balance needs more; the rank packing comes after
(:func:`placer.placement.packing.pack_ranks`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from placer.placement.data import LayerPlacementProblem, Placement, copies_matrix

#: weight of the balance penalty (selections/token over the caps) against traffic (copies/token):
#: large, so that balance comes first and traffic decides among balanced moves
PENALTY_WEIGHT = 100.0
#: tokens drawn from the declared routing when only loads are known
MODEL_TOKENS = 2048
#: work units charged for the fixed cost of one per-expert step (Python and numpy call overhead)
UNITS_PER_CALL = 20_000
#: expert copies written into a slot by each kind of rank move (the bytes a migration moves)
MOVE_COPIES = {"swap": 2, "move": 1, "add": 1, "replace": 1}
#: at most this many (token, source node, node) terms are kept: the traces are cut to their first
#: ``TERM_CELLS / N^2`` tokens (4,096 up to 32 nodes, 1,024 at 64), which bounds memory and a sweep
TERM_CELLS = 1 << 22
#: at most this many destination nodes scored per expert (the least loaded ones and those with
#: free slots first), so that a sweep stays linear in the nodes at 32-64 nodes
MAX_TARGETS = 12


def model_traces(problem: LayerPlacementProblem, tokens: int = MODEL_TOKENS, seed: int = 0) -> np.ndarray:
    """``[tokens, k]`` expert ids: the traces when known, else a seeded sample of the declared
    routing: ``groups_per_token`` groups drawn without replacement in proportion to their loads,
    then ``k`` experts of those groups in proportion to theirs (Gumbel top-k, i.e. Plackett-Luce);
    without declared groups, ``k`` experts from all. Only traffic is scored on it; balance uses the
    loads themselves."""
    routing = problem.routing
    cap = max(256, TERM_CELLS // problem.num_nodes**2)
    if routing.traces is not None:
        return np.asarray(routing.traces, dtype=np.int64)[:cap]
    tokens = min(tokens, cap)
    loads = routing.loads
    k = int(round(loads.sum()))
    rng = np.random.default_rng(seed)
    log_p = np.log(np.maximum(loads, 1e-300))
    scores = log_p[None, :] + rng.gumbel(size=(tokens, loads.size))
    group, per_token = problem.expert_group, problem.groups_per_token
    if group is not None and per_token is not None and per_token < int(group.max()) + 1:
        num_groups = int(group.max()) + 1
        group_load = np.bincount(group, weights=loads, minlength=num_groups)
        g_scores = np.log(np.maximum(group_load, 1e-300))[None, :] + rng.gumbel(size=(tokens, num_groups))
        keep = np.argsort(-g_scores, axis=1)[:, :per_token]
        allowed = np.zeros((tokens, num_groups), dtype=bool)
        np.put_along_axis(allowed, keep, True, axis=1)
        scores = np.where(allowed[:, group], scores, -np.inf)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k].astype(np.int64)


def counts_from_placement(placement: Placement, problem: LayerPlacementProblem) -> np.ndarray:
    """``[E, N]`` distinct ranks of node n holding expert e (a second copy on one rank dropped)."""
    present = copies_matrix(placement, problem.num_experts) > 0
    out = np.zeros((problem.num_experts, problem.num_nodes), dtype=np.int64)
    for n in range(problem.num_nodes):
        out[:, n] = present[:, problem.rank_node == n].sum(axis=1)
    return out


class TrafficState:
    """Copies per (expert, node), the traffic terms per token and the load of one copy of each
    expert on each node; shared by the node-level and the rank-level search."""

    def __init__(
        self,
        problem: LayerPlacementProblem,
        counts: np.ndarray,
        traces: np.ndarray,
        like: TrafficState | None = None,
    ):
        """``like``: a state of the same problem and tokens whose terms are copied when its
        counts are ``counts`` (building them costs ``O(T k N^2)``)."""
        self.problem = problem
        self.loads = problem.routing.loads.astype(float)
        self.rank_node = problem.rank_node.astype(np.int64)
        self.rpn = problem.ranks_per_node.astype(np.int64)
        self.num_ranks = problem.num_ranks
        self.units = 0.0  # work done: elements of the delta and state arrays touched
        num_e, num_n = problem.num_experts, problem.num_nodes
        self.cnt = counts.astype(np.int64).copy()
        self.source_weight = self.rpn / self.num_ranks  # [N] share of tokens from node a
        if like is not None and np.array_equal(like.cnt, self.cnt):
            self.tokens, self.tokens_of = like.tokens, like.tokens_of
            self.lg, self.zc, self.token_touch = like.lg.copy(), like.zc.copy(), like.token_touch.copy()
            self.per_copy = like.per_copy.copy()
            self.units += self.lg.size
            return
        traces = np.asarray(traces, dtype=np.int64)
        self.tokens = traces.shape[0]
        onehot = np.zeros((self.tokens, num_e), dtype=bool)
        onehot[np.repeat(np.arange(self.tokens), traces.shape[1]), traces.reshape(-1)] = True
        self.tokens_of = [np.flatnonzero(onehot[:, e]) for e in range(num_e)]
        log_e, one_e = self._share_terms(self.cnt)  # [E, a, n]
        self.lg = np.zeros((self.tokens, num_n, num_n))
        self.zc = np.zeros((self.tokens, num_n, num_n), dtype=np.int16)
        for j in range(traces.shape[1]):  # the k experts of each token (distinct, as top-k gives)
            self.lg += log_e[traces[:, j]]
            self.zc += one_e[traces[:, j]]
        self.token_touch = self._touch(self.lg, self.zc)  # [T] remote nodes touched, source-weighted
        self.per_copy = self._per_copy(self.cnt)  # [E, N]
        self.units += self.lg.size * (traces.shape[1] + 2)

    # ----- pieces of the objective -------------------------------------------------------------
    @staticmethod
    def _shares(rows: np.ndarray) -> np.ndarray:
        """``[M, N(source), N(node)]`` remote shares of count rows ``[M, N]`` (a source holding
        the expert serves it itself; the others split it over the copies)."""
        frac = rows / np.maximum(rows.sum(axis=1), 1)[:, None]
        return np.where(rows[:, :, None] > 0, 0.0, frac[:, None, :])

    def _share_terms(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log(1 - share)`` where share < 1, and the indicator of share == 1."""
        share = self._shares(rows)
        one = share >= 1.0 - 1e-12
        return np.where(one, 0.0, np.log1p(-np.minimum(share, 1.0 - 1e-12))), one.astype(np.int16)

    def _touch(self, lg: np.ndarray, zc: np.ndarray) -> np.ndarray:
        touched = 1.0 - np.where(zc == 0, np.exp(lg), 0.0)  # [..., a, n]
        return np.einsum("...an,a->...", touched, self.source_weight)

    def _per_copy(self, rows: np.ndarray, experts: np.ndarray | None = None) -> np.ndarray:
        """``[M, N]`` load of one copy of each expert on each node holding it, (T3) local-first."""
        p = self.loads if experts is None else self.loads[experts]
        present = rows > 0
        without = (~present * self.rpn[None, :]).sum(axis=1)  # ranks on nodes without the expert
        total = np.maximum(rows.sum(axis=1), 1)
        node = p[:, None] * (self.rpn[None, :] + without[:, None] * rows / total[:, None]) / self.num_ranks
        return np.divide(node, rows, out=np.zeros_like(node), where=present)

    @property
    def traffic(self) -> float:
        """Node-deduplicated cross-node copies per token on the search's tokens."""
        return float(self.token_touch.sum() / self.tokens)

    # ----- per-expert variants -----------------------------------------------------------------
    def traffic_deltas(self, e: int, rows: np.ndarray) -> np.ndarray:
        """[M] exact change of traffic if expert e's counts became ``rows[m]`` (others fixed).

        Only e's factor ``1 - share[a, n]`` changes in each token's miss product, and it does
        not depend on the token, so with ``S[a, n]`` = the sum over e's tokens of the product
        without e, every variant costs ``O(N^2)`` after one ``O(|tokens of e| N^2)`` pass."""
        idx = self.tokens_of[e]
        self.units += UNITS_PER_CALL
        if idx.size == 0:
            return np.zeros(rows.shape[0])
        old_log, old_one = self._share_terms(self.cnt[e][None, :])
        base = np.where(self.zc[idx] - old_one[0] == 0, np.exp(self.lg[idx] - old_log[0]), 0.0)
        miss_sum = base.sum(axis=0)  # [a, n]
        keep = 1.0 - self._shares(rows)  # [M, a, n]
        self.units += base.size + keep.size
        new = idx.size * self.source_weight.sum() * self.cnt.shape[1]
        new = new - np.einsum("man,an,a->m", keep, miss_sum, self.source_weight)
        return (new - self.token_touch[idx].sum()) / self.tokens

    def _set_counts(self, e: int, row: np.ndarray) -> None:
        idx = self.tokens_of[e]
        old_log, old_one = self._share_terms(self.cnt[e][None, :])
        new_log, new_one = self._share_terms(row[None, :])
        self.units += UNITS_PER_CALL + 4 * idx.size * self.cnt.shape[1] ** 2
        if idx.size:
            self.lg[idx] += new_log[0] - old_log[0]
            self.zc[idx] += new_one[0] - old_one[0]
            self.token_touch[idx] = self._touch(self.lg[idx], self.zc[idx])
        self.cnt[e] = row
        self.per_copy[e] = self._per_copy(row[None, :], np.array([e]))[0]


class RankSearch(TrafficState):
    """Rank-level search: the experts in each rank's slots; penalty = load of each rank over
    ``rank_cap``; moves: swap two copies, move a copy or add one into a free slot, replace a
    redundant copy by another expert's."""

    def __init__(
        self,
        problem: LayerPlacementProblem,
        placement: Placement,
        traces: np.ndarray,
        rank_cap: float,
        like: TrafficState | None = None,
    ):
        self.items = np.full((problem.num_ranks, problem.slots_per_rank), -1, dtype=np.int64)  # -1: empty
        for r, experts in enumerate(placement):
            distinct = sorted(set(experts))
            self.items[r, : len(distinct)] = distinct
        counts = np.zeros((problem.num_experts, problem.num_nodes), dtype=np.int64)
        held = self.items >= 0
        node = np.broadcast_to(problem.rank_node[:, None], self.items.shape)
        np.add.at(counts, (self.items[held], node[held]), 1)
        super().__init__(problem, counts, traces, like)
        self.rank_cap = rank_cap
        self.rank_load = self._rank_loads()
        self.moves_left: int | None = None  # migration budget: copies that may still change slot
        self.moved = 0  # copies moved so far (a swap moves two, a move, add or replace one)

    def _rank_loads(self) -> np.ndarray:
        loads = self.per_copy[np.maximum(self.items, 0), self.rank_node[:, None]]
        return np.where(self.items >= 0, loads, 0.0).sum(axis=1)

    def penalty(self) -> float:
        return float(np.clip(self.rank_load - self.rank_cap, 0.0, None).sum())

    def objective(self) -> float:
        return self.traffic + PENALTY_WEIGHT * self.penalty()

    def max_over_mean(self) -> float:
        return float(self.rank_load.max() / self.rank_load.mean())

    # ----- moves -------------------------------------------------------------------------------
    def _targets(self) -> np.ndarray:
        """Destination nodes scored this sweep: every node up to ``MAX_TARGETS``, else those with
        free slots first, then the least loaded."""
        num_n = self.cnt.shape[1]
        if num_n <= MAX_TARGETS:
            return np.arange(num_n)
        free = np.bincount(self.rank_node, weights=(self.items < 0).sum(axis=1), minlength=num_n)
        node_load = np.bincount(self.rank_node, weights=self.rank_load, minlength=num_n) / self.rpn
        order = np.lexsort((node_load, ~(free > 0)))
        return np.sort(order[:MAX_TARGETS])

    def _tables(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Exact single-expert variants: traffic change and the new per-copy load at the
        destination, for one copy moved a -> b, added at b, dropped at a."""
        num_e, num_n = self.cnt.shape
        mv_dt = np.full((num_e, num_n, num_n), np.inf)
        mv_pc = np.zeros((num_e, num_n, num_n))
        add_dt = np.full((num_e, num_n), np.inf)
        add_pc = np.zeros((num_e, num_n))
        drop_dt = np.full((num_e, num_n), np.inf)
        drop_pen = np.zeros((num_e, num_n))  # penalty added on the expert's other copies
        over = self._over(self.rank_load)
        for e in range(num_e):
            row = self.cnt[e]
            held = np.flatnonzero(row > 0)
            room = targets[row[targets] < self.rpn[targets]]
            kinds = [(0, -1, int(b)) for b in room]
            kinds += [(1, int(a), -1) for a in held if row.sum() >= 2]
            kinds += [(2, int(a), int(b)) for a in held for b in room if b != a]
            mv_dt[e, held, held] = 0.0
            mv_pc[e, held, held] = self.per_copy[e, held]
            if not kinds:
                continue
            rows = np.repeat(row[None, :], len(kinds), axis=0)
            kind = np.array(kinds)
            sel = kind[:, 0] != 0
            rows[np.flatnonzero(sel), kind[sel, 1]] -= 1
            sel = kind[:, 0] != 1
            rows[np.flatnonzero(sel), kind[sel, 2]] += 1
            dt = self.traffic_deltas(e, rows)
            pc = self._per_copy(rows, np.full(len(rows), e))
            for m, (k, a, b) in enumerate(kinds):
                if k == 0:
                    add_dt[e, b], add_pc[e, b] = dt[m], pc[m, b]
                elif k == 1:
                    drop_dt[e, a] = dt[m]
                    ranks, _ = np.nonzero(self.items == e)
                    rise = pc[m, self.rank_node[ranks]] - self.per_copy[e, self.rank_node[ranks]]
                    rise_over = self._over(self.rank_load[ranks] + rise) - over[ranks]
                    # one copy on node a goes: the others there take its share (counted once)
                    drop_pen[e, a] = rise_over.sum() - rise_over[self.rank_node[ranks] == a].max(initial=0.0)
                else:
                    mv_dt[e, a, b], mv_pc[e, a, b] = dt[m], pc[m, b]
        return {
            "mv_dt": mv_dt,
            "mv_pc": mv_pc,
            "add_dt": add_dt,
            "add_pc": add_pc,
            "drop_dt": drop_dt,
            "drop_pen": drop_pen,
        }

    def _over(self, load: np.ndarray) -> np.ndarray:
        return np.clip(load - self.rank_cap, 0.0, None)

    def sweep(self, max_tries: int = 256, per_kind: int = 256) -> int:
        """Score every move from the exact single-expert tables, apply the best improving ones on
        distinct experts and ranks (each checked exactly); the number applied."""
        t = self._tables(self._targets())
        filled = np.argwhere(self.items >= 0)  # copies: (rank, slot)
        c_rank, c_slot = filled[:, 0], filled[:, 1]
        c_exp = self.items[c_rank, c_slot]
        c_node = self.rank_node[c_rank]
        c_pc = self.per_copy[c_exp, c_node]
        load = self.rank_load
        over = self._over(load)
        holds = np.zeros((self.num_ranks, self.cnt.shape[0]), dtype=bool)
        holds[c_rank, c_exp] = True
        moves: list[tuple[float, str, int, int]] = []
        # swap copies i and j (ranks ri != rj): e_i -> rj, e_j -> ri
        dt = t["mv_dt"][c_exp[:, None], c_node[:, None], c_node[None, :]]
        dt = dt + dt.T
        new_i = load[c_rank][:, None] - c_pc[:, None] + t["mv_pc"][c_exp[None, :], c_node[None, :], c_node[:, None]]
        pen = self._over(new_i) - over[c_rank][:, None]
        score = dt + PENALTY_WEIGHT * (pen + pen.T)
        bad = (c_rank[:, None] == c_rank[None, :]) | holds[c_rank][:, c_exp] | holds[c_rank][:, c_exp].T
        score[bad | (c_exp[:, None] == c_exp[None, :])] = np.inf
        score[np.tril_indices_from(score)] = np.inf
        self.units += score.size * 8
        moves += self._best(score, "swap", per_kind)
        free = np.argwhere(self.items < 0)
        if free.size:
            f_rank = free[:, 0]
            f_node = self.rank_node[f_rank]
            # relocate copy i into a free slot of rank r
            dt = t["mv_dt"][c_exp[:, None], c_node[:, None], f_node[None, :]]
            gain = self._over(load[c_rank] - c_pc) - over[c_rank]
            arrive = load[f_rank][None, :] + t["mv_pc"][c_exp[:, None], c_node[:, None], f_node[None, :]]
            score = dt + PENALTY_WEIGHT * (gain[:, None] + self._over(arrive) - over[f_rank][None, :])
            score[holds[f_rank][:, c_exp].T | (c_rank[:, None] == f_rank[None, :])] = np.inf
            moves += self._best(score, "move", per_kind, free)
            # add a copy of expert e into a free slot of rank r
            dt = t["add_dt"][:, f_node]
            arrive = load[f_rank][None, :] + t["add_pc"][:, f_node]
            score = dt + PENALTY_WEIGHT * (self._over(arrive) - over[f_rank][None, :])
            score[holds[f_rank].T] = np.inf
            moves += self._best(score, "add", per_kind, free)
        # replace: drop copy i (its expert keeps another), add expert e in its slot
        dt = t["drop_dt"][c_exp, c_node][:, None] + t["add_dt"][:, c_node].T
        arrive = load[c_rank][:, None] - c_pc[:, None] + t["add_pc"][:, c_node].T
        rise = t["drop_pen"][c_exp, c_node][:, None]
        score = dt + PENALTY_WEIGHT * (self._over(arrive) - over[c_rank][:, None] + rise)
        score[holds[c_rank]] = np.inf
        moves += self._best(score, "replace", per_kind)
        moves.sort(key=lambda m: m[0])
        self._copies = (c_rank, c_slot, c_exp)
        self._free = free
        applied, tries, used_e, used_r = 0, {}, set(), set()
        for move in moves:
            if move[0] >= -1e-12:
                break
            ranks, experts = self._touched(move)
            if ranks & used_r or experts & used_e or tries.get(move[1], 0) >= max_tries // 4:
                continue
            cost = MOVE_COPIES[move[1]]
            if self.moves_left is not None and cost > self.moves_left:
                continue
            tries[move[1]] = tries.get(move[1], 0) + 1
            if self._try(move):
                self.moved += cost
                if self.moves_left is not None:
                    self.moves_left -= cost
                applied += 1
                used_r |= ranks
                used_e |= experts
        return applied

    @staticmethod
    def _best(score: np.ndarray, kind: str, count: int, free: np.ndarray | None = None) -> list:  # type: ignore[type-arg]
        flat = score.ravel()
        count = min(count, flat.size)
        if count == 0:
            return []
        top = np.argpartition(flat, count - 1)[:count]
        out = []
        for k in top:
            if flat[k] < -1e-12:
                i, j = np.unravel_index(int(k), score.shape)
                out.append((float(flat[k]), kind, int(i), int(j)))
        return out

    def _touched(self, move) -> tuple[set[int], set[int]]:  # type: ignore[no-untyped-def]
        _, kind, i, j = move
        c_rank, _, c_exp = self._copies
        if kind == "swap":
            return {int(c_rank[i]), int(c_rank[j])}, {int(c_exp[i]), int(c_exp[j])}
        if kind == "move":
            return {int(c_rank[i]), int(self._free[j, 0])}, {int(c_exp[i])}
        if kind == "add":
            return {int(self._free[j, 0])}, {i}
        return {int(c_rank[i])}, {int(c_exp[i]), j}

    def _place(self, rank: int, slot: int, expert: int) -> None:
        """Put ``expert`` (or -1: nothing) in a slot, keeping the counts and traffic terms."""
        node = int(self.rank_node[rank])
        old = int(self.items[rank, slot])
        if old >= 0:
            row = self.cnt[old].copy()
            row[node] -= 1
            self._set_counts(old, row)
        self.items[rank, slot] = expert
        if expert >= 0:
            row = self.cnt[expert].copy()
            row[node] += 1
            self._set_counts(expert, row)

    def _try(self, move) -> bool:  # type: ignore[no-untyped-def]
        """Apply ``move`` when it lowers the objective exactly; else put everything back."""
        before = self.objective()
        _, kind, i, j = move
        c_rank, c_slot, c_exp = self._copies
        if kind == "swap":
            changes = [(c_rank[i], c_slot[i], c_exp[j]), (c_rank[j], c_slot[j], c_exp[i])]
        elif kind == "move":
            changes = [(c_rank[i], c_slot[i], -1), (self._free[j, 0], self._free[j, 1], c_exp[i])]
        elif kind == "add":
            changes = [(self._free[j, 0], self._free[j, 1], i)]
        else:
            changes = [(c_rank[i], c_slot[i], j)]
        undo = [(int(r), int(s), int(self.items[r, s])) for r, s, _ in changes]
        for r, s, e in changes:
            self._place(int(r), int(s), int(e))
        if (self.cnt.sum(axis=1) >= 1).all():
            self.rank_load = self._rank_loads()
            if self.objective() < before - 1e-12:
                return True
        for r, s, e in reversed(undo):
            self._place(r, s, e)
        self.rank_load = self._rank_loads()
        return False

    def run(self, max_units: float | None, stop: Callable[[], bool] | None = None) -> int:
        """Sweeps until none improves, the work cap is spent or ``stop`` is set; sweeps done."""
        sweeps = 0
        while max_units is None or self.units < max_units:
            if stop is not None and stop():
                break
            sweeps += 1
            if self.sweep() == 0:
                break
        return sweeps

    def placement(self) -> Placement:
        return tuple(tuple(sorted(int(e) for e in row if e >= 0)) for row in self.items)
