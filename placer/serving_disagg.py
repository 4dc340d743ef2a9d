"""Disaggregated prefill/decode serving: two pools, the KV cache sent between them.

The prefill pool runs every prompt, the decode pool every output token; a request's KV cache goes
from the first to the second over the fabric (:mod:`placer.costmodel.kvtransfer`). Each pool is
priced by the evaluator as an aggregated plan of its own GPUs, and every time here comes from
it, as in :mod:`placer.serving`. Equations (D1)-(D8) of ``docs/cost-model.md`` ("Disaggregated
prefill and decode"):

(D1) prefill latency ``P``: the evaluator's prefill of one prompt of the serving length on every
     attention-DP rank of a replica (ranks meet at every MoE layer, so one prompt alone takes as
     long); capacity ``replicas x dp / P`` requests/s.
(D2) prefill queue: (D2c) each replica a gated batch server fed a Poisson share of the arrivals
     (its ranks step together; a step takes the prompts waiting at its start and they all finish at
     its end): one rank in closed form, several by the chain of the number of prompts in a step;
     (D2d) a closed loop's requests dealt round robin over the replicas; (D2e) percentiles from the
     residual of the step met (several ranks) or Q8's exponential tail. (The M/D/c wait,
     :func:`mdc_wait_s`, which took each prompt as served alone on a free rank, is kept for reference.)
(D3) decode step: the evaluator's decode step of ``b`` sequences (the same :class:`StepTimer`),
     no prefill in it; ``X(b) = b e / (OSL t(b_seen))`` requests/s per replica.
(D4) decode KV: ``b (ISL + OSL / 2)`` tokens of the requests decoding plus ``X T_kv ISL`` reserved
     for those whose KV is on its way, within the replica's KV capacity (Q3); the decode batch
     ceiling is the largest ``b`` within KV and ``max_batch_size``.
(D5) TTFT = prefill wait + ``P`` + KV transfer (the first token is sampled by the prefill pool and
     streamed once the KV has landed); TPOT = decode step / tokens per step.
(D6) rate matching: the load is served when the prefill queue, the KV links and the decode pool
     are each below capacity (prefill ``>= rate x ISL``, decode ``>= rate x OSL`` tokens/s).
(D7) kinds: ``rate`` serves its arrivals; ``concurrency`` ``n`` finds the rate with
     ``n = X (W + P + T_kv) + decode batch`` (Little), requests beyond the decode ceiling waiting
     outside; ``offline`` runs at the smaller capacity.
(D8) traffic: tokens crossing nodes per token served, ``(ISL c_p + OSL c_d + KV bytes if the path
     crosses nodes) / (ISL + OSL)``, with ``c_p`` and ``c_d`` the pools' own all-to-all figures.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from placer.costmodel.kvtransfer import KvPath, KvTransfer, kv_path, kv_transfer
from placer.evaluator import Check, Checked, Evaluation, slo_limit_checks
from placer.problem import Problem
from placer.schema import DisaggregatedPlan, Plan, Workload
from placer.serving import PERCENTILES, SteadyLatencies, StepTimer, largest_true, wait_quantile_s
from placer.topology import Fabric

#: Bisection steps of the two-pool model (``hi / 2^48`` from the answer: far below any figure reported).
_ITERATIONS = 48
#: A rate this close under a capacity counts as at it (the bisections' resolution).
_EDGE = 1e-9


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue of ``servers`` at ``offered`` Erlangs
    (``offered < servers``), by the stable recurrence on Erlang B."""
    if offered <= 0:
        return 0.0
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    return b / (1 - rho + rho * b)


def mdc_wait_s(servers: int, rate_rps: float, service_s: float) -> tuple[float, float]:
    """(D2) Mean wait of an M/D/c queue (half the M/M/c wait) and the probability of waiting."""
    if rate_rps <= 0:
        return 0.0, 0.0
    offered = rate_rps * service_s
    if offered >= servers:
        return math.inf, 1.0
    p_wait = erlang_c(servers, offered)
    mmc = p_wait * service_s / (servers - offered)
    return mmc / 2, p_wait


@dataclass(frozen=True)
class PromptSpread:
    """(D2c) The prompt lengths relative to their mean, as the prefill queue needs them: ``scv`` the
    squared coefficient of variation, ``max_of[j - 1]`` the mean of the longest of ``j`` prompts
    (``j`` = 1 .. dp, over the mean) and ``fixed`` when every prompt has the same length."""

    scv: float
    max_of: tuple[float, ...]
    fixed: bool
    top: float = 1.0  # the longest prompt over the mean

    @classmethod
    def of(cls, workload: Workload, ranks: int) -> PromptSpread:
        """The workload's prompt lengths: a trace's own or a histogram (their empirical law), a mean
        in ``[min, max]`` (the widest uniform spread about it that stays in the range, the law the
        simulator draws), else fixed."""
        trace = workload.arrival_trace
        dist = workload.prompt_length_distribution
        if trace is not None and trace.prompt_tokens is not None:
            counts = Counter(trace.prompt_tokens)
            return cls.of_table(sorted((float(t), float(c)) for t, c in counts.items()), ranks)
        if dist is not None and dist.histogram is not None:
            return cls.of_table(sorted((float(t), float(w)) for t, w in dist.histogram), ranks)
        prompt = workload.prompt_tokens
        mean = prompt.mean
        if mean is None:
            return cls(0.0, (1.0,) * ranks, True)
        return cls.of_uniform(mean, max(0.0, min(mean - prompt.min, prompt.max - mean)), ranks)

    @classmethod
    def of_uniform(cls, mean: float, half: float, ranks: int) -> PromptSpread:
        """Uniform on ``[m - h, m + h]``: variance ``h^2 / 3``, longest of ``j``: ``m + h (j - 1) / (j + 1)``."""
        return cls(
            half**2 / (3 * mean**2),
            tuple(1 + half * (j - 1) / ((j + 1) * mean) for j in range(1, ranks + 1)),
            half == 0,
            1 + half / mean,
        )

    @classmethod
    def of_table(cls, table: list[tuple[float, float]], ranks: int) -> PromptSpread:
        """A law of (tokens, weight) rows sorted by tokens."""
        total = sum(w for _, w in table)
        mean = sum(t * w for t, w in table) / total
        scv = sum(w * (t - mean) ** 2 for t, w in table) / total / mean**2
        longest = []
        for j in range(1, ranks + 1):
            below, acc = 0.0, 0.0
            for tokens, weight in table:  # E[max of j] = sum x (F(x)^j - F(x-)^j)
                upto = below + weight / total
                acc += tokens * (upto**j - below**j)
                below = upto
            longest.append(acc / mean)
        return cls(scv, tuple(longest), len(table) == 1, table[-1][0] / mean)

    def step(self, prompts: int, ranks: int) -> float:
        """Mean step of ``prompts`` prompts spread over ``ranks`` ranks (shortest queue first), in
        units of one mean prompt on every rank: the longest of them while each has a rank of its
        own, then the busiest rank's share (whole prompts when the lengths are fixed)."""
        if prompts <= ranks:
            return self.max_of[prompts - 1]
        if self.fixed:
            return float(math.ceil(prompts / ranks))
        return max(self.max_of[ranks - 1], prompts / ranks)


def gated_wait(rate_rps: float, prompt_s: float, ranks: int, spread: PromptSpread) -> tuple[float, float]:
    """(D2c) Mean wait (the response less ``P``) and the share of arrivals that meet a step, for one
    prefill replica whose ranks step together and take every prompt waiting at a step's start
    (gated batch service, the chunk budget ignored): the prompts that arrive during a step all run
    in the next and finish at its end.

    One rank (``dp = 1``), prompts of mean service ``s = P`` and ``E[S^2] = (1 + scv) s^2``,
    ``rho = lambda s``: a step of length ``T`` is followed by one of the work that arrived during it,
    so the step chain's moments give ``E[T^2] / E[T] = (1 + scv) s / (1 - rho^2)``; an arrival meets
    a step with probability ``rho``, waits its residual ``E[T^2] / (2 E[T])`` and then runs in a step
    holding itself and the ``lambda E[T^2] / E[T]`` others that arrived in the same step:
    ``W = rho (1/2 + rho) (1 + scv) s / (1 - rho^2)``.

    Several ranks: a step's length is no longer the sum of its prompts (the longest of them while
    each has a rank, then the busiest rank's share: :meth:`PromptSpread.step`), so the chain of the
    number of prompts in a step (``N' = max(1, Poisson(lambda T_N))``: a step with no arrivals is
    followed by an idle spell and a step of the one prompt that ends it) is solved numerically on a
    truncated range, and the same three terms are read off its stationary law."""
    if rate_rps <= 0:
        return 0.0, 0.0
    rho = rate_rps * prompt_s / ranks
    if rho >= 1:
        return math.inf, 1.0
    if ranks == 1:
        return _gated_one(rho, prompt_s, spread.scv), rho
    if rho <= _CHAIN_TOP:
        return _gated_chain(rate_rps, prompt_s, ranks, spread)[:2]
    # heavy load: a step holds many prompts per rank, so it grows as their work over the ranks
    # (one rank of service s / dp); the chain's excess over that at _CHAIN_TOP carries on
    edge_wait, edge_busy, _ = _gated_chain(_CHAIN_TOP * ranks / prompt_s, prompt_s, ranks, spread)
    fluid = _gated_one(rho, prompt_s / ranks, spread.scv)
    offset = edge_wait - _gated_one(_CHAIN_TOP, prompt_s / ranks, spread.scv)
    return fluid + offset, max(edge_busy, rho)


#: (D2c) The utilisation up to which the step chain of several ranks is solved; above it, its fluid limit.
_CHAIN_TOP = 0.8


def _gated_one(rho: float, service_s: float, scv: float) -> float:
    """(D2c) Mean wait of one gated rank: ``rho (1/2 + rho) (1 + scv) s / (1 - rho^2)``."""
    return rho * (0.5 + rho) * (1 + scv) * service_s / (1 - rho * rho)


@functools.lru_cache(maxsize=1024)
def _gated_chain(rate_rps: float, prompt_s: float, ranks: int, spread: PromptSpread) -> tuple[float, float, float]:
    """(D2c) The step chain of :func:`gated_wait`, truncated where its stationary law has no mass left."""
    top = max(4 * ranks, 64)
    while True:
        n = np.arange(1, top + 1)
        steps = np.array([spread.step(int(k), ranks) for k in n]) * prompt_s  # T_N (s)
        variance = spread.scv * np.maximum(1.0, n / ranks) * prompt_s**2  # of T given N
        mu = rate_rps * steps
        k = np.arange(0, top + 1)
        log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, top + 1)))))
        pmf = np.exp(-mu[:, None] + k[None, :] * np.log(mu)[:, None] - log_fact[None, :])  # P(arrivals = k | N)
        move = pmf[:, 1:].copy()
        move[:, 0] += pmf[:, 0]  # none: idle, then a step of the one prompt that ends it
        move[:, -1] += np.clip(1.0 - pmf.sum(axis=1), 0.0, None)  # beyond the range: its last state
        system = move.T - np.eye(top)
        system[-1, :] = 1.0
        rhs = np.zeros(top)
        rhs[-1] = 1.0
        law = np.clip(np.linalg.solve(system, rhs), 0.0, None)
        law /= law.sum()
        if law[-top // 4 :].sum() < 1e-7 or top >= 2048:
            break
        top *= 2
    mean_step = float(law @ steps)
    second = float(law @ (steps**2 + variance))
    idle = float(law @ np.exp(-mu)) / rate_rps  # mean idle spell after a step
    busy = mean_step / (mean_step + idle)
    met = law * steps / mean_step  # the step an arrival meets, by its length
    others = rate_rps * (steps**2 + variance) / steps  # arrivals during that step, itself excluded
    keep = met > 1e-12
    lam = others[keep]
    span = int(lam.max() + 12 * math.sqrt(lam.max()) + 12)
    e = np.arange(0, span + 1)
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, span + 1)))))
    probs = np.exp(-lam[:, None] + e[None, :] * np.log(lam)[:, None] - log_fact[None, :])
    own_steps = np.array([spread.step(int(j) + 1, ranks) for j in e])  # itself and e others
    own = float(met[keep] @ (probs @ own_steps))
    response = (1 - busy) * prompt_s + busy * (second / (2 * mean_step) + own * prompt_s)
    return max(0.0, response - prompt_s), busy, second / mean_step


def dealt_round_robin(wait_s: float, p_wait: float, utilisation: float, replicas: int) -> tuple[float, float]:
    """(D2d) A closed loop's requests dealt round robin over ``replicas`` prefill replicas: each sees
    every ``R``-th of a near-Poisson stream, Erlang-``R`` gaps of squared coefficient ``1 / R``. The
    Kraemer-Langenbach-Belz factor for smoother arrivals, ``c_a^2 exp(-2 (1 - rho) (1 - c_a^2)^2 /
    (3 rho c_a^2))`` (deterministic service), scales the mean wait; its exponential part, the
    chance that an arrival meets a step."""
    if replicas <= 1 or wait_s <= 0 or not math.isfinite(wait_s) or utilisation <= 0:
        return wait_s, p_wait
    ca2 = 1.0 / replicas
    damp = math.exp(-2 * (1 - utilisation) * (1 - ca2) ** 2 / (3 * utilisation * ca2))
    return wait_s * ca2 * damp, p_wait * damp


class PrefillPool:
    """(D1)-(D2) The prefill pool: latency of one prompt and its queue, on a :class:`StepTimer` of
    its own plan (the same prefill cost per token as an aggregated replica's chunked prefill)."""

    def __init__(self, problem: Problem, plan: Plan) -> None:
        par = plan.parallelism
        self.plan = plan
        self.replicas = par.replicas
        self.servers = par.dp_attn
        timer = StepTimer(problem, plan)
        #: The pool under one prompt per attention-DP rank: its memory and rule checks.
        self.evaluation: Evaluation = timer.probe_evaluation
        #: (D1) one prompt of the serving length on every attention-DP rank of a replica
        self.prompt_s: float = timer.prefill_s(par.dp_attn * problem.workload.serving_prompt_tokens)
        #: (D2c) the prompt lengths about their mean (what the longest prompt of a step adds)
        self.spread = PromptSpread.of(problem.workload, par.dp_attn)
        #: (D2d) a closed loop's requests are dealt round robin over the replicas
        self.round_robin = problem.workload.kind == "concurrency"

    @property
    def capacity_rps(self) -> float:
        return self.replicas * self.servers / self.prompt_s

    def wait(self, rate_rps: float) -> tuple[float, float]:
        """Mean wait (TTFT less ``P`` and the transfer) and the share of prompts that wait, at
        ``rate_rps`` on the whole pool: (D2c) each replica a gated batch server (its ranks step
        together and a step's prompts all finish at its end, :func:`gated_wait`), fed a Poisson
        share of the arrivals, or (D2d) for a closed loop, every ``R``-th request round robin."""
        per_replica = rate_rps / self.replicas
        wait, p_wait = gated_wait(per_replica, self.prompt_s, self.servers, self.spread)
        if self.round_robin:
            wait, p_wait = dealt_round_robin(wait, p_wait, per_replica * self.prompt_s / self.servers, self.replicas)
        return wait, p_wait

    def ttft_floor_s(self, rate_rps: float, percentile: str) -> float:
        """TTFT at ``rate_rps`` without the KV transfer (D5 less ``T_kv``): a lower bound any decode
        pool paired with this one can only raise; infinite at or above capacity."""
        if rate_rps >= self.capacity_rps:
            return math.inf
        if percentile == "mean":
            return self.prompt_s + self.wait(rate_rps)[0]
        return self.prompt_s + self.wait_quantile_s(rate_rps, PERCENTILES[percentile])

    def wait_quantile_s(self, rate_rps: float, quantile: float) -> float:
        """(D2e) The ``quantile`` of the wait at ``rate_rps``. Several ranks below the chain's top
        (steps of nearly one length, the longest prompt's): a prompt that meets a step (share ``u``)
        waits its residual, uniform over ``[0, L]`` with ``L = E[T^2] / E[T]``, plus what the others
        in its own step add, ``e`` (``W = u (L / 2 + e)``); so the quantile is ``e + r L`` at the
        level ``r = (q - (1 - u)) / u`` within those that wait, 0 below. Otherwise (one rank, the
        fluid limit, a closed loop dealt round robin) Q8's exponential tail."""
        wait, p_wait = self.wait(rate_rps)
        per_replica = rate_rps / self.replicas
        rho = per_replica * self.prompt_s / self.servers
        if self.servers == 1 or rho > _CHAIN_TOP or self.round_robin and self.replicas > 1 or wait <= 0:
            return wait_quantile_s(wait, p_wait, quantile)
        _, busy, window = _gated_chain(per_replica, self.prompt_s, self.servers, self.spread)
        if quantile <= 1 - busy:
            return 0.0
        excess = max(0.0, wait / busy - window / 2)
        level = (quantile - (1 - busy)) / busy
        swing = (self.spread.top - 1) * self.prompt_s / 2  # the own step's own spread, taken with the residual's
        return max(0.0, excess + level * window + (2 * level - 1) * swing)


class DecodePool:
    """(D3)-(D4) The decode pool on a :class:`StepTimer` of its own plan."""

    def __init__(self, problem: Problem, plan: Plan) -> None:
        self.timer = StepTimer(problem, plan)
        self.plan = plan
        self.replicas = plan.parallelism.replicas
        w = problem.workload
        self.isl = w.serving_prompt_tokens
        self.osl = w.serving_output_tokens
        self.e = self.timer.tokens_per_decode_step
        self.max_batch = w.max_batch_size
        self.longest = w.prompt_tokens.max + w.output_tokens
        self._ceilings: dict[tuple[float, float | None], tuple[float, str]] = {}
        #: The pool under one prompt per attention-DP rank (the timer's probe): memory and rule checks.
        self.evaluation: Evaluation = self.timer.probe_evaluation

    def seen(self, b: float, n_per_replica: float | None) -> float:
        """The batch a decoding request sees (Q5b): open loop ``1 + b``, closed loop of ``n``
        ``1 + b (1 - 1/n)``, offline ``max(1, b)``."""
        if n_per_replica is None:
            return max(1.0, b)
        if not math.isfinite(n_per_replica):
            return 1.0 + b
        return 1.0 + b * (1.0 - 1.0 / max(n_per_replica, 1.0))

    def step_s(self, b: float, n_per_replica: float | None) -> float:
        return self.timer.decode_s_real(self.seen(b, n_per_replica))

    def rate_rps(self, b: float, n_per_replica: float | None) -> float:
        """(D3) Requests/s one replica finishes at decode batch ``b``."""
        return b * self.e / (self.osl * self.step_s(b, n_per_replica)) if b > 0 else 0.0

    def kv_tokens(self, b: float, rate_rps: float, transfer_s: float) -> float:
        """(D4) KV tokens one replica holds: decoding requests and those whose KV is arriving."""
        return b * (self.isl + self.osl / 2) + rate_rps * transfer_s * self.isl

    def ceiling(self, transfer_s: float, n_per_replica: float | None) -> tuple[float, str]:
        """(D4) The largest steady decode batch per replica and what caps it (memoised)."""
        key = (transfer_s, n_per_replica)
        found = self._ceilings.get(key)
        if found is None:
            found = self._ceilings[key] = self._ceiling(transfer_s, n_per_replica)
        return found

    def capacity_rps(self, transfer_s: float, n_per_replica: float | None) -> float:
        """Requests/s the whole pool finishes at its ceiling."""
        b_max, _ = self.ceiling(transfer_s, n_per_replica)
        return self.replicas * self.rate_rps(b_max, n_per_replica)

    def _ceiling(self, transfer_s: float, n_per_replica: float | None) -> tuple[float, str]:
        capacity = self.timer.kv_capacity_tokens
        if self.longest > capacity / self.timer.dp_attn:
            return 0.0, "kv_cache"
        hi, name = (float(self.max_batch), "max_batch_size") if self.max_batch is not None else (math.inf, "")
        top = min(hi, capacity / (self.isl + self.osl / 2))
        if transfer_s > 0:
            fits = lambda b: self.kv_tokens(b, self.rate_rps(b, n_per_replica), transfer_s) <= capacity  # noqa: E731
            b_kv = largest_true(fits, top, _ITERATIONS)
        else:
            b_kv = top  # nothing in transfer: the decoding requests alone fill the KV
        if b_kv < hi:
            return b_kv, "kv_cache"
        return hi, name

    def tpot_at_rate_s(self, rate_rps: float) -> float:
        """(D3) TPOT at ``rate_rps`` open-loop arrivals on the whole pool, with no KV in transfer
        (the ceiling a pair can only lower); infinite above that ceiling's capacity."""
        n_rep = math.inf
        if rate_rps > self.capacity_rps(0.0, n_rep) * (1 + _EDGE):
            return math.inf
        b_max, _ = self.ceiling(0.0, n_rep)
        b = self.batch_for(rate_rps / self.replicas, n_rep, b_max)
        return self.step_s(b, n_rep) / self.e

    def batch_for(self, rate_rps: float, n_per_replica: float | None, b_max: float) -> float:
        """The decode batch at which one replica finishes ``rate_rps`` requests/s (X is increasing in b)."""
        return largest_true(lambda b: self.rate_rps(b, n_per_replica) <= rate_rps, b_max, _ITERATIONS)


class OneReplicaScreen:
    """Necessary conditions for a pool (or an aggregated configuration) of ``R`` replicas, read off
    the plan of the same degrees and partition with one replica, shared by every replica count.

    Why they are necessary: the evaluator prices ``R`` replicas at the slowest replica's layout and
    replica 0 sits where the lone replica sits, so every step of ``R`` replicas takes at least the
    lone replica's time, while memory and KV capacity per replica are the same. Hence per replica at
    ``rate / R``: the decode capacity is at most, and the TPOT at least, the lone replica's (X(b) is
    lower at every b, the batch higher, the step non-decreasing in the batch); the prefill latency
    ``P`` is at least the lone one's and the gated wait (D2c) grows with ``P``."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self._decode: dict[tuple[object, ...], DecodePool] = {}
        self._prefill: dict[tuple[object, ...], PrefillPool] = {}

    @staticmethod
    def _key(plan: Plan) -> tuple[object, ...]:
        par = plan.parallelism
        return (par.pp, par.tp, par.dp_attn, par.ep, par.tp_moe, tuple(stage.layers for stage in plan.stages))

    @staticmethod
    def _lone(plan: Plan) -> Plan:
        par = plan.parallelism
        one = par.model_copy(update={"replicas": 1})
        return plan.model_copy(update={"parallelism": one, "gpus": one.gpus, "expert_map": None, "rank_to_node": None})

    def decode_may_serve(self, plan: Plan, rate_rps: float, tpot_ms: float | None) -> bool:
        """False only when ``plan``'s replicas cannot finish ``rate_rps`` within ``tpot_ms`` even
        with no prefill in their steps and no KV in transfer."""
        key = self._key(plan)
        if key not in self._decode:
            self._decode[key] = DecodePool(self.problem, self._lone(plan))
        tpot = self._decode[key].tpot_at_rate_s(rate_rps / plan.parallelism.replicas)
        return math.isfinite(tpot) and (tpot_ms is None or tpot * 1e3 <= tpot_ms * (1 + 1e-9))

    def prefill_may_meet(self, plan: Plan, rate_rps: float, ttft_s: float | None, percentile: str) -> bool:
        """False only when ``plan``'s replicas cannot prefill ``rate_rps`` (or not within ``ttft_s``
        before any KV transfer)."""
        key = self._key(plan)
        if key not in self._prefill:
            self._prefill[key] = PrefillPool(self.problem, self._lone(plan))
        floor = self._prefill[key].ttft_floor_s(rate_rps / plan.parallelism.replicas, percentile)
        return math.isfinite(floor) and (ttft_s is None or floor <= ttft_s * (1 + 1e-9))


@dataclass(frozen=True)
class DisaggPoint(SteadyLatencies):
    """The steady state of a disaggregated deployment (whole-deployment figures unless named)."""

    kind: str
    stable: bool
    reason: str | None
    gpus: int
    rate_rps: float
    concurrency: float  # requests in flight: waiting, prefilling, in transfer, decoding
    prefill_replicas: int
    prefill_latency_s: float  # P
    prefill_wait_s: float
    prefill_utilisation: float
    prefill_capacity_rps: float
    transfer: KvTransfer
    outside_wait_s: float  # closed loop beyond the decode ceiling: waiting to be admitted
    decode_replicas: int
    decode_batch: float  # per replica
    decode_step_s: float
    decode_capacity_rps: float
    decode_utilisation: float
    kv_tokens_used: float  # per decode replica
    kv_capacity_tokens: int
    admission_limit: str | None
    ttft_s: float
    ttft_percentiles_s: dict[str, float] = field(default_factory=dict)
    tpot_s: float = math.inf
    output_tokens_per_s: float = 0.0

    @property
    def output_tokens_per_s_per_gpu(self) -> float:
        return self.output_tokens_per_s / self.gpus

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "stable": self.stable,
            "reason": self.reason,
            "rate_rps": self.rate_rps,
            "concurrency": self.concurrency,
            "ttft_s": self.ttft_s,
            **{f"ttft_{name}_s": value for name, value in self.ttft_percentiles_s.items()},
            "tpot_ms": self.tpot_s * 1e3,
            "output_tokens_per_s": self.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu,
            "prefill": {
                "replicas": self.prefill_replicas,
                "latency_s": self.prefill_latency_s,
                "wait_s": self.prefill_wait_s,
                "utilisation": self.prefill_utilisation,
                "capacity_rps": self.prefill_capacity_rps,
            },
            "kv_transfer": self.transfer.to_dict(),
            "outside_wait_s": self.outside_wait_s,
            "decode": {
                "replicas": self.decode_replicas,
                "batch_per_replica": self.decode_batch,
                "step_ms": self.decode_step_s * 1e3,
                "capacity_rps": self.decode_capacity_rps,
                "utilisation": self.decode_utilisation,
                "kv_tokens_used": self.kv_tokens_used,
                "kv_capacity_tokens": self.kv_capacity_tokens,
                "admission_limit": self.admission_limit,
            },
        }


class DisaggModel:
    """(D1)-(D7) for one pair of pools on a fixed KV path."""

    def __init__(self, problem: Problem, prefill: PrefillPool, decode: DecodePool, path: KvPath) -> None:
        self.problem = problem
        self.prefill = prefill
        self.decode = decode
        self.path = path
        self.isl = problem.workload.serving_prompt_tokens
        self.gpus = prefill.plan.gpus + decode.plan.gpus

    def transfer(self, rate_rps: float) -> KvTransfer:
        p, d = self.prefill.plan.parallelism, self.decode.plan.parallelism
        return kv_transfer(self.problem.model, p, d, self.path, self.isl, rate_rps)

    def _link_capacity_rps(self) -> float:
        probe = self.transfer(1.0)
        return 1.0 / probe.link_utilisation if probe.link_utilisation > 0 else math.inf

    def decode_capacity(self, n_per_replica: float | None) -> tuple[float, float, str]:
        """Decode ceiling (batch per replica, its limit) and the pool's capacity in requests/s; the
        KV reserved for transfers is priced at the lone transfer time (a lower bound, checked again
        at the operating point)."""
        lone = self.transfer(0.0).alone_s
        b_max, limit = self.decode.ceiling(lone, n_per_replica)
        return b_max, self.decode.capacity_rps(lone, n_per_replica), limit

    def at_rate(self, rate_rps: float, n_total: float | None, outside_wait_s: float = 0.0) -> DisaggPoint:
        """The deployment serving ``rate_rps``; ``n_total`` the closed loop's requests in flight
        (``math.inf`` open loop, ``None`` offline)."""
        pre, dec = self.prefill, self.decode
        kind = self.problem.workload.kind
        n_rep = None if n_total is None else n_total / dec.replicas
        b_max, cap_d, limit = self.decode_capacity(n_rep)
        transfer = self.transfer(rate_rps)
        wait, p_wait = pre.wait(rate_rps)
        rho_p = rate_rps / pre.capacity_rps
        reasons = []
        if b_max <= 0:
            reasons.append("not one request fits in the decode pool's KV memory left after the weights")
        if rho_p >= 1:
            reasons.append(f"prefill pool at utilisation {rho_p:.2f} >= 1")
        if not transfer.stable:
            reasons.append(f"KV links at utilisation {transfer.link_utilisation:.2f} >= 1")
        if rate_rps > cap_d * (1 + _EDGE):
            reasons.append(f"decode pool capacity {cap_d:.3g} requests/s below {rate_rps:.3g}")
        per_rep = rate_rps / dec.replicas
        b = dec.batch_for(per_rep, n_rep, b_max) if b_max > 0 else 0.0
        step = dec.step_s(b, n_rep) if b > 0 else dec.timer.decode_s(1)
        kv_used = dec.kv_tokens(b, per_rep, transfer.mean_s)
        base = pre.prompt_s + transfer.mean_s + outside_wait_s
        stable = not reasons
        inf = math.inf
        percentiles = {
            name: (base + pre.wait_quantile_s(rate_rps, q) if stable else inf) for name, q in PERCENTILES.items()
        }
        in_flight = rate_rps * (wait + pre.prompt_s + transfer.mean_s + outside_wait_s) + b * dec.replicas
        return DisaggPoint(
            kind=kind,
            stable=stable,
            reason="; ".join(reasons) or None,
            gpus=self.gpus,
            rate_rps=rate_rps,
            concurrency=in_flight if stable else (n_total or 0.0),
            prefill_replicas=pre.replicas,
            prefill_latency_s=pre.prompt_s,
            prefill_wait_s=wait,
            prefill_utilisation=rho_p,
            prefill_capacity_rps=pre.capacity_rps,
            transfer=transfer,
            outside_wait_s=outside_wait_s,
            decode_replicas=dec.replicas,
            decode_batch=b,
            decode_step_s=step,
            decode_capacity_rps=cap_d,
            decode_utilisation=rate_rps / cap_d if cap_d > 0 else inf,
            kv_tokens_used=kv_used,
            kv_capacity_tokens=dec.timer.kv_capacity_tokens,
            admission_limit=limit if outside_wait_s > 0 or kind == "offline" else None,
            ttft_s=base + wait if stable else inf,
            ttft_percentiles_s=percentiles,
            tpot_s=step / dec.e if stable else inf,
            output_tokens_per_s=rate_rps * dec.osl if stable else 0.0,
        )

    def capacity_rps(self, n_total: float | None) -> float:
        """(D6) The largest rate every part carries: prefill, KV links, decode."""
        n_rep = None if n_total is None else n_total / self.decode.replicas
        return min(self.prefill.capacity_rps, self._link_capacity_rps(), self.decode_capacity(n_rep)[1])

    def closed_loop(self, n_total: float) -> DisaggPoint:
        """(D7) ``n_total`` requests in flight: the rate with Little's law met; beyond the decode
        ceiling the rest wait outside, ``(n - n(X_max)) / X_max``."""
        top = self.capacity_rps(n_total) * (1 - 1e-6)
        if top <= 0:
            return self.at_rate(0.0, n_total)
        at_top = self.at_rate(top, n_total)
        if at_top.stable and at_top.concurrency < n_total:
            return self.at_rate(top, n_total, (n_total - at_top.concurrency) / top)

        def under(x: float) -> bool:
            point = self.at_rate(x, n_total)
            return point.stable and point.concurrency <= n_total

        return self.at_rate(largest_true(under, top, _ITERATIONS), n_total)

    def offline(self) -> DisaggPoint:
        """(D7) The batch is free: the smaller capacity, queues included."""
        return self.at_rate(self.capacity_rps(None) * (1 - 1e-6), None)

    def point(self) -> DisaggPoint:
        w = self.problem.workload
        if w.kind == "rate":
            assert w.serving_rate_rps is not None
            return self.at_rate(w.serving_rate_rps, math.inf)
        if w.kind == "concurrency":
            assert w.concurrency is not None
            return self.closed_loop(float(w.concurrency))
        if w.kind == "offline":
            return self.offline()
        raise ValueError(f"workload.kind {w.kind!r}: disaggregated plans serve kinds rate, concurrency and offline")


def pool_nodes(plan: DisaggregatedPlan, fabric: Fabric) -> tuple[list[int], list[int]]:
    """The nodes each pool occupies: as written, else packed (prefill from node 0, decode from the
    next node with room; one node when both fit in it)."""
    gpn = fabric.gpus_per_node
    need_p = math.ceil(plan.prefill.gpus / gpn)
    need_d = math.ceil(plan.decode.gpus / gpn)
    nodes_p = plan.prefill.nodes if plan.prefill.nodes is not None else list(range(need_p))
    if plan.decode.nodes is not None:
        nodes_d = plan.decode.nodes
    elif plan.prefill.nodes is None and plan.gpus <= gpn:
        nodes_d = [0]
    else:
        start = max(nodes_p) + 1
        nodes_d = list(range(start, start + need_d))
    return list(nodes_p), list(nodes_d)


def node_checks(plan: DisaggregatedPlan, fabric: Fabric, nodes_p: list[int], nodes_d: list[int]) -> list[Check]:
    """Each pool fits its nodes, shared nodes hold both pools' GPUs, and the nodes exist."""
    gpn = fabric.gpus_per_node
    checks = [
        Check("prefill_nodes", plan.prefill.gpus, len(nodes_p) * gpn, "<=", "GPUs"),
        Check("decode_nodes", plan.decode.gpus, len(nodes_d) * gpn, "<=", "GPUs"),
    ]
    union = set(nodes_p) | set(nodes_d)
    if set(nodes_p) & set(nodes_d):
        checks.append(Check("shared_nodes", plan.gpus, len(union) * gpn, "<=", "GPUs"))
    if fabric.num_nodes is not None:
        checks.append(Check("cluster_nodes", max(union) + 1, fabric.num_nodes, "<=", "nodes"))
    return checks


@dataclass(frozen=True)
class DisaggEvaluation(Checked):
    """Every figure of a disaggregated plan: per pool (``prefill``, ``decode``: the evaluator's
    pool checks) and for the whole (``point``), with the SLO and rule checks of the whole. Has the
    fields of :class:`placer.evaluator.Evaluation` that the reports and the objective terms read."""

    plan: DisaggregatedPlan
    gpus: int
    nodes: int
    prefill: Evaluation
    decode: Evaluation
    point: DisaggPoint
    nodes_prefill: tuple[int, ...]
    nodes_decode: tuple[int, ...]
    ttft_s: float
    tpot_s: float
    decode_tokens_per_ms_per_gpu: float
    prefill_tokens_per_ms_per_gpu: float
    cross_node_bytes_per_token: float
    slo: tuple[Check, ...]
    rules: tuple[Check, ...]
    rule_messages: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def serving(self) -> DisaggPoint:
        return self.point

    @property
    def memory_bytes_per_gpu_max(self) -> float:
        return max(self.prefill.memory_bytes_per_gpu_max, self.decode.memory_bytes_per_gpu_max)

    def metrics(self) -> dict[str, float]:
        return {
            "ttft_s": self.ttft_s,
            "tpot_ms": self.tpot_s * 1e3,
            "prefill_tokens_per_ms_per_gpu": self.prefill_tokens_per_ms_per_gpu,
            "decode_tokens_per_ms_per_gpu": self.decode_tokens_per_ms_per_gpu,
            "memory_bytes_per_gpu_max": self.memory_bytes_per_gpu_max,
            "cross_node_bytes_per_token": self.cross_node_bytes_per_token,
            "kv_transfer_ms": self.point.transfer.mean_s * 1e3,
            "kv_bytes_per_request": self.point.transfer.bytes_per_request,
        }


def _pool_checks(prefix: str, evaluation: Evaluation) -> list[Check]:
    """A pool's memory check and rules (its latency figures are the whole's, not the probe's)."""
    keep = [c for c in evaluation.slo if c.name == "memory_per_gpu"] + list(evaluation.rules)
    return [replace(c, name=f"{prefix}.{c.name}") for c in keep]


def evaluate_disaggregated(problem: Problem, plan: DisaggregatedPlan) -> DisaggEvaluation:
    """Price and check a disaggregated plan: each pool by the evaluator, the whole by (D1)-(D8)."""
    w = problem.workload
    if w.kind == "burst":
        raise ValueError(
            "workload.kind: a disaggregated plan serves requests (kinds rate, concurrency, offline), "
            "not a burst of one batch"
        )
    fabric = problem.fabric
    nodes_p, nodes_d = pool_nodes(plan, fabric)
    prefill = PrefillPool(problem, plan.pool_plan("prefill"))
    decode = DecodePool(problem, plan.pool_plan("decode"))
    model = DisaggModel(problem, prefill, decode, kv_path(fabric, nodes_p, nodes_d))
    return assemble(problem, plan, model, model.point(), nodes_p, nodes_d)


def assemble(
    problem: Problem,
    plan: DisaggregatedPlan,
    model: DisaggModel,
    point: DisaggPoint,
    nodes_p: list[int],
    nodes_d: list[int],
) -> DisaggEvaluation:
    """The evaluation of ``plan`` at ``point`` (shared by the evaluator and the solve's scoring)."""
    slo = problem.slo
    w = problem.workload
    pre_ev, dec_ev = model.prefill.evaluation, model.decode.evaluation
    ttft = point.ttft_at(slo.ttft_percentile)
    tpot = point.tpot_at(slo.tpot_percentile)
    decode_tp = point.output_tokens_per_s_per_gpu / 1e3
    prefill_tp = point.rate_rps * w.serving_prompt_tokens / plan.gpus / 1e3 if point.stable else 0.0
    checks = slo_limit_checks(slo, ttft, tpot, None, decode_tp, plan.gpus)
    checks.append(Check("kv_cache", point.kv_tokens_used, float(point.kv_capacity_tokens), "<=", "tokens/replica"))
    checks.append(Check("kv_link", point.transfer.link_utilisation, 1.0, "<=", "utilisation"))
    checks.append(Check("stable", 0.0 if point.stable else 1.0, 0.0, "<=", "unserved loads"))
    rules = [
        *_pool_checks("prefill", pre_ev),
        *_pool_checks("decode", dec_ev),
        *node_checks(plan, problem.fabric, nodes_p, nodes_d),
    ]
    isl, osl = w.serving_prompt_tokens, w.serving_output_tokens
    kv_cross = point.transfer.bytes_per_request if point.transfer.path.crosses_nodes else 0.0
    cross = (isl * pre_ev.cross_node_bytes_per_token + osl * dec_ev.cross_node_bytes_per_token + kv_cross) / (isl + osl)
    notes = [*pre_ev.notes]
    if not point.stable:
        notes.append(f"serving: {point.reason}")
    messages = tuple(f"prefill: {m}" for m in pre_ev.rule_messages) + tuple(
        f"decode: {m}" for m in dec_ev.rule_messages
    )
    return DisaggEvaluation(
        plan=plan,
        gpus=plan.gpus,
        nodes=len(set(nodes_p) | set(nodes_d)),
        prefill=pre_ev,
        decode=dec_ev,
        point=point,
        nodes_prefill=tuple(nodes_p),
        nodes_decode=tuple(nodes_d),
        ttft_s=ttft,
        tpot_s=tpot,
        decode_tokens_per_ms_per_gpu=decode_tp,
        prefill_tokens_per_ms_per_gpu=prefill_tp,
        cross_node_bytes_per_token=cross,
        slo=tuple(checks),
        rules=tuple(rules),
        rule_messages=messages,
        notes=tuple(notes),
    )
