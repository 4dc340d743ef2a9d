"""Disaggregated candidates for ``placer solve``: every pair of a prefill pool and a decode pool.

Each pool is a configuration the strategy formulation admits on its own (degrees and replicas under
the GPU cap, rules (R1)-(R7), the memory presolve (F9)), with the partition the serving solve gives
it (:func:`placer.serving_solve.partition_for`). A pair is priced by the disaggregated serving
model (:mod:`placer.serving_disagg`) with the pools packed on the fabric (prefill from node 0,
decode on the next node with room, one node when both fit: the placement that keeps the KV path
shortest, NVLink where possible). Pairs are scored in increasing total GPU count, so the
fewest-GPUs objective stops after the first count with a feasible pair; the feasible pairs join
the aggregated candidates in one selection (``docs/formulation.md``, "Disaggregated serving").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from placer.costmodel.kvtransfer import kv_path
from placer.formulation.terms import primary_term
from placer.problem import Problem
from placer.schema import DisaggregatedPlan, Plan, Pool
from placer.serving_disagg import (
    DecodePool,
    DisaggEvaluation,
    DisaggModel,
    OneReplicaScreen,
    PrefillPool,
    assemble,
    pool_nodes,
)
from placer.stopping import StopToken


@dataclass(frozen=True)
class PairScored:
    """One pair of pools judged by the disaggregated serving model (the interface of
    :class:`placer.serving_solve.Scored`)."""

    prefill_index: int
    decode_index: int
    plan: DisaggregatedPlan
    evaluation: DisaggEvaluation
    terms: dict[str, float]
    concurrency: int | None = None

    @property
    def feasible(self) -> bool:
        return self.evaluation.feasible and all(math.isfinite(v) for v in self.terms.values())

    def broken(self) -> list[str]:
        return [c.name for c in self.evaluation.slo + self.evaluation.rules if not c.ok]


def disaggregated_plan(problem: Problem, prefill: Plan, decode: Plan) -> DisaggregatedPlan:
    """The document of a pair of pool plans (nodes left to the packed default)."""
    return DisaggregatedPlan(
        name=f"{problem.name}-disagg-{prefill.parallelism.replicas}p{decode.parallelism.replicas}d",
        instance=problem.name,
        hardware=problem.hardware.name,
        gpus=prefill.gpus + decode.gpus,
        prefill=Pool(gpus=prefill.gpus, parallelism=prefill.parallelism, stages=prefill.stages),
        decode=Pool(gpus=decode.gpus, parallelism=decode.parallelism, stages=decode.stages),
    )


@dataclass(frozen=True)
class PairScoring:
    """Every pair scored (or as many as the deadline allowed)."""

    feasible: list[PairScored]
    scored: int
    pools_prefill: int
    pools_decode: int
    complete: bool
    closest: PairScored | None
    next_gpus: int | None  # total GPUs of the first pair not scored (stopped early)
    pruned: int = 0  # pairs whose bound could not reach the incumbent (never scored, proven no better)


def _pool_ok(evaluation: object) -> bool:
    """A pool passes its own memory check and rules under one request per attention-DP rank."""
    checks = [c for c in evaluation.slo if c.name == "memory_per_gpu"] + list(evaluation.rules)  # type: ignore[attr-defined]
    return all(c.ok for c in checks)


def _closed_loop_n(problem: Problem) -> object:
    """Requests in flight per decode replica as the serving model takes them, by replica count; with
    the concurrency left to the solve, the offline batch a decoder sees (``max(1, b)``), which is at
    most the closed loop's ``1 + b (1 - 1/n)`` for every ``n >= b``, so capacities stay upper bounds."""
    w = problem.workload
    if w.kind == "concurrency" and problem.objective.concurrency == "auto":
        return lambda replicas: None
    if w.kind == "concurrency":
        return lambda replicas: w.concurrency / replicas
    if w.kind == "rate":
        return lambda replicas: math.inf
    return lambda replicas: None


class Pools:
    """The pool models of every configuration, built when first asked for, with the necessary
    conditions a pool must meet whatever it is paired with (its memory and rules; for kind ``rate``
    also TTFT without the transfer and capacity for the prefill pool, TPOT and capacity with no KV
    in transfer for the decode pool). A pool failing them makes every pair with it infeasible, so
    skipping those pairs is exact."""

    def __init__(self, problem: Problem, gpus: dict[int, int], plan_for: Callable[[int], Plan | None]) -> None:
        self.problem = problem
        #: GPUs of every configuration a pool may take
        self.gpus = gpus
        self._plan_for = plan_for
        self._plans: dict[int, Plan | None] = {}
        self._prefill: dict[int, PrefillPool | None] = {}
        self._decode: dict[int, DecodePool | None] = {}
        w, slo = problem.workload, problem.slo
        self.rate = w.serving_rate_rps if w.kind == "rate" else None
        self.slo = slo
        self.screen = OneReplicaScreen(problem)

    def plan(self, index: int) -> Plan | None:
        """The configuration's pool plan (its partition), ``None`` when no partition fits."""
        if index not in self._plans:
            self._plans[index] = self._plan_for(index)
        return self._plans[index]

    def prefill(self, index: int) -> PrefillPool | None:
        if index not in self._prefill:
            plan = self.plan(index)
            if plan is None:
                self._prefill[index] = None
                return None
            if self.rate is not None and not self.screen.prefill_may_meet(
                plan, self.rate, self.slo.ttft_s, self.slo.ttft_percentile
            ):
                self._prefill[index] = None
                return None
            pool = PrefillPool(self.problem, plan)
            ok = _pool_ok(pool.evaluation)
            if ok and self.rate is not None:
                ok = pool.capacity_rps > self.rate
                if ok and self.slo.ttft_s is not None:
                    ok = pool.ttft_floor_s(self.rate, self.slo.ttft_percentile) <= self.slo.ttft_s * (1 + 1e-9)
            self._prefill[index] = pool if ok else None
        return self._prefill[index]

    def decode(self, index: int) -> DecodePool | None:
        if index not in self._decode:
            plan = self.plan(index)
            if plan is None:
                self._decode[index] = None
                return None
            if self.rate is not None and not self.screen.decode_may_serve(plan, self.rate, self.slo.tpot_ms):
                self._decode[index] = None
                return None
            pool = DecodePool(self.problem, plan)
            ok = _pool_ok(pool.evaluation) and pool.timer.kv_capacity_tokens > 0
            if ok and self.rate is not None:
                tpot = pool.tpot_at_rate_s(self.rate)
                ok = math.isfinite(tpot) and (self.slo.tpot_ms is None or tpot * 1e3 <= self.slo.tpot_ms * (1 + 1e-9))
            self._decode[index] = pool if ok else None
        return self._decode[index]

    @property
    def built(self) -> tuple[int, int, int, int]:
        """(prefill pools built, of them admitted, decode pools built, admitted)."""
        pre = [p for p in self._prefill.values()]
        dec = [d for d in self._decode.values()]
        return len(pre), sum(p is not None for p in pre), len(dec), sum(d is not None for d in dec)


def score_pairs(
    problem: Problem,
    gpus: dict[int, int],
    plan_for: Callable[[int], Plan | None],
    terms: list[str],
    serving_terms: object,
    token: StopToken,
    gpu_cap: int,
    work_limit: float | None = None,
    incumbent: float | None = None,
    meets: Callable[[Problem, object], bool] | None = None,
) -> PairScoring:
    """Score the pairs of pools with ``prefill.gpus + decode.gpus <= gpu_cap`` that can matter.

    Fewest GPUs (and throughput per GPU under a ``rate``, which is the demand over the GPUs): in
    increasing total GPUs, stopping after the first total with a feasible pair; pools are built
    lazily, only up to the sizes a total still needs. Otherwise best bound first, a pair's output
    tokens/s/GPU being at most its smaller pool capacity x OSL / GPUs, every pair whose bound is
    worse than ``incumbent`` or the best pair so far skipped (exact pruning, ties kept)."""
    pools = Pools(problem, gpus, plan_for)
    primary = primary_term(problem.objective)
    by_total = primary == "min_gpus" or (primary == "max_throughput_per_gpu" and problem.workload.kind == "rate")
    state = _Scan(problem, pools, terms, serving_terms, token, work_limit, meets)
    if by_total:
        state.by_total(gpu_cap)
    else:
        state.by_bound(gpu_cap, incumbent, primary)
    built = pools.built
    return PairScoring(
        state.feasible, state.count, built[1], built[3], state.complete, state.closest, state.next_gpus, state.pruned
    )


class _Scan:
    """The running state of one scan over pairs."""

    def __init__(
        self,
        problem: Problem,
        pools: Pools,
        terms: list[str],
        serving_terms: object,
        token: StopToken,
        work_limit: float | None,
        meets: Callable[[Problem, object], bool] | None = None,
    ) -> None:
        self.problem, self.pools, self.terms, self.serving_terms = problem, pools, terms, serving_terms
        self.meets = meets
        self.token, self.work_limit = token, work_limit
        self.feasible: list[PairScored] = []
        self.closest: PairScored | None = None
        self.complete = True
        self.next_gpus: int | None = None
        self.count = self.pruned = 0

    def _stop(self, total: int) -> bool:
        if self.token.should_stop() or (self.work_limit is not None and self.count >= self.work_limit):
            self.complete, self.next_gpus = False, total
            return True
        return False

    def _score(self, p: int, d: int) -> PairScored:
        pre, dec = self.pools.prefill(p), self.pools.decode(d)
        assert pre is not None and dec is not None
        self.count += 1
        scored = score_pair(self.problem, pre, dec, p, d, self.terms, self.serving_terms, self.meets)
        if scored.feasible:
            self.feasible.append(scored)
        elif self.closest is None or len(scored.broken()) < len(self.closest.broken()):
            self.closest = scored
        return scored

    def by_total(self, gpu_cap: int) -> None:
        gpus = self.pools.gpus
        order = sorted(gpus, key=lambda i: (gpus[i], i))
        sizes = sorted({gpus[i] for i in order})
        min_p = self._smallest(order, self.pools.prefill, gpu_cap)
        min_d = self._smallest(order, self.pools.decode, gpu_cap)
        if min_p is None or min_d is None:
            return
        totals = sorted({a + b for a in sizes for b in sizes if a >= min_p and b >= min_d and a + b <= gpu_cap})
        for total in totals:
            for p in order:
                g_p = gpus[p]
                if g_p > total - min_d:
                    break
                if g_p < min_p or self.pools.prefill(p) is None:
                    continue
                for d in order:
                    if gpus[d] != total - g_p or self.pools.decode(d) is None:
                        continue
                    if self._stop(total):
                        return
                    self._score(p, d)
            if self.feasible:
                return

    def _smallest(self, order: list[int], admit: object, gpu_cap: int) -> int | None:
        """GPU count of the smallest pool that passes its own conditions (``None``: none does)."""
        for index in order:
            if self.pools.gpus[index] >= gpu_cap or self.token.should_stop():
                break
            if admit(index) is not None:  # type: ignore[operator]
                return self.pools.gpus[index]
        if self.token.should_stop():
            self.complete = False
        return None

    def by_bound(self, gpu_cap: int, incumbent: float | None, primary: str) -> None:
        gpus = self.pools.gpus
        n_rep = _closed_loop_n(self.problem)
        osl = self.problem.workload.serving_output_tokens
        small = [i for i in sorted(gpus) if gpus[i] < gpu_cap]
        pre = [i for i in small if not self.token.should_stop() and self.pools.prefill(i) is not None]
        dec = [i for i in small if not self.token.should_stop() and self.pools.decode(i) is not None]
        if self.token.should_stop():
            self.complete = False
            return
        bounds: dict[tuple[int, int], float] = {}
        for p in pre:
            cap_p = self.pools.prefill(p).capacity_rps  # type: ignore[union-attr]
            for d in dec:
                total = gpus[p] + gpus[d]
                if total > gpu_cap:
                    continue
                dec_pool = self.pools.decode(d)
                assert dec_pool is not None
                cap = min(cap_p, dec_pool.capacity_rps(0.0, n_rep(dec_pool.replicas)))  # type: ignore[operator]
                bounds[p, d] = total / (cap * osl) if cap > 0 else math.inf
        best = math.inf if incumbent is None else incumbent
        pairs = sorted(bounds, key=lambda pd: (bounds[pd], pd))
        for position, (p, d) in enumerate(pairs):
            if primary == "max_throughput_per_gpu" and bounds[p, d] > best * (1 + 1e-9):
                self.pruned = len(pairs) - position  # sorted by bound: none left can reach the best
                return
            if self._stop(gpus[p] + gpus[d]):
                return
            scored = self._score(p, d)
            if scored.feasible and primary in scored.terms:
                best = min(best, scored.terms[primary])


def score_pair(
    problem: Problem,
    prefill: PrefillPool,
    decode: DecodePool,
    p: int,
    d: int,
    terms: list[str],
    serving_terms: object,
    meets: Callable[[Problem, object], bool] | None = None,
) -> PairScored:
    """One pair at its serving point, with its objective terms. With ``objective.concurrency =
    "auto"`` the concurrency is the largest ``n <= workload.concurrency`` whose point ``meets`` the
    SLOs (TTFT and TPOT grow with ``n``, so bisection finds it; 1 when none does, and the pair is
    then infeasible)."""
    plan = disaggregated_plan(problem, prefill.plan, decode.plan)
    nodes_p, nodes_d = pool_nodes(plan, problem.fabric)
    path = kv_path(problem.fabric, nodes_p, nodes_d)
    judged, concurrency = problem, None
    w = problem.workload
    if w.kind == "concurrency" and problem.objective.concurrency == "auto":
        assert w.concurrency is not None and meets is not None
        model = DisaggModel(problem, prefill, decode, path)
        concurrency = max(1, largest_int(lambda n: meets(problem, model.closed_loop(float(n))), w.concurrency))
        judged = problem.replace(workload=w.model_copy(update={"concurrency": concurrency, "batch_size": concurrency}))
    model = DisaggModel(judged, prefill, decode, path)
    evaluation = assemble(judged, plan, model, model.point(), nodes_p, nodes_d)
    return PairScored(p, d, plan, evaluation, serving_terms(terms, evaluation), concurrency)  # type: ignore[operator]


def largest_int(predicate: Callable[[int], bool], hi: int) -> int:
    """Largest ``n`` in ``[1, hi]`` with ``predicate(n)`` for a predicate true up to a point; 0 if none."""
    if hi < 1 or not predicate(1):
        return 0
    if predicate(hi):
        return hi
    lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicate(mid):
            lo = mid
        else:
            hi = mid
    return lo
