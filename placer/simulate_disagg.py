"""Discrete-event simulation of a disaggregated deployment: the prefill pool, the KV transfer and the
decode pool, every replica and attention-DP rank of both pools simulated; the referee of the analytic
two-pool model (:mod:`placer.serving_disagg`), as :mod:`placer.simulate` referees :mod:`placer.serving`.

The life of a request:

1. **Arrival** (the same generators as :mod:`placer.simulate`: a closed loop of ``N`` in flight, each
   replaced the moment it finishes; Poisson arrivals; an arrival trace replayed once; ``offline``:
   ``requests`` at ``t = 0``). It goes to a prefill replica (Poisson: one drawn uniformly, so each
   replica sees an independent Poisson share, the analytic model's (D2); other kinds round-robin) and,
   in it, to the attention-DP rank with the fewest prompt tokens still to prefill (a rank is one of
   (D2)'s ``c = dp`` servers; least work left is what a central FCFS queue over them does).
2. **Prefill.** A prefill replica runs steps while any rank has prompt tokens left: each rank takes up
   to its share of the chunk budget (``chunk_tokens / dp``) from its own requests, oldest first; the
   ranks meet at every MoE layer, so the step lasts ``prefill_s(dp x the busiest rank's tokens)``, the
   cost model's time (``StepTimer.prefill_s``: a prompt of ISL tokens alone on every rank takes the
   evaluator's ``P``, (D1)). A request that arrives during a step joins at the next one. No decode runs
   on this pool.
3. **Decode admission.** A prefilled request waits in one FCFS queue until a decode (replica, rank)
   has room in its KV for its prompt + output tokens (the rank with the most free KV, lowest index on
   ties; and at most ``max_batch_size`` requests per decode replica, in transfer or decoding). The KV
   is reserved when the transfer starts and freed when the request finishes (as in
   :mod:`placer.simulate`: no request is ever pre-empted; the analytic (D4) counts a decoding
   request's mean ``ISL + OSL / 2``, so the simulation fills up sooner).
4. **KV transfer** (:mod:`placer.costmodel.kvtransfer`): ``bytes = KV bytes per token x prompt``
   (K1), a fixed ``latency`` and then the bytes. Each prefill rank sends over its own lanes
   (``lanes_per_request`` of the prefill pool x link bytes/s) and each decode rank receives over its
   own; concurrent transfers share them: a transfer moves at ``min(send / n_send, receive /
   n_receive)``, ``n`` the transfers moving through the same sending rank and the same receiving rank
   (processor sharing at each end, rates recomputed whenever a transfer starts or ends). One transfer
   alone takes exactly (K4)'s ``latency + bytes / (lanes x link bytes/s)``.
5. **First token** when the KV has landed (D5: sampled by the prefill pool, streamed once the KV is on
   the decode side): TTFT = landing - arrival. The request joins its decode replica's batch at the
   replica's next step boundary (at once when the replica is idle).
6. **Decode.** A decode replica runs steps of all its landed requests, one token each (or
   ``tokens_per_decode_step``, at its expectation, as :mod:`placer.simulate`), each step lasting
   ``decode_s(batch)`` of the decode pool's :class:`placer.serving.StepTimer` (D3). A request needs
   ``ceil((output - 1) / tokens_per_step)`` steps; TPOT = (finish - first token) / (output - 1). A
   request of one output token finishes with its prefill and sends nothing.

Event loop. Events are arrivals, prefill step ends, transfer milestones (a latency elapsed, bytes
done) and decode-replica changes, in one heap ordered by time and then insertion. A decode replica
jumps over runs of identical steps (between two changes every step has the same batch, so the same
duration; the next change is the earliest finish, known at admission, or the boundary after a
landing), so its cost is a few events per request whatever the output length.

Warm-up and measurement as in :mod:`placer.simulate`: the first ``warmup_requests`` completions are
discarded (closed loop and Poisson), the statistics are those of the first ``requests`` arrivals at
or after the warm-up's end, and time averages run over ``[t_warm, t_end]``; a trace and ``offline``
are measured from ``t = 0``. One seeded ``numpy`` generator draws lengths, gaps and replica choices
in a fixed order, so a seed gives the same figures on every run.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from placer.costmodel.kvtransfer import KvPath, kv_bytes_per_request, kv_path, lanes_in_pool, lanes_per_request
from placer.errors import InputError
from placer.problem import Problem
from placer.schema import DisaggregatedPlan
from placer.serving import StepTimer
from placer.serving_disagg import pool_nodes
from placer.simulate import (
    TIMELINE_POINTS,
    Arrivals,
    LengthSampler,
    MeasuredWindow,
    Stats,
    _Source,
    replica_arrivals,
    workload_lengths,
)

#: Kinds of event: an arrival, a prefill step's start and end, a transfer milestone, a decode-replica change.
_ARRIVAL, _PREFILL_START, _PREFILL, _LINK, _DECODE = 0, 1, 2, 3, 4
#: Counters kept over time: waiting for prefill, prefilling, waiting for decode KV, in transfer, decoding.
STATES = ("prefill_queue", "prefilling", "decode_queue", "transferring", "decoding")


class PoolTimer(Protocol):
    """What the simulator needs of one pool's cost model (``placer.serving.StepTimer`` provides it)."""

    kv_capacity_tokens: int  # one replica's, shared evenly by its attention-DP ranks
    chunk_tokens: int  # one replica's prefill budget per step, shared evenly by its ranks
    dp_attn: int

    def prefill_s(self, prefill_tokens: float) -> float: ...

    def decode_s(self, decode_seqs: int) -> float: ...


@dataclass(frozen=True)
class Link:
    """The KV path as the simulator uses it: per rank, the bytes/s one prefill rank sends and one
    decode rank receives (its lanes x the path's link bytes/s), the latency, and the bytes per
    prompt token (K1)."""

    kind: str
    latency_s: float
    send_bytes_per_s: float  # one prefill attention-DP rank
    receive_bytes_per_s: float  # one decode attention-DP rank
    bytes_per_token: float
    capacity_bytes_per_s: float  # the whole path (K5): the fewer of the two pools' lanes x link bytes/s

    def alone_s(self, prompt_tokens: int) -> float:
        """(K4) one transfer with the links to itself."""
        rate = min(self.send_bytes_per_s, self.receive_bytes_per_s)
        return self.latency_s + prompt_tokens * self.bytes_per_token / rate


@dataclass(frozen=True)
class DisaggRun(MeasuredWindow):
    """The measured part of a disaggregated simulation (whole deployment unless named)."""

    ttft_s: np.ndarray  # one entry per measured request
    tpot_s: np.ndarray  # measured requests with more than one output token
    prefill_wait_s: np.ndarray  # arrival -> its first prefill step
    prefill_s: np.ndarray  # first prefill step -> last prompt token
    decode_wait_s: np.ndarray  # prompt done -> transfer start (waiting for decode KV)
    transfer_s: np.ndarray  # transfer start -> KV landed (measured requests that sent KV)
    window_s: float
    warmup_s: float
    output_tokens: float  # emitted inside the window
    completed: int  # finished inside the window
    prompt_tokens: float  # prefilled inside the window
    kv_bytes: float  # moved over the KV path inside the window
    means: dict[str, float]  # time average of each of STATES over the window (whole deployment)
    prefill_busy: float  # fraction of the window a prefill replica spends in steps (mean over replicas)
    decode_busy: float  # the same for the decode replicas
    mean_decode_batch: float  # per decode replica, time average over the window
    prefill_steps: int
    decode_steps: int
    timeline: tuple[np.ndarray, np.ndarray] = field(repr=False)  # times s, counts (len(STATES) x times)


class _Req:
    __slots__ = (
        "arrival_s",
        "prompt",
        "output",
        "measured",
        "left",
        "p_rep",
        "p_rank",
        "d_rep",
        "d_rank",
        "prefill_start_s",
        "prefilled_s",
        "transfer_start_s",
        "first_token_s",
        "bytes_left",
        "ready_s",
        "rate",
        "done_s",
    )

    def __init__(self, arrival_s: float, prompt: int, output: int, measured: bool) -> None:
        self.arrival_s = arrival_s
        self.prompt = prompt
        self.output = output
        self.measured = measured
        self.left = prompt
        self.p_rep = self.p_rank = self.d_rep = self.d_rank = 0
        self.prefill_start_s = self.prefilled_s = self.transfer_start_s = self.first_token_s = math.nan
        self.bytes_left = 0.0
        self.ready_s = 0.0
        self.rate = 0.0
        self.done_s = math.inf  # when its bytes are done at the current rates


class _Prefiller:
    """One prefill replica: per rank FCFS queues of prompt tokens still to prefill."""

    def __init__(self, ranks: int) -> None:
        self.queues: list[deque[_Req]] = [deque() for _ in range(ranks)]
        self.left = [0] * ranks  # prompt tokens still to prefill, per rank
        self.takes: list[int] = [0] * ranks  # tokens each rank prefills in the running step
        self.busy = False
        self.step_start_s = 0.0


class _Decoder:
    """One decode replica: its batch keyed by the step at which each request finishes."""

    def __init__(self, ranks: int) -> None:
        self.batch: list[tuple[int, int, _Req]] = []
        self.pending: list[_Req] = []  # landed, joining at the next step boundary
        self.kv_used = [0] * ranks
        self.admitted = 0  # in transfer or decoding
        self.step = 0  # steps done at run_s
        self.run_s = 0.0  # a step boundary
        self.dt = 0.0  # step duration of the current run (0 when idle)
        self.k_next = 0  # steps from run_s to the scheduled event
        self.version = 0


def simulate_pools(
    prefill: PoolTimer,
    decode: PoolTimer,
    link: Link,
    arrivals: Arrivals,
    lengths: LengthSampler,
    prefill_replicas: int = 1,
    decode_replicas: int = 1,
    requests: int = 2000,
    seed: int = 0,
    warmup_requests: int | None = None,
    max_batch: int | None = None,
    tokens_per_decode_step: float = 1.0,
) -> DisaggRun:
    """Run both pools until ``requests`` measured requests have finished (see the module docstring).

    ``arrivals`` are the whole deployment's (not one replica's); ``max_batch`` caps the requests one
    decode replica holds (in transfer or decoding)."""
    if requests < 1:
        raise InputError.single("requests", f"must be >= 1, got {requests}")
    p_ranks, d_ranks = max(1, int(prefill.dp_attn)), max(1, int(decode.dp_attn))
    p_chunk = int(prefill.chunk_tokens) // p_ranks
    if p_chunk < 1:
        raise InputError.single("workload.prefill_chunk_tokens", f"the prefill budget must be >= 1, got {p_chunk}")
    p_capacity = int(prefill.kv_capacity_tokens) // p_ranks
    d_capacity = int(decode.kv_capacity_tokens) // d_ranks
    if arrivals.kind == "closed" and arrivals.concurrency < 1:
        raise InputError.single("workload.concurrency", f"must be >= 1, got {arrivals.concurrency}")
    if arrivals.kind == "poisson" and not arrivals.rate_rps > 0:
        raise InputError.single("workload.rate_rps", f"must be > 0, got {arrivals.rate_rps}")
    if arrivals.kind == "trace" and not arrivals.times_s:
        raise InputError.single("workload.arrival_trace", "no arrivals")
    if arrivals.kind == "batch" and arrivals.count < 1:
        raise InputError.single("workload", f"a batch needs >= 1 request, got {arrivals.count}")
    per_step = float(tokens_per_decode_step)
    cap = max_batch or math.inf
    steady = arrivals.kind in ("closed", "poisson")
    if warmup_requests is None:
        warmup_requests = max(requests // 5, 2 * arrivals.concurrency) if steady else 0
    target = requests if arrivals.kind != "batch" else arrivals.count
    rng = np.random.default_rng(seed)
    source = _Source(lengths, rng)
    trace_times = iter(arrivals.times_s)

    prefillers = [_Prefiller(p_ranks) for _ in range(prefill_replicas)]
    decoders = [_Decoder(d_ranks) for _ in range(decode_replicas)]
    decode_queue: deque[_Req] = deque()
    moving: list[_Req] = []  # in transfer
    sending: dict[tuple[int, int], int] = {}
    receiving: dict[tuple[int, int], int] = {}
    link_s = 0.0  # transfers' bytes_left are as of this time
    link_version = 0

    events: list[tuple[float, int, int, int, int, int]] = []  # time, serial, kind, index, version, steps
    serial = 0
    t = 0.0
    t_warm = math.inf if steady and warmup_requests > 0 else 0.0
    last_s = 0.0
    counts = dict.fromkeys(STATES, 0)
    areas = dict.fromkeys(STATES, 0.0)
    area_decode_busy = area_prefill_busy = 0.0
    window_tokens = window_prompt = window_bytes = 0.0
    window_done = done_total = 0
    measured_started = measured_left = 0
    rr = 0
    prefill_steps = decode_steps = 0
    stats: dict[str, list[float]] = {k: [] for k in ("ttft", "tpot", "pwait", "prefill", "dwait", "transfer")}
    times: list[float] = [0.0]
    series: list[tuple[int, ...]] = [tuple(counts.values())]

    def push(at: float, kind: int, index: int = 0, version: int = 0, steps: int = 0) -> None:
        nonlocal serial
        serial += 1
        heapq.heappush(events, (at, serial, kind, index, version, steps))

    def in_window(a: float, b: float) -> float:
        """Length of ``[a, b]`` inside the measurement window."""
        return max(0.0, b - max(a, t_warm))

    def record() -> None:
        now = tuple(counts.values())
        if series[-1] != now:
            times.append(t)
            series.append(now)

    def arrive(at: float) -> None:
        nonlocal measured_started, measured_left, rr
        prompt, output = source.next_lengths()
        if prompt < 1 or output < 1:
            raise InputError.single("workload", f"a request needs >= 1 prompt and output token: {prompt}, {output}")
        if prompt > p_capacity:
            raise InputError.single(
                "workload",
                f"a prompt of {prompt} tokens needs more KV than one attention-DP rank of a prefill replica "
                f"holds ({p_capacity:,} tokens)",
            )
        if prompt + output > d_capacity:
            raise InputError.single(
                "workload",
                f"a request of {prompt} prompt + {output} output tokens needs more KV than one attention-DP "
                f"rank of a decode replica holds ({d_capacity:,} tokens)",
            )
        measured = at >= t_warm and measured_started < target
        if measured:
            measured_started += 1
            measured_left += 1
        req = _Req(at, prompt, output, measured)
        if arrivals.kind == "poisson" and prefill_replicas > 1:
            rep = int(rng.integers(prefill_replicas))
        else:
            rep, rr = rr % prefill_replicas, rr + 1
        p = prefillers[rep]
        rank = min(range(p_ranks), key=p.left.__getitem__)
        req.p_rep, req.p_rank = rep, rank
        p.queues[rank].append(req)
        p.left[rank] += prompt
        counts["prefill_queue"] += 1
        if not p.busy:  # an idle replica starts once every arrival of this instant is in (a batch at t = 0)
            p.busy = True
            push(at, _PREFILL_START, rep)

    def next_arrival_after(previous: float) -> float:
        if arrivals.kind == "poisson":
            return previous + float(rng.exponential(1.0 / arrivals.rate_rps))
        if arrivals.kind == "trace":
            return next(trace_times, math.inf)
        return math.inf

    def start_prefill_step(rep: int) -> None:
        nonlocal prefill_steps
        p = prefillers[rep]
        p.takes = [min(p_chunk, left) for left in p.left]
        busiest = max(p.takes)
        if busiest == 0:
            p.busy = False
            return
        for rank, take in enumerate(p.takes):  # requests this step touches first start their prefill
            for req in p.queues[rank]:
                if take <= 0:
                    break
                if req.left == req.prompt and math.isnan(req.prefill_start_s):
                    req.prefill_start_s = t
                    counts["prefill_queue"] -= 1
                    counts["prefilling"] += 1
                take -= req.left
        dt = float(prefill.prefill_s(busiest * p_ranks))
        if not dt > 0:
            raise ValueError(f"prefill step time must be > 0, got {dt} for {busiest * p_ranks} tokens")
        p.busy = True
        p.step_start_s = t
        prefill_steps += 1
        push(t + dt, _PREFILL, rep)

    def end_prefill_step(rep: int) -> None:
        nonlocal area_prefill_busy, window_prompt
        p = prefillers[rep]
        area_prefill_busy += in_window(p.step_start_s, t)
        span = t - p.step_start_s
        if span > 0:
            window_prompt += sum(p.takes) * in_window(p.step_start_s, t) / span
        for rank, take in enumerate(p.takes):
            p.left[rank] -= take
            queue = p.queues[rank]
            while take and queue:
                head = queue[0]
                used = min(take, head.left)
                head.left -= used
                take -= used
                if head.left:
                    break
                queue.popleft()
                prefilled(head)
        start_prefill_step(rep)

    def prefilled(req: _Req) -> None:
        nonlocal window_tokens
        req.prefilled_s = t
        counts["prefilling"] -= 1
        if req.output == 1:  # the prefill's token is the whole answer: no KV to send
            req.first_token_s = req.transfer_start_s = t
            if t >= t_warm:
                window_tokens += 1
            finish(req)
            return
        counts["decode_queue"] += 1
        decode_queue.append(req)
        admit()

    def admit() -> None:
        """FCFS: the head of the decode queue goes where the most KV is free, if it fits."""
        while decode_queue:
            req = decode_queue[0]
            need = req.prompt + req.output
            best: tuple[int, int] | None = None
            best_free = -1
            for d_index, dec in enumerate(decoders):
                if dec.admitted >= cap:
                    continue
                for rank in range(d_ranks):
                    free = d_capacity - dec.kv_used[rank]
                    if free > best_free:
                        best, best_free = (d_index, rank), free
            if best is None or best_free < need:
                return
            decode_queue.popleft()
            counts["decode_queue"] -= 1
            req.d_rep, req.d_rank = best
            dec = decoders[best[0]]
            dec.kv_used[best[1]] += need
            dec.admitted += 1
            start_transfer(req)

    def advance_link() -> None:
        """Move every transfer's bytes up to ``t`` at the rates set at the last change."""
        nonlocal link_s, window_bytes
        span = t - link_s
        if span > 0:
            for req in moving:
                if req.rate > 0:
                    moved = min(req.bytes_left, req.rate * span)
                    req.bytes_left -= moved
                    window_bytes += moved * in_window(link_s, t) / span
        link_s = t

    def reschedule_link() -> None:
        """Rates by processor sharing at each end; one event at the next milestone."""
        nonlocal link_version
        sending.clear()
        receiving.clear()
        for req in moving:
            if req.ready_s <= t:
                key_s, key_r = (req.p_rep, req.p_rank), (req.d_rep, req.d_rank)
                sending[key_s] = sending.get(key_s, 0) + 1
                receiving[key_r] = receiving.get(key_r, 0) + 1
        nxt = math.inf
        for req in moving:
            if req.ready_s > t:
                req.rate = 0.0
                req.done_s = math.inf
                nxt = min(nxt, req.ready_s)
                continue
            req.rate = min(
                link.send_bytes_per_s / sending[(req.p_rep, req.p_rank)],
                link.receive_bytes_per_s / receiving[(req.d_rep, req.d_rank)],
            )
            req.done_s = t + req.bytes_left / req.rate
            nxt = min(nxt, req.done_s)
        link_version += 1
        if nxt < math.inf:
            push(nxt, _LINK, 0, link_version)

    def start_transfer(req: _Req) -> None:
        advance_link()
        req.transfer_start_s = t
        req.bytes_left = req.prompt * link.bytes_per_token
        req.ready_s = t + link.latency_s
        req.rate = 0.0
        moving.append(req)
        counts["transferring"] += 1
        reschedule_link()

    def link_event() -> None:
        advance_link()
        # done when the time its bytes were due has come (not by comparing bytes: a remainder that
        # rounds to no time at all would otherwise never land)
        landed = [r for r in moving if r.done_s <= t]
        for req in landed:
            req.bytes_left = 0.0
            moving.remove(req)
        reschedule_link()
        for req in landed:
            land(req)

    def land(req: _Req) -> None:
        nonlocal window_tokens
        req.first_token_s = t
        counts["transferring"] -= 1
        counts["decoding"] += 1
        if t >= t_warm:
            window_tokens += 1
        dec = decoders[req.d_rep]
        if not dec.batch:  # idle: its steps start now
            dec.run_s = t
            join(dec, req)
            schedule_decoder(req.d_rep)
            return
        dec.pending.append(req)
        k = max(0, math.ceil((t - dec.run_s) / dec.dt))
        if k < dec.k_next:
            dec.version += 1
            dec.k_next = k
            push(max(t, dec.run_s + k * dec.dt), _DECODE, req.d_rep, dec.version, k)

    def join(dec: _Decoder, req: _Req) -> None:
        nonlocal serial
        serial += 1
        heapq.heappush(dec.batch, (dec.step + math.ceil((req.output - 1) / per_step), serial, req))

    def schedule_decoder(index: int) -> None:
        dec = decoders[index]
        dec.version += 1
        if not dec.batch:
            dec.dt = 0.0
            return
        dec.dt = float(decode.decode_s(len(dec.batch)))
        if not dec.dt > 0:
            raise ValueError(f"decode step time must be > 0, got {dec.dt} for {len(dec.batch)} sequences")
        dec.k_next = dec.batch[0][0] - dec.step
        push(dec.run_s + dec.k_next * dec.dt, _DECODE, index, dec.version, dec.k_next)

    def decode_event(index: int, steps: int) -> None:
        nonlocal window_tokens, area_decode_busy, decode_steps
        dec = decoders[index]
        busy = in_window(dec.run_s, t)
        area_decode_busy += busy
        span = t - dec.run_s
        if span > 0:
            window_tokens += len(dec.batch) * steps * per_step * busy / span
        decode_steps += steps
        dec.step += steps
        dec.run_s = t
        while dec.batch and dec.batch[0][0] <= dec.step:
            req = heapq.heappop(dec.batch)[2]
            dec.kv_used[req.d_rank] -= req.prompt + req.output
            dec.admitted -= 1
            counts["decoding"] -= 1
            finish(req)
        for req in dec.pending:
            join(dec, req)
        dec.pending.clear()
        schedule_decoder(index)
        admit()

    def finish(req: _Req) -> None:
        nonlocal done_total, window_done, measured_left, t_warm
        done_total += 1
        if t >= t_warm:
            window_done += 1
        if req.measured:
            measured_left -= 1
            stats["ttft"].append(req.first_token_s - req.arrival_s)
            stats["pwait"].append(req.prefill_start_s - req.arrival_s)
            stats["prefill"].append(req.prefilled_s - req.prefill_start_s)
            stats["dwait"].append(req.transfer_start_s - req.prefilled_s)
            if req.output > 1:
                stats["tpot"].append((t - req.first_token_s) / (req.output - 1))
                stats["transfer"].append(req.first_token_s - req.transfer_start_s)
        if steady and done_total == warmup_requests and t_warm == math.inf:
            t_warm = t
        if arrivals.kind == "closed":
            arrive(t)

    if arrivals.kind == "closed":
        for _ in range(arrivals.concurrency):
            arrive(0.0)
    elif arrivals.kind == "batch":
        for _ in range(arrivals.count):
            arrive(0.0)
    else:
        push(next_arrival_after(0.0), _ARRIVAL)
    record()

    while events and not (measured_started >= target and measured_left == 0):
        at, _, kind, index, version, steps = heapq.heappop(events)
        if kind == _LINK and version != link_version:
            continue
        if kind == _DECODE and version != decoders[index].version:
            continue
        for name, count in counts.items():
            areas[name] += count * in_window(last_s, at)
        t = last_s = at
        if kind == _ARRIVAL:
            if at < math.inf:
                arrive(at)
                push(next_arrival_after(at), _ARRIVAL)
        elif kind == _PREFILL_START:
            start_prefill_step(index)
        elif kind == _PREFILL:
            end_prefill_step(index)
        elif kind == _LINK:
            link_event()
        else:
            decode_event(index, steps)
        record()

    window = t - t_warm if t_warm < math.inf else 0.0
    t_arr = np.asarray(times)
    c_arr = np.asarray(series, dtype=np.int64).T
    if t_arr.size > TIMELINE_POINTS:
        keep = np.unique(np.linspace(0, t_arr.size - 1, TIMELINE_POINTS).round().astype(int))
        t_arr, c_arr = t_arr[keep], c_arr[:, keep]

    def mean(area: float, replicas: int = 1) -> float:
        return area / (window * replicas) if window > 0 else math.nan

    return DisaggRun(
        ttft_s=np.asarray(stats["ttft"]),
        tpot_s=np.asarray(stats["tpot"]),
        prefill_wait_s=np.asarray(stats["pwait"]),
        prefill_s=np.asarray(stats["prefill"]),
        decode_wait_s=np.asarray(stats["dwait"]),
        transfer_s=np.asarray(stats["transfer"]),
        window_s=window,
        warmup_s=t_warm if t_warm < math.inf else t,
        output_tokens=window_tokens,
        completed=window_done,
        prompt_tokens=window_prompt,
        kv_bytes=window_bytes,
        means={name: mean(area) for name, area in areas.items()},
        prefill_busy=mean(area_prefill_busy, prefill_replicas),
        decode_busy=mean(area_decode_busy, decode_replicas),
        mean_decode_batch=mean(areas["decoding"], decode_replicas),
        prefill_steps=prefill_steps,
        decode_steps=decode_steps,
        timeline=(t_arr, c_arr),
    )


def kv_link(problem: Problem, plan: DisaggregatedPlan, path: KvPath | None = None) -> Link:
    """The plan's KV path (K1-K3, K5) in the simulator's terms; ``path`` defaults to the one the
    evaluator uses for the plan's nodes (:func:`placer.serving_disagg.pool_nodes`)."""
    if path is None:
        path = kv_path(problem.fabric, *pool_nodes(plan, problem.fabric))
    model = problem.model
    par_p, par_d = plan.prefill.parallelism, plan.decode.parallelism
    return Link(
        kind=path.kind,
        latency_s=path.latency_s,
        send_bytes_per_s=lanes_per_request(model, par_p) * path.bytes_per_s,
        receive_bytes_per_s=lanes_per_request(model, par_d) * path.bytes_per_s,
        bytes_per_token=kv_bytes_per_request(model, 1),
        capacity_bytes_per_s=min(lanes_in_pool(model, par_p), lanes_in_pool(model, par_d)) * path.bytes_per_s,
    )


@dataclass(frozen=True)
class DisaggSimulation:
    """A disaggregated plan simulated under its instance's workload: the run and each pool's figures."""

    kind: str
    gpus: int
    prefill_gpus: int
    decode_gpus: int
    prefill_replicas: int
    decode_replicas: int
    prefill_dp: int
    decode_dp: int
    arrivals: Arrivals  # whole deployment
    prefill_chunk_tokens: int  # per prefill replica step
    prefill_tokens_per_s: float  # one prefill replica's capacity, every rank busy
    prompt_s: float  # the serving prompt alone on every rank of a prefill replica (D1's P)
    decode_kv_capacity_tokens: int  # per decode replica
    decode_step_1_s: float  # one decode step of one sequence
    link: Link
    requests: int
    seed: int
    run: DisaggRun
    notes: tuple[str, ...]

    @property
    def output_tokens_per_s(self) -> float:
        return self.run.output_tokens_per_s

    @property
    def output_tokens_per_s_per_gpu(self) -> float:
        return self.output_tokens_per_s / self.gpus

    @property
    def requests_per_s(self) -> float:
        return self.run.requests_per_s

    @property
    def prefill_utilisation(self) -> float:
        """Prompt tokens prefilled over what the pool can prefill with every rank busy."""
        run = self.run
        if not run.window_s > 0:
            return math.nan
        return run.prompt_tokens / run.window_s / (self.prefill_tokens_per_s * self.prefill_replicas)

    @property
    def link_utilisation(self) -> float:
        """KV bytes moved over what the path carries with every lane busy (K5's rho)."""
        run = self.run
        return run.kv_bytes / run.window_s / self.link.capacity_bytes_per_s if run.window_s > 0 else math.nan

    def to_dict(self) -> dict[str, object]:
        run = self.run
        arrivals: dict[str, object] = {"kind": self.arrivals.kind}
        if self.arrivals.kind == "closed":
            arrivals["concurrency"] = self.arrivals.concurrency
        elif self.arrivals.kind == "poisson":
            arrivals["rate_rps"] = self.arrivals.rate_rps
        elif self.arrivals.kind == "trace":
            arrivals["requests"] = len(self.arrivals.times_s)
            arrivals["mean_rate_rps"] = self.arrivals.rate_rps
        else:
            arrivals["requests"] = self.arrivals.count
        means = run.means
        return {
            "kind": self.kind,
            "mode": "disaggregated",
            "gpus": self.gpus,
            "arrivals": arrivals,
            "seed": self.seed,
            "measured_requests": int(run.ttft_s.size),
            "warmup_s": run.warmup_s,
            "window_s": run.window_s,
            "ttft_ms": run.ttft.to_dict(1e3),
            "tpot_ms": run.tpot.to_dict(1e3),
            "output_tokens_per_s": self.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu,
            "requests_per_s": self.requests_per_s,
            "mean_concurrency": sum(means.values()),
            "prefill": {
                "gpus": self.prefill_gpus,
                "replicas": self.prefill_replicas,
                "dp_attn": self.prefill_dp,
                "chunk_tokens_per_step": self.prefill_chunk_tokens,
                "prompt_alone_s": self.prompt_s,
                "utilisation": self.prefill_utilisation,
                "busy_fraction": run.prefill_busy,
                "mean_waiting": means["prefill_queue"],
                "mean_prefilling": means["prefilling"],
                "wait_ms": Stats.of(run.prefill_wait_s).to_dict(1e3),
                "prefill_ms": Stats.of(run.prefill_s).to_dict(1e3),
                "steps": run.prefill_steps,
            },
            "kv_transfer": {
                "path": self.link.kind,
                "latency_ms": self.link.latency_s * 1e3,
                "bytes_per_prompt_token": self.link.bytes_per_token,
                "utilisation": self.link_utilisation,
                "mean_in_transfer": means["transferring"],
                "transfer_ms": Stats.of(run.transfer_s).to_dict(1e3),
                "decode_kv_wait_ms": Stats.of(run.decode_wait_s).to_dict(1e3),
                "mean_waiting_for_decode_kv": means["decode_queue"],
            },
            "decode": {
                "gpus": self.decode_gpus,
                "replicas": self.decode_replicas,
                "dp_attn": self.decode_dp,
                "kv_capacity_tokens_per_replica": self.decode_kv_capacity_tokens,
                "step_at_batch_1_ms": self.decode_step_1_s * 1e3,
                "mean_batch_per_replica": run.mean_decode_batch,
                "busy_fraction": run.decode_busy,
                "steps": run.decode_steps,
            },
            "notes": list(self.notes),
        }


def deployment_arrivals(problem: Problem, requests: int) -> tuple[Arrivals, tuple[str, ...]]:
    """The whole deployment's arrivals for a disaggregated plan (``burst`` is not served)."""
    w = problem.workload
    if w.kind == "burst":
        raise InputError.single(
            "workload.kind", "a disaggregated plan serves requests (kinds rate, concurrency, offline), not a burst"
        )
    arrivals, _ = replica_arrivals(w, 1, requests)
    notes: list[str] = []
    if arrivals.kind == "trace":
        notes.append(f"trace: {len(arrivals.times_s)} arrivals replayed once (mean {arrivals.rate_rps:.3g} requests/s)")
    elif arrivals.kind == "batch":
        notes.append(f"offline: {arrivals.count} requests at t = 0, admitted as the pools allow")
    return arrivals, tuple(notes)


def simulate_disaggregated(
    problem: Problem,
    plan: DisaggregatedPlan,
    requests: int = 2000,
    seed: int = 0,
    prefill_timer: StepTimer | None = None,
    decode_timer: StepTimer | None = None,
    path: KvPath | None = None,
) -> DisaggSimulation:
    """Simulate ``plan`` under ``problem``'s workload, each pool's step times from its own
    :class:`placer.serving.StepTimer` (pass the analytic model's timers to share their memo)."""
    arrivals, notes = deployment_arrivals(problem, requests)
    if prefill_timer is None:
        prefill_timer = StepTimer(problem, plan.pool_plan("prefill"))
    if decode_timer is None:
        decode_timer = StepTimer(problem, plan.pool_plan("decode"))
    for phase, timer in (("prefill", prefill_timer), ("decode", decode_timer)):
        if timer.kv_capacity_tokens < 1:
            raise InputError.single(f"plan.{phase}", "no KV memory is left on the pool's GPUs after the weights")
    link = kv_link(problem, plan, path)
    w = problem.workload
    run = simulate_pools(
        prefill_timer,
        decode_timer,
        link,
        arrivals,
        workload_lengths(w, 0, 1),
        prefill_replicas=plan.prefill.parallelism.replicas,
        decode_replicas=plan.decode.parallelism.replicas,
        requests=requests,
        seed=seed,
        max_batch=w.max_batch_size,
        tokens_per_decode_step=w.output_tokens_per_step,
    )
    notes_list = list(notes)
    if arrivals.kind in ("poisson", "trace") and run.requests_per_s < 0.97 * arrivals.rate_rps:
        notes_list.append(
            f"overloaded: the deployment completes {run.requests_per_s:.3g} of the {arrivals.rate_rps:.3g} "
            "requests/s offered; a queue grows without bound and the figures depend on --requests"
        )
    chunk = prefill_timer.chunk_tokens
    isl = max(1, round(w.serving_prompt_tokens))
    return DisaggSimulation(
        kind=w.kind,
        gpus=plan.gpus,
        prefill_gpus=plan.prefill.gpus,
        decode_gpus=plan.decode.gpus,
        prefill_replicas=plan.prefill.parallelism.replicas,
        decode_replicas=plan.decode.parallelism.replicas,
        prefill_dp=prefill_timer.dp_attn,
        decode_dp=decode_timer.dp_attn,
        arrivals=arrivals,
        prefill_chunk_tokens=int(chunk),
        prefill_tokens_per_s=chunk / prefill_timer.prefill_s(chunk),
        prompt_s=prefill_timer.prefill_s(isl * prefill_timer.dp_attn),
        decode_kv_capacity_tokens=int(decode_timer.kv_capacity_tokens),
        decode_step_1_s=decode_timer.decode_s(1),
        link=link,
        requests=requests,
        seed=seed,
        run=run,
        notes=tuple(notes_list),
    )
