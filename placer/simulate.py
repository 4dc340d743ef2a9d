"""Discrete-event simulation of continuous batching on one replica: the referee of the analytic
serving model (:mod:`placer.serving`), the way the evaluator referees the solver.

What is simulated. Requests arrive (a closed loop of ``N`` in flight, each replaced by a new one the
moment it finishes; Poisson arrivals at ``rate_rps``; or all at ``t = 0`` for ``burst`` and
``offline``), wait in one FCFS queue and are admitted, in order, when their whole KV footprint
(prompt + output tokens) fits the replica's ``kv_capacity_tokens`` (reserved at admission, freed at
completion, so no request is ever pre-empted). Every engine step runs the admitted requests that
have finished their prefill as one decode batch (one token each) together with up to
``chunk_tokens`` prompt tokens of the requests still in prefill, shared FCFS (the oldest admitted
request takes what it still needs, the next one the rest). With attention data parallelism a
request lives on one of the replica's ``dp_attn`` ranks (admitted to the one with the most free KV;
KV capacity and prefill budget are split evenly), each rank prefills its own requests, and since
the ranks meet at every MoE layer the busiest rank sets the step's prefill time. The step lasts
``timer.step_s(decode_seqs, dp_attn x busiest rank's prefill tokens)``, the cost model the analytic
model uses. The step that consumes a request's last prompt token also yields its first output token (TTFT = that step's
end - arrival); each later step yields one token; TPOT = (finish - first token) / (output - 1).

Why a plain event loop and not SimPy. An engine step is synchronous: everything in the batch starts
and ends together, so there are no concurrent processes to interleave, only a sequence of steps
whose composition changes at a few events (an admission, a prefill finishing, a request finishing,
an arrival). The loop here jumps over runs of identical steps at once (between two events every
step has the same decode batch and the same prefill tokens, hence the same duration), and keeps
the decode batch in a heap keyed by the step at which each request finishes (every running request
gains one token per step, so that step is known at admission). Cost: O(events x log batch), about
three events per request, independent of the output length: thousands of requests take a fraction
of a second, where SimPy would schedule one process wake-up per request per step.

Replicas are independent and identical, so one replica is simulated: a deployment's ``N``
concurrent requests are dealt round-robin (``ceil(N / replicas)`` on the busiest replica, which is
the one simulated when ``N`` does not divide), and a Poisson stream of ``rate_rps`` split at random
over ``replicas`` gives each replica an independent Poisson stream of ``rate_rps / replicas``. An
arrival trace (``workload.arrival_trace``) is dealt round-robin and replica 0's share (the largest)
is replayed once from its first arrival (at ``t = 0``), with the trace's own lengths when it gives
them; a trace is the load itself, not a sample of a steady state, so there is no warm-up: every
request of the share is measured (up to ``requests``).

Warm-up. A closed loop starts as a burst (all ``N`` at ``t = 0``) and a Poisson queue starts empty;
neither is the steady state. The first ``warmup_requests`` completions (default: a fifth of
``requests``, and at least twice the concurrency) are discarded: ``t_warm`` is the time of the last
of them, and the statistics are those of the first ``requests`` requests that arrive at or after
``t_warm``, the run ending when the last of them finishes (measuring a fixed set of arrivals, not
the first ``requests`` completions, keeps long requests from being under-sampled). Throughput,
mean batch and mean queue are time averages over ``[t_warm, t_end]``. ``burst`` and ``offline``
have no steady state: every request is measured from ``t = 0``.

Determinism: one ``numpy.random.Generator`` seeded by ``seed`` draws the arrival gaps and the
lengths in a fixed order, so the same inputs give the same figures on every run and platform.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from placer.errors import InputError
from placer.problem import Problem
from placer.schema import Plan, Workload
from placer.schema.workload import LengthDistribution
from placer.serving import StepTimer

ArrivalKind = Literal["closed", "poisson", "batch", "trace"]
#: draws (prompt_tokens, output_tokens) arrays of ``n`` requests from ``rng``
LengthSampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
#: length of the timeline kept for the picture (events are thinned evenly beyond it)
TIMELINE_POINTS = 4000


class ReplicaTimer(Protocol):
    """What the simulator needs from the cost model (``placer.serving.StepTimer`` provides it)."""

    kv_capacity_tokens: int  # the replica's, shared evenly by its attention-DP ranks
    chunk_tokens: int  # the replica's prefill budget per step, shared evenly by its attention-DP ranks
    dp_attn: int

    def step_s(self, decode_seqs: int, prefill_tokens: int) -> float: ...


@dataclass(frozen=True)
class Arrivals:
    """How requests reach one replica.

    ``closed``: ``concurrency`` requests in flight, each replaced at once when it finishes.
    ``poisson``: open loop at ``rate_rps`` requests per second. ``batch``: ``count`` requests at ``t = 0``.
    ``trace``: one request at each of ``times_s`` (non-decreasing), replayed once; ``rate_rps`` is
    then the trace's mean rate, for the overload note.
    """

    kind: ArrivalKind
    concurrency: int = 0
    rate_rps: float = 0.0
    count: int = 0
    times_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class Stats:
    """Mean and percentiles of one latency, in seconds."""

    mean: float
    p50: float
    p90: float
    p99: float

    @staticmethod
    def of(values: np.ndarray) -> Stats:
        if values.size == 0:
            return Stats(math.nan, math.nan, math.nan, math.nan)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return Stats(float(values.mean()), float(p50), float(p90), float(p99))

    def to_dict(self, scale: float = 1.0) -> dict[str, float]:
        return {"mean": self.mean * scale, "p50": self.p50 * scale, "p90": self.p90 * scale, "p99": self.p99 * scale}


class MeasuredWindow:
    """Figures of a simulation's measured window, for a dataclass with ``ttft_s``, ``tpot_s`` (one
    entry per measured request), ``output_tokens``, ``completed`` and ``window_s``; shared by the
    aggregated and the disaggregated simulator."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray
    output_tokens: float
    completed: int
    window_s: float

    @property
    def ttft(self) -> Stats:
        return Stats.of(self.ttft_s)

    @property
    def tpot(self) -> Stats:
        return Stats.of(self.tpot_s)

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.window_s if self.window_s > 0 else math.nan

    @property
    def requests_per_s(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else math.nan


@dataclass(frozen=True)
class ReplicaRun(MeasuredWindow):
    """The measured part of one replica's simulation."""

    ttft_s: np.ndarray  # one entry per measured request
    tpot_s: np.ndarray  # measured requests with more than one output token
    window_s: float  # [t_warm, t_end]
    warmup_s: float  # t_warm
    output_tokens: float  # tokens emitted inside the window (every request, measured or not)
    completed: int  # requests finished inside the window
    mean_running: float  # admitted requests (prefill + decode), time average over the window
    mean_decode_batch: float  # decode sequences per step, time average over the window
    mean_queue: float  # waiting requests, time average over the window
    steps: int  # engine steps in the whole run
    timeline: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False)  # time s, queue, running


class _Request:
    __slots__ = ("arrival_s", "prompt", "output", "prefill_left", "first_token_s", "measured", "rank")

    def __init__(self, arrival_s: float, prompt: int, output: int, measured: bool) -> None:
        self.arrival_s = arrival_s
        self.prompt = prompt
        self.output = output
        self.prefill_left = prompt
        self.first_token_s = math.nan
        self.measured = measured
        self.rank = 0


class _Source:
    """Lengths (and, for Poisson, arrival gaps) drawn in blocks from one generator, in a fixed order."""

    BLOCK = 1024

    def __init__(self, lengths: LengthSampler, rng: np.random.Generator) -> None:
        self.lengths = lengths
        self.rng = rng
        self.prompts: list[int] = []
        self.outputs: list[int] = []

    def next_lengths(self) -> tuple[int, int]:
        if not self.prompts:
            prompts, outputs = self.lengths(self.rng, self.BLOCK)
            self.prompts = [int(v) for v in prompts[::-1]]
            self.outputs = [int(v) for v in outputs[::-1]]
        return self.prompts.pop(), self.outputs.pop()


def simulate_replica(
    timer: ReplicaTimer,
    arrivals: Arrivals,
    lengths: LengthSampler,
    requests: int = 2000,
    seed: int = 0,
    warmup_requests: int | None = None,
    max_running: int | None = None,
    tokens_per_decode_step: float = 1.0,
) -> ReplicaRun:
    """Run one replica until ``requests`` measured requests have finished (see the module docstring).

    ``max_running`` caps the admitted requests (an engine's maximum batch) on top of the KV limit.
    ``tokens_per_decode_step`` > 1 (MTP, speculative drafts) is taken at its expectation: a request
    needs ``ceil((output - 1) / tokens_per_decode_step)`` decode steps after its first token.
    """
    if requests < 1:
        raise InputError.single("requests", f"must be >= 1, got {requests}")
    ranks = max(1, int(getattr(timer, "dp_attn", 1)))
    capacity = int(timer.kv_capacity_tokens) // ranks  # per attention-DP rank
    chunk = int(timer.chunk_tokens) // ranks  # per attention-DP rank
    if chunk < 1:
        raise InputError.single("workload.prefill_chunk_tokens", f"the prefill budget must be >= 1, got {chunk}")
    running_cap = max_running or math.inf
    per_step = float(tokens_per_decode_step)
    rng = np.random.default_rng(seed)
    source = _Source(lengths, rng)
    steady = arrivals.kind != "batch"
    if arrivals.kind == "closed" and arrivals.concurrency < 1:
        raise InputError.single("workload.concurrency", f"must be >= 1, got {arrivals.concurrency}")
    if arrivals.kind == "poisson" and not arrivals.rate_rps > 0:
        raise InputError.single("workload.rate_rps", f"must be > 0, got {arrivals.rate_rps}")
    if arrivals.kind == "trace" and not arrivals.times_s:
        raise InputError.single("workload.arrival_trace", "no arrivals for this replica")
    if warmup_requests is None:
        warmup_requests = max(requests // 5, 2 * arrivals.concurrency) if steady else 0
        if arrivals.kind == "trace":  # a trace is the load itself, replayed from its start: all measured
            warmup_requests = 0
    trace_times = iter(arrivals.times_s)

    def next_arrival_after(previous: float) -> float:
        """The next arrival: a Poisson gap, the trace's next time, or none."""
        if arrivals.kind == "poisson":
            return previous + float(rng.exponential(1.0 / arrivals.rate_rps))
        if arrivals.kind == "trace":
            return next(trace_times, math.inf)
        return math.inf

    total_batch = arrivals.count if arrivals.kind == "batch" else 0
    if arrivals.kind == "batch" and total_batch < 1:
        raise InputError.single("workload.batch_size", f"must be >= 1, got {total_batch}")

    t = 0.0
    t_warm = 0.0 if not steady else math.inf
    done_total = 0
    measured_started = 0  # measured requests that have arrived
    measured_left = 0  # measured requests still in the system
    target = requests if steady else total_batch

    queue: deque[_Request] = deque()
    prefilling: list[deque[_Request]] = [deque() for _ in range(ranks)]  # per rank, admission order
    prefill_total = [0] * ranks
    kv_used = [0] * ranks
    in_prefill = 0
    decoding: list[tuple[int, int, _Request]] = []  # (finish step, tie-break, request)
    step = 0
    serial = 0

    ttft: list[float] = []
    tpot: list[float] = []
    window_tokens = 0.0
    window_done = 0
    area_running = area_decode = area_queue = 0.0
    times: list[float] = [0.0]
    queue_at: list[int] = [0]
    running_at: list[int] = [0]

    def arrive(at: float) -> None:
        nonlocal measured_started, measured_left
        prompt, output = source.next_lengths()
        if prompt < 1 or output < 1:
            raise InputError.single("workload", f"a request needs >= 1 prompt and output token: {prompt}, {output}")
        if prompt + output > capacity:
            raise InputError.single(
                "workload",
                f"a request of {prompt} prompt + {output} output tokens needs more KV than one attention-DP "
                f"rank of a replica holds ({capacity:,} tokens)",
            )
        measured = at >= t_warm and measured_started < target
        if measured:
            measured_started += 1
            measured_left += 1
        queue.append(_Request(at, prompt, output, measured))

    next_arrival = math.inf
    if arrivals.kind == "closed":
        for _ in range(arrivals.concurrency):
            arrive(0.0)
    elif arrivals.kind == "batch":
        for _ in range(total_batch):
            arrive(0.0)
    else:
        next_arrival = next_arrival_after(0.0)

    def finish(req: _Request) -> None:
        nonlocal done_total, t_warm, measured_left, window_done
        kv_used[req.rank] -= req.prompt + req.output
        done_total += 1
        if t >= t_warm:
            window_done += 1
        if req.measured:
            measured_left -= 1
            ttft.append(req.first_token_s - req.arrival_s)
            if req.output > 1:
                tpot.append((t - req.first_token_s) / (req.output - 1))
        if steady and done_total == warmup_requests and t_warm == math.inf:
            t_warm = t
        if arrivals.kind == "closed":
            arrive(t)

    if steady and warmup_requests == 0:
        t_warm = 0.0
        # requests already queued at t = 0 count as measured
        for req in queue:
            if not req.measured and measured_started < target:
                req.measured = True
                measured_started += 1
                measured_left += 1

    while True:
        while next_arrival <= t:
            if next_arrival >= t_warm:
                area_queue += t - next_arrival  # it waited from its arrival to this step boundary
            arrive(next_arrival)
            next_arrival = next_arrival_after(next_arrival)
        while queue and in_prefill + len(decoding) < running_cap:
            rank = min(range(ranks), key=kv_used.__getitem__)  # most free KV, lowest index on ties
            req = queue[0]
            if kv_used[rank] + req.prompt + req.output > capacity:
                break
            queue.popleft()
            req.rank = rank
            kv_used[rank] += req.prompt + req.output
            prefilling[rank].append(req)
            prefill_total[rank] += req.prompt
            in_prefill += 1
            _record(times, queue_at, running_at, t, len(queue), in_prefill + len(decoding))
        if measured_started >= target and measured_left == 0:
            break
        decode_seqs = len(decoding)
        if not in_prefill and not decode_seqs:
            if next_arrival == math.inf:
                break  # nothing left to run: a batch has drained
            t = next_arrival
            _record(times, queue_at, running_at, t, len(queue), 0)
            continue
        # Each rank prefills its own requests FCFS within its budget; the ranks meet at every MoE
        # layer, so the busiest rank sets the step: it is charged as if every rank ran its tokens.
        k = math.inf
        busiest = 0
        head_only = [False] * ranks
        for r in range(ranks):
            if not prefilling[r]:
                continue
            left = prefilling[r][0].prefill_left
            if left > chunk:  # only the oldest request advances, by a whole chunk, for these steps
                head_only[r] = True
                busiest = chunk
                k = min(k, (left - 1) // chunk)
            else:
                busiest = max(busiest, min(chunk, prefill_total[r]))
                k = 1
        prefill_tokens = busiest * ranks
        if decoding:
            k = min(k, decoding[0][0] - step)
        dt = float(timer.step_s(decode_seqs, prefill_tokens))
        if not dt > 0:
            raise ValueError(f"step time must be > 0, got {dt} for ({decode_seqs}, {prefill_tokens})")
        if next_arrival < math.inf:
            k = min(k, max(1, math.ceil((next_arrival - t) / dt)))
        k = int(k)
        t0 = t
        t += k * dt
        step += k
        if t0 >= t_warm:
            window_tokens += decode_seqs * k * per_step
            area_running += (decode_seqs + in_prefill) * k * dt
            area_decode += decode_seqs * k * dt
            area_queue += len(queue) * k * dt
        for r in range(ranks):
            if head_only[r]:
                prefilling[r][0].prefill_left -= k * chunk
                prefill_total[r] -= k * chunk
                continue
            budget = min(chunk, prefill_total[r])
            prefill_total[r] -= budget
            while budget and prefilling[r]:
                head = prefilling[r][0]
                take = min(budget, head.prefill_left)
                head.prefill_left -= take
                budget -= take
                if head.prefill_left:
                    break
                prefilling[r].popleft()
                in_prefill -= 1
                head.first_token_s = t
                if t0 >= t_warm:
                    window_tokens += 1
                if head.output == 1:
                    finish(head)
                else:
                    serial += 1
                    heapq.heappush(decoding, (step + math.ceil((head.output - 1) / per_step), serial, head))
        while decoding and decoding[0][0] == step:
            finish(heapq.heappop(decoding)[2])
        _record(times, queue_at, running_at, t, len(queue), in_prefill + len(decoding))

    window = t - t_warm if t_warm < math.inf else 0.0
    return ReplicaRun(
        ttft_s=np.asarray(ttft, dtype=float),
        tpot_s=np.asarray(tpot, dtype=float),
        window_s=window,
        warmup_s=t_warm if t_warm < math.inf else t,
        output_tokens=window_tokens,
        completed=window_done,
        mean_running=area_running / window if window > 0 else math.nan,
        mean_decode_batch=area_decode / window if window > 0 else math.nan,
        mean_queue=area_queue / window if window > 0 else math.nan,
        steps=step,
        timeline=_thin(times, queue_at, running_at),
    )


def _record(
    times: list[float], queue_at: list[int], running_at: list[int], t: float, queued: int, running: int
) -> None:
    if queue_at[-1] == queued and running_at[-1] == running:
        return
    times.append(t)
    queue_at.append(queued)
    running_at.append(running)


def _thin(times: list[float], queue_at: list[int], running_at: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, q, r = np.asarray(times), np.asarray(queue_at), np.asarray(running_at)
    if t.size > TIMELINE_POINTS:
        keep = np.unique(np.linspace(0, t.size - 1, TIMELINE_POINTS).round().astype(int))
        t, q, r = t[keep], q[keep], r[keep]
    return t, q, r


def workload_lengths(workload: Workload, replica: int = 0, replicas: int = 1) -> LengthSampler:
    """Prompt and output lengths drawn for a workload, with the means the analytic model uses.

    - An arrival trace with per-request lengths: its lengths, in arrival order, of the requests
      dealt to ``replica`` of ``replicas`` round-robin (as :func:`replica_arrivals` deals the times).
    - A ``*_length_distribution``: drawn from its histogram, each length with probability weight /
      total (``Generator.choice``): the analytic model takes the histogram's mean.
    - A length with no mean given is fixed (prompt: ``prompt_tokens.max``; output: ``output_tokens``),
      as the analytic model takes it. With a mean ``m`` in ``[lo, hi]`` (prompt: ``[min, max]``;
      output: ``[1, output_tokens]``) the length is uniform on ``[m - h, m + h]``, ``h = min(m - lo,
      hi - m)``, rounded: the widest uniform spread that keeps the mean and stays within the range.

    Prompt lengths of a block are drawn before its output lengths, from the one seeded generator.
    """
    trace = workload.arrival_trace
    if trace is not None and trace.prompt_tokens is not None and trace.output_tokens is not None:
        prompts = np.asarray(trace.prompt_tokens[replica::replicas], dtype=np.int64)
        outputs = np.asarray(trace.output_tokens[replica::replicas], dtype=np.int64)
        position = 0

        def replay(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
            nonlocal position
            # blocks are drawn ahead of the arrivals: past the trace's end, the lengths are never used
            index = (position + np.arange(n)) % prompts.size
            position += n
            return prompts[index], outputs[index]

        return replay

    prompt = workload.prompt_tokens
    prompt_spec = (prompt.min, prompt.max, prompt.mean, workload.prompt_length_distribution)
    output_spec = (1, workload.output_tokens, workload.output_tokens_mean, workload.output_length_distribution)

    def column(
        rng: np.random.Generator, n: int, lo: int, hi: int, mean: float | None, dist: LengthDistribution | None
    ) -> np.ndarray:
        if dist is not None:
            assert dist.histogram is not None, "a lengths file is read at load (placer.problem)"
            tokens = np.asarray([t for t, _ in dist.histogram], dtype=np.int64)
            weights = np.asarray([w for _, w in dist.histogram], dtype=float)
            return rng.choice(tokens, size=n, p=weights / weights.sum())
        if mean is None:
            return np.full(n, hi, dtype=np.int64)
        half = min(mean - lo, hi - mean)
        drawn = np.rint(rng.uniform(mean - half, mean + half, n)).astype(np.int64)
        return np.clip(drawn, lo, hi)

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return column(rng, n, *prompt_spec), column(rng, n, *output_spec)

    return draw


def replica_arrivals(workload: Workload, replicas: int, requests: int) -> tuple[Arrivals, tuple[str, ...]]:
    """One replica's share of the deployment's arrivals (see the module docstring), with notes.

    An arrival trace is dealt to the replicas round-robin (request ``i`` to replica ``i mod
    replicas``, as a round-robin router does) and replica 0's share, the largest, is replayed."""
    notes: list[str] = []
    if workload.kind == "concurrency":
        concurrency = workload.concurrency or 0
        per_replica = math.ceil(concurrency / replicas)
        if concurrency % replicas:
            notes.append(
                f"{concurrency} requests over {replicas} replicas: the busiest replica ({per_replica}) is simulated"
            )
        return Arrivals("closed", concurrency=per_replica), tuple(notes)
    if workload.kind == "rate":
        trace = workload.arrival_trace
        if workload.rate_rps is None and workload.demand_output_tokens_per_s is None and trace is not None:
            assert trace.arrival_s is not None, "a trace file is read at load (placer.problem)"
            share = trace.arrival_s[0::replicas]
            times = tuple(at - share[0] for at in share)  # from the replica's first arrival
            span = times[-1] - times[0]
            rate = (len(times) - 1) / span if span > 0 else trace.mean_rate_rps / replicas
            notes.append(
                f"trace: {len(trace.arrival_s)} arrivals dealt round-robin over {replicas} replicas; replica 0's "
                f"{len(times)} replayed once (mean {rate:.3g} requests/s)"
            )
            return Arrivals("trace", rate_rps=rate, times_s=times), tuple(notes)
        return Arrivals("poisson", rate_rps=(workload.serving_rate_rps or 0.0) / replicas), ()
    if workload.kind == "offline":
        notes.append(f"offline: {requests} requests per replica at t = 0, admitted as KV memory allows")
        return Arrivals("batch", count=requests), tuple(notes)
    per_replica = math.ceil(workload.batch_size / replicas)
    notes.append(f"burst: {per_replica} requests per replica at t = 0")
    return Arrivals("batch", count=per_replica), tuple(notes)


@dataclass(frozen=True)
class Simulation:
    """A plan simulated under its instance's workload: one replica's run and the deployment's figures."""

    kind: str
    replicas: int
    gpus: int
    arrivals: Arrivals  # per replica
    kv_capacity_tokens: int
    chunk_tokens: int
    requests: int
    seed: int
    run: ReplicaRun
    notes: tuple[str, ...]

    @property
    def output_tokens_per_s(self) -> float:
        """Whole deployment: every replica runs as the simulated one."""
        return self.run.output_tokens_per_s * self.replicas

    @property
    def output_tokens_per_s_per_gpu(self) -> float:
        return self.output_tokens_per_s / self.gpus

    @property
    def requests_per_s(self) -> float:
        return self.run.requests_per_s * self.replicas

    def to_dict(self) -> dict[str, object]:
        run = self.run
        arrivals = {"kind": self.arrivals.kind}
        if self.arrivals.kind == "closed":
            arrivals["concurrency_per_replica"] = self.arrivals.concurrency
        elif self.arrivals.kind == "poisson":
            arrivals["rate_rps_per_replica"] = self.arrivals.rate_rps
        elif self.arrivals.kind == "trace":
            arrivals["requests_per_replica"] = len(self.arrivals.times_s)
            arrivals["mean_rate_rps_per_replica"] = self.arrivals.rate_rps
        else:
            arrivals["requests_per_replica"] = self.arrivals.count
        return {
            "kind": self.kind,
            "replicas": self.replicas,
            "gpus": self.gpus,
            "arrivals": arrivals,
            "kv_capacity_tokens_per_replica": self.kv_capacity_tokens,
            "prefill_chunk_tokens_per_step": self.chunk_tokens,
            "seed": self.seed,
            "measured_requests": int(run.ttft_s.size),
            "warmup_s": run.warmup_s,
            "window_s": run.window_s,
            "engine_steps": run.steps,
            "ttft_ms": run.ttft.to_dict(1e3),
            "tpot_ms": run.tpot.to_dict(1e3),
            "output_tokens_per_s_per_replica": run.output_tokens_per_s,
            "output_tokens_per_s": self.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu,
            "requests_per_s": self.requests_per_s,
            "mean_running_per_replica": run.mean_running,
            "mean_decode_batch_per_replica": run.mean_decode_batch,
            "mean_queue_per_replica": run.mean_queue,
            "mean_concurrency": (run.mean_running + run.mean_queue) * self.replicas,
            "notes": list(self.notes),
        }


def simulate(
    problem: Problem, plan: Plan, requests: int = 2000, seed: int = 0, timer: ReplicaTimer | None = None
) -> Simulation:
    """Simulate ``plan`` under ``problem``'s workload, step times from :class:`placer.serving.StepTimer`."""
    if timer is None:
        timer = StepTimer(problem, plan)
    workload = problem.workload
    replicas = plan.parallelism.replicas
    arrivals, notes = replica_arrivals(workload, replicas, requests)
    if timer.kv_capacity_tokens < 1:
        raise InputError.single("plan", "no KV memory is left on the replica's GPUs after weights and workspace")
    run = simulate_replica(
        timer,
        arrivals,
        workload_lengths(workload, 0, replicas),
        requests=requests,
        seed=seed,
        max_running=workload.max_batch_size,
        tokens_per_decode_step=workload.output_tokens_per_step,
    )
    notes_list = list(notes)
    if arrivals.kind in ("poisson", "trace") and run.requests_per_s < 0.97 * arrivals.rate_rps:
        notes_list.append(
            f"overloaded: a replica completes {run.requests_per_s:.3g} of the {arrivals.rate_rps:.3g} requests/s "
            "offered; the queue grows without bound and the figures depend on --requests"
        )
    return Simulation(
        kind=workload.kind,
        replicas=replicas,
        gpus=plan.parallelism.gpus,
        arrivals=arrivals,
        kv_capacity_tokens=int(timer.kv_capacity_tokens),
        chunk_tokens=int(timer.chunk_tokens),
        requests=requests,
        seed=seed,
        run=run,
        notes=tuple(notes_list),
    )
