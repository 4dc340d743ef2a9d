"""Steady-state continuous batching: step times of one replica, and the analytic serving point.

Every time here comes from the evaluator's cost model, never from new formulas: a decode step
of ``b`` sequences is the evaluator's decode step of the plan under a ``burst`` copy of the
workload with ``b`` sequences per replica, and the prefill cost per token is the evaluator's
prefill of one prompt per attention-DP rank divided by its tokens. The simulator
(:mod:`placer.simulate`) drives the same :class:`StepTimer`, so analytic model and simulation
differ only in how requests are scheduled, which is what the comparison is meant to test.

Equations (Q1)-(Q9) of ``docs/cost-model.md`` ("Serving workloads").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from placer.costmodel.memory import usable_memory_bytes
from placer.evaluator import Check, Evaluation, evaluate
from placer.problem import Problem
from placer.schema import Plan, PromptTokens


def burst_probe(problem: Problem, batch_size: int, prompt_tokens: int | None = None) -> Problem:
    """``problem`` with a burst workload of ``batch_size`` sequences (optionally another prompt length)."""
    w = problem.workload
    changes: dict[str, object] = {
        "kind": "burst",
        "batch_size": batch_size,
        "concurrency": None,
        "rate_rps": None,
        "max_batch_size": None,
        "output_tokens_mean": None,
        "demand_output_tokens_per_s": None,
        "arrival_trace": None,
        "prompt_length_distribution": None,
        "output_length_distribution": None,
    }
    prompt = w.prompt_tokens.max if prompt_tokens is None else prompt_tokens
    changes["prompt_tokens"] = PromptTokens(min=min(w.prompt_tokens.min, prompt), max=prompt)
    if w.decode_context_tokens is None:
        # the decode context stays the workload's, whatever prompt length the probe uses
        changes["decode_context_tokens"] = w.decode_context
    return problem.replace(workload=w.model_copy(update=changes))


class StepTimer:
    """Wall time of one engine step of one replica of ``plan``, from the evaluator's cost model.

    Assumptions (stated in ``docs/cost-model.md``, Q1-Q2):

    - a decode step of ``b`` sequences takes the evaluator's decode step (TPOT x tokens emitted
      per step) at ``b`` sequences per replica and the workload's decode context; memoised on ``b``;
    - prefill costs ``prefill_s_per_token`` per prompt token, the evaluator's prefill of one
      prompt of the serving length (ISL) on every attention-DP rank, divided by the tokens; so a
      chunk late in a prompt is charged the prompt's average attention span, and a pure-prefill
      step pays its share of the weight reads;
    - interference is additive: a chunk of prefill rides in the same forward as the decode batch,
      and the step takes the decode time plus the chunk's prefill time (no overlap credit).
    """

    def __init__(self, problem: Problem, plan: Plan) -> None:
        self.problem = problem
        self.plan = plan
        par = plan.parallelism
        w = problem.workload
        self.replicas: int = par.replicas
        self.dp_attn: int = par.dp_attn
        #: Prefill token budget of one replica step: the per-DP-rank chunk times the DP ranks.
        self.chunk_tokens: int = (w.prefill_chunk_tokens or problem.params.default_prefill_chunk_tokens) * par.dp_attn
        #: Tokens one decode step emits per sequence (1, or more with MTP / speculative drafts).
        self.tokens_per_decode_step: float = w.output_tokens_per_step
        self.prompt_tokens: int = max(1, round(w.serving_prompt_tokens))
        self._decode_s: dict[int, float] = {0: 0.0}

        probe = burst_probe(problem, par.replicas * par.dp_attn, self.prompt_tokens)
        ev = evaluate(probe, plan)
        #: The evaluator's figures at one prompt per attention-DP rank (memory and rule checks).
        self.probe_evaluation: Evaluation = ev
        #: Seconds of replica step per prompt token of chunked prefill (Q2).
        self.prefill_s_per_token: float = ev.ttft_s / (par.dp_attn * self.prompt_tokens)
        self.kv_capacity_tokens: int = self._kv_capacity(probe, ev)

    def _kv_capacity(self, probe: Problem, ev: object) -> int:
        """(Q3) KV tokens one replica can hold: on each stage's fullest GPU, usable HBM less
        weights, workspace and runtime reserve, over the KV bytes a token takes on that GPU
        (from the probe's one sequence per DP rank at its full context); the tightest stage
        decides, times the DP ranks that each hold their own sequences."""
        usable = usable_memory_bytes(probe)
        context = probe.workload.max_context_tokens
        per_rank = math.inf
        for stage in ev.stages:  # type: ignore[attr-defined]
            mem = stage.memory
            kv_per_token = mem.kv_cache_bytes / context
            free = usable - mem.weights_bytes - mem.activation_bytes - mem.runtime_reserve_bytes
            if kv_per_token > 0:
                per_rank = min(per_rank, max(0.0, free) / kv_per_token)
        if not math.isfinite(per_rank):
            return 0
        return int(per_rank) * self.dp_attn

    def decode_s(self, decode_seqs: int) -> float:
        """Seconds of a decode step of ``decode_seqs`` sequences on one replica (memoised)."""
        if decode_seqs < 0:
            raise ValueError(f"decode_seqs: {decode_seqs} is negative")
        t = self._decode_s.get(decode_seqs)
        if t is None:
            ev = evaluate(burst_probe(self.problem, decode_seqs * self.replicas), self.plan)
            t = self._decode_s[decode_seqs] = ev.tpot_s * self.tokens_per_decode_step
        return t

    def decode_s_real(self, decode_seqs: float) -> float:
        """:meth:`decode_s` at a fractional batch, linear between the two integers around it
        (the analytic model's batch is a mean, not a count)."""
        lo = math.floor(decode_seqs)
        frac = decode_seqs - lo
        t_lo = self.decode_s(lo)
        return t_lo if frac == 0 else t_lo + frac * (self.decode_s(lo + 1) - t_lo)

    def prefill_s(self, prefill_tokens: float) -> float:
        """Seconds of ``prefill_tokens`` prompt tokens of chunked prefill on one replica (Q2)."""
        return prefill_tokens * self.prefill_s_per_token

    def step_s(self, decode_seqs: int, prefill_tokens: int) -> float:
        """Wall time of one engine step of ONE replica: ``decode_seqs`` sequences each emitting a
        token (at the workload's decode context) plus ``prefill_tokens`` prompt tokens of chunked
        prefill, added (Q1)."""
        if prefill_tokens < 0:
            raise ValueError(f"prefill_tokens: {prefill_tokens} is negative")
        return self.decode_s(decode_seqs) + self.prefill_s(prefill_tokens)


#: Upper quantile of each named percentile (``mean`` is handled apart).
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}


def wait_quantile_s(mean_wait_s: float, utilisation: float, quantile: float) -> float:
    """(Q8) Exponential-tail approximation of a queue's waiting time: a request waits with
    probability ``rho`` and, when it does, an exponential time of mean ``W / rho``; so
    ``P(wait > x) = rho exp(-rho x / W)`` and the ``q`` quantile is ``(W / rho) ln(rho / (1 - q))``
    when ``1 - q < rho``, else 0."""
    if mean_wait_s <= 0 or utilisation <= 0:
        return 0.0
    if not math.isfinite(mean_wait_s):
        return math.inf
    tail = 1.0 - quantile
    if tail >= utilisation:
        return 0.0
    return mean_wait_s / utilisation * math.log(utilisation / tail)


def md1_wait_s(utilisation: float, service_s: float) -> float:
    """(Q7) Mean wait of an M/D/1 queue (Pollaczek-Khinchine with no service variance):
    ``rho S / (2 (1 - rho))``; infinite at ``rho >= 1``."""
    if utilisation <= 0:
        return 0.0
    if utilisation >= 1:
        return math.inf
    return utilisation * service_s / (2 * (1 - utilisation))


@dataclass(frozen=True)
class ReplicaState:
    """One replica in steady state at a mean decode batch ``b`` (Q4-Q6); times in seconds."""

    decode_batch: float  # b, sequences in decode (time average)
    prefill_tokens_per_step: float  # c = b e ISL / OSL
    step_s: float  # t = t_dec(b_seen) + dp t_tok E[busiest rank's prompt tokens]
    requests_per_s: float  # X = b e / (OSL t)
    prefill_utilisation: float  # rho_p = c / C
    prefill_latency_s: float  # the prompt's own steps, each at the pace of the busiest rank
    prefill_wait_s: float  # M/D/1 on one rank's chunk budget, service ISL / C_r steps
    kv_tokens: float  # b (ISL + OSL / 2) + X * prefill latency * ISL / 2

    output_tokens_per_s: float  # b e / t

    @property
    def in_flight(self) -> float:
        """Little's law (Q6): requests in decode plus requests waiting or in prefill."""
        return self.decode_batch + self.requests_per_s * (self.prefill_wait_s + self.prefill_latency_s)


def expected_max_tokens(floor_tokens: float, busy: float, chunks: tuple[tuple[float, float], ...], ranks: int) -> float:
    """(Q1b) ``E[max(floor_tokens, Y_1, ..., Y_ranks)]`` for independent ranks, each prefilling in a
    step with probability ``busy`` and then carrying a token count drawn from ``chunks`` ((tokens,
    weight) pairs), else 0: ``floor + integral from floor to inf of (1 - F(y)^ranks) dy``."""
    if ranks <= 0 or busy <= 0:
        return floor_tokens
    total = sum(weight for _, weight in chunks)
    values = sorted(chunks)
    result = floor_tokens
    below = 0.0  # weight of the values under the current interval
    lo = 0.0
    for value, weight in values:
        if value > lo:
            a, b = max(lo, floor_tokens), value
            if b > a:
                cdf = (1 - busy) + busy * below / total
                result += (b - a) * (1 - cdf**ranks)
            lo = value
        below += weight
    return result


def largest_true(predicate: Callable[[float], bool], hi: float, iterations: int = 60) -> float:
    """Largest ``x`` in ``[0, hi]`` with ``predicate(x)`` true, for a predicate true up to a point
    and false after it (bisection: ``hi / 2^iterations`` from the answer)."""
    if predicate(hi):
        return hi
    lo = 0.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if predicate(mid):
            lo = mid
        else:
            hi = mid
    return lo


class SteadyLatencies:
    """What a steady-state point answers about its SLOs, for a dataclass with ``ttft_s``,
    ``ttft_percentiles_s``, ``tpot_s``, ``kv_tokens_used`` and ``kv_capacity_tokens``."""

    ttft_s: float
    ttft_percentiles_s: dict[str, float]
    tpot_s: float
    kv_tokens_used: float
    kv_capacity_tokens: int

    @property
    def kv_ok(self) -> bool:
        return self.kv_tokens_used <= self.kv_capacity_tokens

    def ttft_at(self, percentile: str) -> float:
        return self.ttft_s if percentile == "mean" else self.ttft_percentiles_s[percentile]

    def tpot_at(self, percentile: str) -> float:
        """The batch is steady, so every request sees the same TPOT: each percentile is the mean
        (the simulator shows the spread this leaves out)."""
        return self.tpot_s


@dataclass(frozen=True)
class ServingPoint(SteadyLatencies):
    """The analytic steady state of a plan under a serving workload (per replica unless named).

    ``stable`` is false when the load cannot be served at all (``rate`` at utilisation >= 1, or
    no request fits in KV memory); then ``reason`` says why and latencies are infinite."""

    kind: str
    stable: bool
    reason: str | None
    replicas: int
    gpus: int
    concurrency_per_replica: float  # n, requests in flight (waiting, prefilling, decoding)
    decode_batch: float  # b
    prefill_tokens_per_step: float  # c
    step_s: float
    ttft_s: float  # mean
    ttft_percentiles_s: dict[str, float]
    tpot_s: float
    output_tokens_per_s_per_replica: float
    requests_per_s: float  # whole deployment
    wait_s: float  # mean queueing before prefill
    kv_tokens_used: float
    kv_capacity_tokens: int
    utilisation: float  # offered load over the replica's capacity (rate), or b over its maximum
    prefill_utilisation: float
    admission_limit: str | None  # what caps the decode batch: "max_batch_size", "kv_cache", "prefill"

    @property
    def output_tokens_per_s_per_gpu(self) -> float:
        return self.output_tokens_per_s_per_replica * self.replicas / self.gpus

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "stable": self.stable,
            "reason": self.reason,
            "replicas": self.replicas,
            "concurrency_per_replica": self.concurrency_per_replica,
            "decode_batch_per_replica": self.decode_batch,
            "prefill_tokens_per_step": self.prefill_tokens_per_step,
            "step_ms": self.step_s * 1e3,
            "ttft_s": self.ttft_s,
            **{f"ttft_{name}_s": value for name, value in self.ttft_percentiles_s.items()},
            "tpot_ms": self.tpot_s * 1e3,
            "output_tokens_per_s_per_replica": self.output_tokens_per_s_per_replica,
            "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu,
            "requests_per_s": self.requests_per_s,
            "wait_s": self.wait_s,
            "kv_tokens_used": self.kv_tokens_used,
            "kv_capacity_tokens": self.kv_capacity_tokens,
            "utilisation": self.utilisation,
            "prefill_utilisation": self.prefill_utilisation,
            "admission_limit": self.admission_limit,
        }


class ServingModel:
    """The analytic steady state of one replica, on a :class:`StepTimer` (Q4-Q9)."""

    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer
        w = timer.problem.workload
        self.isl = w.serving_prompt_tokens
        self.osl = w.serving_output_tokens
        self.e = timer.tokens_per_decode_step
        # b at which prefill demand equals the chunk budget (rho_p = 1): the prefill ceiling
        self.b_prefill_max = timer.chunk_tokens * self.osl / (self.e * self.isl)
        #: Prefill budget of one attention-DP rank per step (a prompt lives on one rank).
        self.rank_chunk = timer.chunk_tokens / timer.dp_attn
        #: Steps one prompt spans on its rank when it has the budget to itself.
        self.prompt_steps = max(1, math.ceil(self.isl / self.rank_chunk - 1e-9))
        #: (Q6b) Fixed prompt and output lengths in a closed loop: requests admitted in the same step
        #: finish in the same step and come back together, so the prefill stream stays packed.
        #: Any spread (a mean, a distribution, a trace's lengths) breaks it; a duck-typed workload
        #: with only the mean fields (the hand-derived tests) is judged by those.
        fixed = getattr(w, "fixed_lengths", w.prompt_tokens.mean is None and w.output_tokens_mean is None)
        self.phase_locked = w.kind == "concurrency" and fixed
        #: Prompt and output tokens of the longest request (it must fit one rank's KV share).
        self.longest_request_tokens = w.prompt_tokens.max + w.output_tokens

    def seen_batch(self, b: float, n: float | None) -> float:
        """(Q5b) The decode batch a decoding request sees: itself and the others. Open loop
        (``n`` infinite): the others of an M/G/inf population are Poisson of mean ``b``, so
        ``1 + b``; closed loop of ``n``: ``1 + b (1 - 1/n)``; the batch of ``offline``: ``max(1, b)``."""
        if n is None:
            return max(1.0, b)
        return 1.0 + b * (1.0 - 1.0 / n) if math.isfinite(n) else 1.0 + b

    def _rank_steps(self, rank_tokens_per_step: float) -> tuple[tuple[float, float], ...]:
        """(Q6a) The token counts of the steps one prompt spends in prefill on its rank, as
        (tokens, steps): full chunks, then the tail, which shares its step with the prompt tokens
        that arrive alongside (``c_r`` a step on average, Poisson-like), up to the chunk."""
        full = self.prompt_steps - 1
        tail = self.isl - full * self.rank_chunk
        last = min(self.rank_chunk, tail + rank_tokens_per_step)
        return ((self.rank_chunk, float(full)), (last, 1.0)) if full else ((last, 1.0),)

    def state(self, b: float, n: float | None = None) -> ReplicaState:
        """The replica at mean decode batch ``b``; ``n`` the closed loop's requests per replica
        (``math.inf`` for an open loop, ``None`` for ``offline``), which sets the batch a decoder sees."""
        t = self.timer
        dp = t.dp_attn
        c = b * self.e * self.isl / self.osl  # (Q4) token balance: prompt tokens in = tokens out x ISL/OSL
        c_r = c / dp
        rho_p = c / t.chunk_tokens
        t_dec_seen = t.decode_s_real(self.seen_batch(b, n))
        t_dec = t.decode_s_real(b)  # the batch a prefill step meets: the time average
        if self.phase_locked:
            # (Q6b) every rank prefills in the same steps, each a full chunk (or every prompt in flight)
            rank_chunk = min(self.rank_chunk, (n or math.inf) / dp * self.isl)
            step = t_dec_seen + t.prefill_s(c)
            latency = self.prompt_steps * (t_dec + t.prefill_s(dp * rank_chunk))
            wait = 0.0
        else:
            chunks = self._rank_steps(c_r)
            busy_tokens = sum(v * w for v, w in chunks) / sum(w for _, w in chunks)
            busy = min(1.0, c_r / busy_tokens)  # share of steps in which a rank prefills
            # (Q1b) the ranks meet at every MoE layer: the busiest rank's tokens set the step
            step = t_dec_seen + t.prefill_s(dp * expected_max_tokens(0.0, busy, chunks, dp))
            latency = sum(
                weight * (t_dec + t.prefill_s(dp * expected_max_tokens(v, busy, chunks, dp - 1)))
                for v, weight in chunks
            )
            wait = md1_wait_s(rho_p, self.isl / self.rank_chunk * step)  # (Q7) one rank's budget
        x = b * self.e / (self.osl * step) if step > 0 else 0.0  # (Q5)
        kv = b * (self.isl + self.osl / 2) + x * latency * self.isl / 2
        return ReplicaState(b, c, step, x, rho_p, latency, wait, kv, x * self.osl)

    def batch_ceiling(self) -> tuple[float, str]:
        """(Q9) The largest steady decode batch and what caps it: the engine's max_batch_size,
        KV memory, or the prefill budget (just below rho_p = 1, where the prefill queue diverges)."""
        w = self.timer.problem.workload
        if self.longest_request_tokens > self.timer.kv_capacity_tokens / self.timer.dp_attn:
            return 0.0, "kv_cache"  # the longest request does not fit one attention-DP rank's KV share
        limits: list[tuple[float, str]] = [(self.b_prefill_max * (1 - 1e-6), "prefill")]
        if w.max_batch_size is not None:
            limits.append((float(w.max_batch_size), "max_batch_size"))
        hi, name = min(limits)
        b_kv = largest_true(lambda b: self.state(b).kv_tokens <= self.timer.kv_capacity_tokens, hi)
        if b_kv < hi:
            return b_kv, "kv_cache"
        return hi, name

    def _point(
        self,
        state: ReplicaState,
        n: float,
        extra_wait_s: float,
        utilisation: float,
        wait_rho: float,
        limit: str | None,
        align_s: float = 0.0,
    ) -> ServingPoint:
        t = self.timer
        wait = state.prefill_wait_s + extra_wait_s
        base = state.prefill_latency_s + align_s
        percentiles = {
            name: base + extra_wait_s + wait_quantile_s(state.prefill_wait_s, wait_rho, q)
            for name, q in PERCENTILES.items()
        }
        return ServingPoint(
            kind=t.problem.workload.kind,
            stable=True,
            reason=None,
            replicas=t.replicas,
            gpus=t.plan.gpus,
            concurrency_per_replica=n,
            decode_batch=state.decode_batch,
            prefill_tokens_per_step=state.prefill_tokens_per_step,
            step_s=state.step_s,
            ttft_s=base + wait,
            ttft_percentiles_s=percentiles,
            tpot_s=state.step_s / self.e,
            output_tokens_per_s_per_replica=state.output_tokens_per_s,
            requests_per_s=state.requests_per_s * t.replicas,
            wait_s=wait,
            kv_tokens_used=state.kv_tokens,
            kv_capacity_tokens=t.kv_capacity_tokens,
            utilisation=utilisation,
            prefill_utilisation=state.prefill_utilisation,
            admission_limit=limit,
        )

    def _unstable(self, reason: str, n: float, utilisation: float) -> ServingPoint:
        t = self.timer
        inf = math.inf
        return ServingPoint(
            t.problem.workload.kind,
            False,
            reason,
            t.replicas,
            t.plan.gpus,
            n,
            0.0,
            0.0,
            inf,
            inf,
            {name: inf for name in PERCENTILES},
            inf,
            0.0,
            0.0,
            inf,
            0.0,
            t.kv_capacity_tokens,
            utilisation,
            0.0,
            None,
        )

    def closed_loop(self, n: float) -> ServingPoint:
        """(Q6) ``n`` requests in flight on the replica, each replaced when it finishes: the decode
        batch ``b`` solves Little's law ``n = b + X(b) (W(b) + P(b))``; when the batch ceiling binds
        first, the requests beyond it wait outside the engine, ``(n - n(b_max)) / X(b_max)`` (Little)."""
        b_max, limit = self.batch_ceiling()
        if b_max <= 0:
            return self._unstable("not one request fits in the KV memory left after the weights", n, math.inf)
        hi = min(n, b_max)
        b = largest_true(lambda b: self.state(b, n).in_flight <= n, hi)
        state = self.state(b, n)
        extra = 0.0
        capped = b >= hi * (1 - 1e-9) and hi == b_max and state.in_flight < n
        if capped:
            # the queue outside keeps the engine full: a decoder sees the whole batch, as offline
            state = self.state(b)
            extra = (n - state.in_flight) / state.requests_per_s
        return self._point(state, n, extra, b / b_max, state.prefill_utilisation, limit if capped else None)

    def offline(self) -> ServingPoint:
        """(Q9) The batch is free: the largest steady decode batch (the ceiling), and the requests
        in flight that keep it fed."""
        b_max, limit = self.batch_ceiling()
        if b_max <= 0:
            return self._unstable("not one request fits in the KV memory left after the weights", 0.0, math.inf)
        state = self.state(b_max)
        return self._point(state, state.in_flight, 0.0, 1.0, state.prefill_utilisation, limit)

    def open_loop(self, rate_rps_per_replica: float) -> ServingPoint:
        """(Q7-Q8) Poisson arrivals at ``lambda`` per replica. Capacity ``mu`` is the offline
        point's request rate and ``rho = lambda / mu``; at ``rho >= 1`` the queue grows without
        bound. Otherwise ``b`` solves ``X(b) = lambda``. The only queue is the chunk budget of the
        request's attention-DP rank (an M/D/1 in tokens, ``W_p``): a continuously batched replica
        serves every admitted request at once, so there is no queue on the replica as a whole below
        the KV and batch limits; arrivals fall mid-step and wait half a step on average."""
        capacity = self.offline()
        if not capacity.stable:
            return self._unstable(capacity.reason or "", 0.0, math.inf)
        mu = capacity.requests_per_s / self.timer.replicas
        rho = rate_rps_per_replica / mu
        if rho >= 1:
            return self._unstable(
                f"arrivals {rate_rps_per_replica:.3g} requests/s per replica are at or above its capacity "
                f"{mu:.3g} requests/s (utilisation {rho:.2f} >= 1): the queue grows without bound",
                math.inf,
                rho,
            )
        b = largest_true(
            lambda b: self.state(b, math.inf).requests_per_s <= rate_rps_per_replica, capacity.decode_batch
        )
        state = self.state(b, math.inf)
        n = rate_rps_per_replica * (state.prefill_wait_s + state.prefill_latency_s + state.step_s / 2) + b
        return self._point(state, n, 0.0, rho, state.prefill_utilisation, None, align_s=state.step_s / 2)


def serving_point(problem: Problem, plan: Plan, timer: StepTimer | None = None) -> ServingPoint:
    """The analytic steady state of ``plan`` under ``problem``'s serving workload (not ``burst``)."""
    w = problem.workload
    model = ServingModel(timer or StepTimer(problem, plan))
    replicas = plan.parallelism.replicas
    if w.kind == "concurrency":
        assert w.concurrency is not None
        return model.closed_loop(w.concurrency / replicas)
    if w.kind == "offline":
        return model.offline()
    if w.kind == "rate":
        rate_rps = w.serving_rate_rps  # rate_rps, demand / mean OSL, or the trace's mean rate
        assert rate_rps is not None
        return model.open_loop(rate_rps / replicas)
    raise ValueError(f"workload.kind {w.kind!r} has no serving point (burst is the evaluator's own)")


def evaluate_serving(problem: Problem, plan: Plan) -> Evaluation:
    """The evaluator's figures, with TTFT, TPOT, decode throughput and their SLO checks taken from
    the serving model when the workload is not ``burst`` (at the percentile each SLO names), a
    ``kv_cache`` check (tokens the requests in flight hold against the replica's capacity) and a
    ``stable`` check (a rate the replicas cannot serve). ``burst``: :func:`evaluate` unchanged."""
    evaluation = evaluate(problem, plan)
    if problem.workload.kind == "burst":
        return evaluation
    point = serving_point(problem, plan)
    slo = problem.slo
    ttft = point.ttft_at(slo.ttft_percentile)
    tpot = point.tpot_at(slo.tpot_percentile)
    decode_tp = point.output_tokens_per_s_per_gpu / 1e3
    checks: list[Check] = []
    for check in evaluation.slo:
        if check.name == "ttft":
            check = replace(check, value=ttft)
        elif check.name == "tpot":
            check = replace(check, value=tpot * 1e3)
        elif check.name == "decode_throughput":
            check = replace(check, value=decode_tp)
        checks.append(check)
    checks.append(Check("kv_cache", point.kv_tokens_used, float(point.kv_capacity_tokens), "<=", "tokens/replica"))
    checks.append(Check("stable", 0.0 if point.stable else 1.0, 0.0, "<=", "unserved loads"))
    notes = evaluation.notes
    if not point.stable:
        notes = (*notes, f"serving: {point.reason}")
    return replace(
        evaluation,
        ttft_s=ttft,
        tpot_s=tpot,
        decode_tokens_per_ms_per_gpu=decode_tp,
        slo=tuple(checks),
        notes=notes,
        serving=point,
    )
