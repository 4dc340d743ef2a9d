"""Cost-model fidelity on the broad calibration set: several model families, engines and GPUs.

Each measurement of ``placer/data/measurements.json`` is re-expressed as the deployment it was
measured on (model with its per-component precision, GPU profile, parallel degrees, serving mode)
and run through the analytic serving model (:func:`placer.serving.serving_point`), which gives
the *base* figure: the cost model with no engine overheads. The engine is then described by a
few factors (``docs/cost-model.md``, "Engine profiles"):

* ``prefill_scale`` *s_p* and ``decode_scale`` *s_d* per (GPU, engine): prefill and decode
  kernels take *s* times their roofline time;
* ``decode_knee_batch`` *B_k* per (GPU, engine): decode efficiency falls with the batch, the
  decode part of a step taking ``(1 + b / B_k)`` times longer at a decode batch of ``b`` (a curve,
  not a constant; ``inf`` is flat);
* ``launch_overhead_us`` *o* per (GPU, engine): fixed time per kernel of a layer per engine step
  (launch and ramp of the small kernels: norms, rotary, router, top-k), times the model's kernels
  per step ``K`` (:func:`placer.costmodel.layers.kernel_launches` summed over the layers: an MoE or
  MLA layer launches more kernels than a dense GQA one);
* ``step_overhead_ms`` *c* per (GPU, engine): fixed time per engine step that does not grow with
  the depth (scheduler, input preparation, sampling, CUDA-graph launch, detokenisation);
* ``ttft_floor_ms`` *F* per engine: fixed time added to every first token (tokenisation,
  scheduling, the first decode step's return).

A step whose base time splits into decode ``t_d`` and prefill ``t_p`` then takes
``t' = s_d (1 + b / B_k) t_d + s_p t_p + K o + c`` (``K`` kernels per step): a throughput scales by
``t / t'``, a TPOT becomes ``TPOT (t' - K o - c) / t + K o + c`` and a TTFT
``TTFT + k (K o + c) + F`` with ``k`` prefill steps (every TTFT point is at a concurrency of 1 to
8, where a prompt's prefill is one weight-read-bound forward, not the saturated prefill whose
efficiency ``s_p`` is fitted on). ``o`` and ``c`` are told apart by
small-batch points of models of different depth (24 to 80 layers). The factors are fitted per
(GPU, engine) on log error over a grid (one set per group, never per point; :func:`fit_group`). A
group with fewer than ``MIN_GROUP_POINTS`` training points takes the engine's pooled fit, then the
pooled fit of everything.

The base prefill cost per token is probed with the prefill chunk filled (``chunk / ISL`` prompts
per attention-DP rank, at most the requests in flight), the way an engine batches prompts under
load, rather than the serving model's one prompt per rank: with 128-token prompts the latter
charges a whole weight read to 128 tokens.

Validation: in-sample (fit on all points, predict all) and leave-one-family-out (for each model
family, fit without it and predict it), reported per metric class, engine and GPU.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from placer.costmodel.layers import kernel_launches
from placer.data.measurements import Measurement, load_measurements
from placer.errors import InputError
from placer.evaluator import evaluate
from placer.fidelity import expert_map
from placer.files import write_atomic
from placer.loading import load_hardware, load_model
from placer.problem import Problem, build_problem
from placer.schema import HardwareProfile, Instance, ModelSpec, Plan
from placer.serving import ServingPoint, StepTimer, serving_point

ROOT = Path(__file__).resolve().parents[1]
#: measurement model name -> placer model reference (a catalogue name or a config.json path)
MODEL_REFS = {"deepseek-r1": "deepseek-v3", "mixtral-8x7b": "mixtral-8x7b"}
DEFAULT_CHUNK_TOKENS = 8192
#: trtllm-bench throughput (PyTorch backend) run without --max_batch_size takes its heuristic
#: (NVIDIA/TensorRT-LLM@0171265e tensorrt_llm/bench/benchmark/utils/general.py get_settings ->
#: get_benchmark_engine_settings), which caps the batch at 4096 requests
#: (NVIDIA/TensorRT-LLM@04cba882 tensorrt_llm/bench/build/tuning.py finetune_setting:
#: ``raw_bs = min(kv_cache_max_requests, 4096) / pp_size``; below the cap it rounds the KV estimate
#: up, so the KV memory binds); each attention-DP rank schedules up to it.
TRTLLM_BENCH_MAX_BATCH = 4096
#: vLLM (csrc/custom_all_reduce.cuh: the one-stage kernel below 512 KB at up to 4 GPUs and 256 KB at
#: up to 8 on full NVLink, two-stage above), SGLang (the same kernel) and TensorRT-LLM (one-shot /
#: two-shot AllReduceStrategy) all-reduce tensor-parallel activations with their own kernels
#: inside an NVLink domain, not NCCL's ring (docs/cost-model.md C1a).
ENGINE_ALLREDUCE = "custom"
MIN_GROUP_POINTS = 6
#: Fit grids: efficiency scales (log-spaced), decode knee batch, per-kernel overhead in us, TTFT floor in ms.
SCALE_GRID = 2.0 ** np.linspace(-0.5, 2.0, 26)  # 0.71 to 4, steps of 2^0.1, 1.0 exactly at index 5
REQUEST_GRID_MS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
KNEE_GRID = (math.inf, 16384.0, 8192.0, 4096.0, 2048.0, 1024.0, 512.0, 256.0)
#: the issue's measured 35-150 us per layer over 9-22 kernels a layer: 2-17 us per kernel
OVERHEAD_GRID_US = np.linspace(0.0, 20.0, 21)
STEP_GRID_MS = (0.0, 0.5, 1.0, 2.0, 4.0)  # fixed time per engine step
#: (per-kernel us, per-step ms) pairs searched together when a group has small-batch points
OVERHEAD_PAIRS = tuple((float(o), c) for o in OVERHEAD_GRID_US for c in STEP_GRID_MS)
FLOOR_GRID_MS = np.linspace(0.0, 400.0, 81)
#: A point at or below this decode batch identifies the per-kernel overhead (fixed time per step).
SMALL_BATCH = 16
#: A throughput point whose modelled step is at least this share prefill identifies the prefill
#: scale, one at this many requests per second or more the per-request overhead (10 ms a request
#: costs it at least 10%); a fit with fewer than ``MIN_PREFILL_POINTS`` of either takes its prior's
#: figure (a few such points, one of them an untuned engine default, otherwise set it alone).
PREFILL_SHARE = 0.25
REQUEST_RATE = 10.0
MIN_PREFILL_POINTS = 3
#: Targets of issue 14 (leave-one-family-out): median |error| per metric class, share within 2x.
TARGET_MEDIAN_ABS_ERROR = 0.20
TARGET_WITHIN_2X = 0.90


@dataclass(frozen=True)
class Base:
    """The cost model's figures for one measurement, before engine factors."""

    measurement: Measurement
    launches: int  # kernels per engine step (O12: kernel_launches summed over the layers)
    value: float  # the metric as the cost model gives it
    step_s: float  # one engine step at the serving point
    prefill_s: float  # of which prefill (the rest is the decode batch's forward)
    prefill_steps: int  # steps a prompt spends in prefill
    decode_batch: float
    requests_per_s: float  # whole deployment, at the serving point
    fits: bool
    reason: str | None


@dataclass(frozen=True)
class Factors:
    prefill_scale: float = 1.0
    decode_scale: float = 1.0
    decode_knee_batch: float = math.inf
    launch_overhead_us: float = 0.0
    request_overhead_ms: float = 0.0
    ttft_floor_ms: float = 0.0
    step_overhead_ms: float = 0.0
    points: int = 0
    scope: str = "default"  # "gpu+engine", "engine", "all" or "default"


def model_spec(name: str, precision: dict[str, str]) -> ModelSpec:
    """The measurement's model with its stated (or assumed) per-component precision."""
    ref = MODEL_REFS.get(name)
    if ref is None:
        path = ROOT / "models" / "hf" / name / "config.json"
        if not path.exists():
            raise InputError.single("model", f"no model file for {name!r} (looked for {path})")
        ref = str(path)
    model = load_model(ref)
    updated = model.precision.model_copy(update=precision)
    return model.model_copy(update={"precision": type(updated).model_validate(updated.model_dump())})


def degrees(m: Measurement) -> dict[str, int]:
    """Parallel degrees of the measured deployment: ``tp`` shards attention and MoE over all GPUs;
    ``dep`` is attention data-parallel with experts spread over all GPUs; explicit degrees else."""
    p = m.parallelism
    if "dep" in p:
        return {"tp": 1, "dp_attn": p["dep"], "ep": p["dep"], "tp_moe": 1}
    tp, dp = p.get("tp", 1), p.get("dp_attn", 1)
    width = tp * dp
    ep = p.get("ep", 1)
    return {"tp": tp, "dp_attn": dp, "ep": ep, "tp_moe": p.get("tp_moe", width // ep)}


def re_expressed(m: Measurement) -> Measurement:
    """The measurement in the serving mode that behaves as its benchmark did.

    * An offline run of a stated number of requests of one prompt and one output length
      (``isl_osl_stdev`` 0: trtllm-bench's synthetic sets) is a closed loop of that many requests
      with fixed lengths: the requests admitted in one step finish in one step and are replaced
      together from the queue, so every attention-DP rank prefills in the same steps (the serving
      model's phase-locked closed loop, Q6b), not at staggered Poisson-like times (its offline
      mode), where one rank's prefill stalls the others at every MoE layer (Q1b). The engine holds
      its batch ceiling either way; the requests beyond it wait outside.
    * A burst of prompts of one stated length sent at once (``vllm bench serve`` on its random
      dataset, ``random_input_len``) likewise: every prompt arrives in the same instant, so every
      attention-DP rank prefills in the same steps; it runs as a closed loop of the burst's size
      with the mean output length rounded to a whole token (the loop is phase-locked only with
      fixed lengths; the rounding moves the output count by under 0.5 token).
    * trtllm-bench without a stated batch cap sets ``max_batch_size`` by its heuristic, at most
      ``TRTLLM_BENCH_MAX_BATCH`` per scheduler (one per attention-DP rank)."""
    update: dict[str, object] = {}
    deg = degrees(m)
    if m.max_batch_size is None and "trtllm-bench" in m.engine_version:
        update["max_batch_size"] = TRTLLM_BENCH_MAX_BATCH * deg["dp_attn"]
    requests = m.stated.get("num_requests")
    fixed = m.stated.get("isl_osl_stdev") == 0 and m.output_tokens == math.ceil(m.output_tokens)
    if m.mode == "offline" and fixed and isinstance(requests, int) and requests > 0:
        update |= {"mode": "concurrency", "concurrency": requests}
    burst = m.stated.get("num_prompts")
    if m.mode == "offline" and "random_input_len" in m.stated and isinstance(burst, int) and burst > 0:
        update |= {"mode": "concurrency", "concurrency": burst, "output_tokens": float(max(1, round(m.output_tokens)))}
    return replace(m, **update) if update else m


def build(
    m: Measurement, model: ModelSpec, hardware: HardwareProfile, burst_batch: int | None = None
) -> tuple[Problem, Plan]:
    """Instance and plan of one measurement, in the serving mode it was measured in
    (:func:`re_expressed`); with ``burst_batch``, a burst of that many prompts instead (the
    prefill probe)."""
    m = re_expressed(m)
    deg = degrees(m)
    width = deg["tp"] * deg["dp_attn"]
    if width != m.gpus:
        raise InputError.single("parallelism", f"{m.id}: degrees cover {width} GPUs, the measurement used {m.gpus}")
    workload: dict[str, object] = {
        "kind": m.mode,
        "prompt_tokens": {"min": m.prompt_tokens, "max": m.prompt_tokens},
        "output_tokens": max(1, math.ceil(m.output_tokens)),
        "prefill_chunk_tokens": m.prefill_chunk_tokens or DEFAULT_CHUNK_TOKENS,
    }
    if m.output_tokens != math.ceil(m.output_tokens):
        workload["output_tokens_mean"] = m.output_tokens
    if m.mode == "concurrency":
        workload["concurrency"] = m.concurrency
    if m.max_batch_size is not None:
        workload["max_batch_size"] = m.max_batch_size
    if burst_batch is not None:
        workload = {"kind": "burst", "batch_size": burst_batch, "prompt_tokens": workload["prompt_tokens"]}
        workload |= {"output_tokens": 1, "prefill_chunk_tokens": m.prefill_chunk_tokens or DEFAULT_CHUNK_TOKENS}
    per_node = min(hardware.gpus_per_node, m.gpus)
    instance = Instance.model_validate(
        {
            "name": m.id,
            "model": model,
            "hardware": hardware,
            "cluster": {"gpus_per_node": per_node, "num_nodes": -(-m.gpus // per_node)},
            "workload": workload,
            # all three engines all-reduce with their own one-/two-shot kernels on NVLink (C1a)
            "cost_parameters": {"allreduce_algorithm": ENGINE_ALLREDUCE},
        }
    )
    problem = build_problem(instance)
    plan: dict[str, object] = {
        "name": m.id,
        "gpus": m.gpus,
        "parallelism": {"pp": 1, "replicas": 1, **deg},
        "stages": [{"layers": [0, model.num_layers - 1]}],
    }
    if model.moe is not None:
        ranks = expert_map(model.moe.num_experts, deg["ep"], model.moe.num_experts)
        plan["expert_map"] = [{"layer": layer, "gpus": ranks} for layer in model.moe_layers]
    return problem, Plan.model_validate(plan)


def metric_of(m: Measurement, point: ServingPoint) -> float:
    """The measured metric as the serving model states it."""
    if m.metric == "output_tokens_per_s_per_gpu":
        return point.output_tokens_per_s_per_gpu
    if m.metric == "total_tokens_per_s":
        return point.requests_per_s * (m.prompt_tokens + m.output_tokens)
    if m.metric == "tpot_ms":
        return point.tpot_s * 1e3
    return point.ttft_s * 1e3


def chunk_filled_prefill_s_per_token(
    m: Measurement, model: ModelSpec, hardware: HardwareProfile, plan: Plan, chunk: int
) -> float:
    """Seconds of replica step per prompt token with the chunk filled: ``chunk // ISL`` prompts per
    attention-DP rank (at least one; at most the requests in flight), prefilled as one burst."""
    par = plan.parallelism
    per_rank = chunk // m.prompt_tokens
    in_flight = m.concurrency or m.max_batch_size
    if in_flight is not None:
        per_rank = min(per_rank, math.ceil(in_flight / par.dp_attn))
    per_rank = max(1, per_rank)
    ev = evaluate(*build(m, model, hardware, burst_batch=par.replicas * par.dp_attn * per_rank))
    return ev.ttft_s / (par.dp_attn * per_rank * m.prompt_tokens)


def base_figures(measurements: Iterable[Measurement]) -> list[Base]:
    """Run every measurement through the serving model (models and profiles loaded once)."""
    models: dict[tuple[str, tuple[tuple[str, str], ...]], ModelSpec] = {}
    profiles: dict[str, HardwareProfile] = {}
    out = []
    for m in measurements:
        key = (m.model, tuple(sorted(m.precision.items())))
        if key not in models:
            models[key] = model_spec(m.model, m.precision)
        if m.hardware not in profiles:
            profiles[m.hardware] = load_hardware(m.hardware)
        model = models[key]
        problem, plan = build(m, model, profiles[m.hardware])
        chunk = m.prefill_chunk_tokens or DEFAULT_CHUNK_TOKENS
        timer = StepTimer(problem, plan)
        timer.prefill_s_per_token = chunk_filled_prefill_s_per_token(m, model, profiles[m.hardware], plan, chunk)
        point = serving_point(problem, plan, timer)
        fits = point.stable and math.isfinite(point.step_s) and point.step_s > 0
        value = metric_of(m, point) if fits else math.nan
        # the decode part is the decode batch's own forward; the rest of the step is prefill (with the
        # wait for the attention-DP rank holding the largest chunk)
        pre = max(0.0, point.step_s - timer.decode_s_real(point.decode_batch)) if fits else 0.0
        steps = max(1, math.ceil(m.prompt_tokens / chunk))
        reason = None if fits else point.reason
        rps = point.requests_per_s if fits else math.nan
        launches = sum(kernel_launches(model, layer, plan.parallelism.tp) for layer in range(model.num_layers))
        out.append(Base(m, launches, value, point.step_s, pre, steps, point.decode_batch, rps, fits, reason))
    return out


def corrected_array(
    bases: list[Base],
    prefill_scale: np.ndarray | float,
    decode_scale: np.ndarray | float,
    knee: float,
    overhead_us: np.ndarray | float,
    request_ms: float,
    floor_ms: float,
    step_ms: np.ndarray | float = 0.0,
) -> np.ndarray:
    """The figures with engine factors applied (module docstring), over a grid of factors:
    shape (prefill scales, decode scales, overheads, points). ``overhead_us`` and ``step_ms`` run
    along the same axis (pairs: per-kernel and per-step fixed time)."""
    sp = np.atleast_1d(np.asarray(prefill_scale, dtype=float))[:, None, None, None]
    sd = np.atleast_1d(np.asarray(decode_scale, dtype=float))[None, :, None, None]
    o = np.atleast_1d(np.asarray(overhead_us, dtype=float))[None, None, :, None]
    c = np.atleast_1d(np.asarray(step_ms, dtype=float))[None, None, :, None]

    def col(values: list[float]) -> np.ndarray:
        return np.asarray(values, dtype=float)[None, None, None, :]

    v0 = col([b.value for b in bases])
    step = col([b.step_s for b in bases])
    pre = col([b.prefill_s for b in bases])
    curve = 1.0 + col([b.decode_batch for b in bases]) / knee
    tau = col([b.launches for b in bases]) * o * 1e-6 + c * 1e-3  # fixed seconds per step
    k = col([b.prefill_steps for b in bases])
    classes = [b.measurement.metric_class for b in bases]
    thr = col([float(c == "throughput") for c in classes]) > 0
    tpot = col([float(c == "tpot") for c in classes]) > 0
    ratio = (sd * curve * (step - pre) + sp * pre) / step
    gpu_thr = 1.0 / (ratio + tau / step)  # throughput over the base throughput, GPU side
    rps = col([b.requests_per_s for b in bases]) * gpu_thr
    out_thr = v0 * gpu_thr / (1.0 + request_ms * 1e-3 * rps)
    out_tpot = v0 * ratio + tau * 1e3
    out_ttft = v0 + k * tau * 1e3 + floor_ms  # low-concurrency prompts: not the saturated prefill s_p fits
    return np.where(thr, out_thr, np.where(tpot, out_tpot, out_ttft))


def corrected(base: Base, f: Factors) -> float:
    """One figure with the engine factors applied."""
    grid = corrected_array(
        [base],
        f.prefill_scale,
        f.decode_scale,
        f.decode_knee_batch,
        f.launch_overhead_us,
        f.request_overhead_ms,
        f.ttft_floor_ms,
        f.step_overhead_ms,
    )
    return float(grid.reshape(-1)[0])


def _log_errors(pred: np.ndarray, bases: list[Base]) -> np.ndarray:
    meas = np.array([b.measurement.value for b in bases])
    return np.log(pred / meas)


def fixed_times(bases: list[Base], prior: Factors | None) -> tuple[float, float]:
    """(per-kernel us, per-step ms) from the group's small-batch TPOT and throughput points alone,
    with the kernels at their roofline time (``s_d = s_p = 1``): at a decode batch of at most
    ``SMALL_BATCH`` a step is a weight read (at the profile's HBM utilisation) plus the fixed
    times, so these points identify them without trading them against the decode scale of large
    batches; the fall of decode efficiency with the batch is the knee's. Without such points, the
    prior's. Ties (points of one model depth cannot tell ``o`` from ``c``) go to the smaller fixed
    time."""
    small = [b for b in bases if b.decode_batch <= SMALL_BATCH and b.measurement.metric_class != "ttft"]
    if not small:
        return (prior.launch_overhead_us, prior.step_overhead_ms) if prior is not None else (0.0, 0.0)
    pairs = np.asarray(OVERHEAD_PAIRS)
    grid = corrected_array(small, 1.0, 1.0, math.inf, pairs[:, 0], 0.0, 0.0, pairs[:, 1])
    loss = np.sum(_log_errors(grid, small) ** 2, axis=3).reshape(-1)
    loss = loss + 1e-9 * (pairs[:, 0] / 100.0 + pairs[:, 1])
    k = int(np.argmin(loss))
    return float(pairs[k, 0]), float(pairs[k, 1])


def prefill_points(bases: list[Base]) -> int:
    """Throughput points whose modelled step is at least ``PREFILL_SHARE`` prefill: the points
    that identify a prefill scale."""
    return sum(
        b.measurement.metric_class == "throughput" and b.step_s > 0 and b.prefill_s / b.step_s >= PREFILL_SHARE
        for b in bases
    )


def request_points(bases: list[Base]) -> int:
    """Throughput points at ``REQUEST_RATE`` requests per second or more (whole deployment, base
    model): the points that identify a per-request overhead."""
    return sum(b.measurement.metric_class == "throughput" and b.requests_per_s >= REQUEST_RATE for b in bases)


def fit_group(bases: list[Base], scope: str, prior: Factors | None = None) -> Factors:
    """Grid search on log error: the fixed per-kernel and per-step times from the small-batch points
    (:func:`fixed_times`, least squares), then scales, knee and request overhead from every point of
    the group (the TTFT floor at 0) by least *absolute* log error, then the floor from the TTFT
    points (least squares). The absolute loss targets the median, the figure issue 14 judges, and
    keeps a few measurements of untuned engine defaults (SGLang's and TensorRT-LLM's gpt-oss TP1
    ShareGPT runs, 5-15x below the model and below vLLM on the same GPU) from setting an engine's
    scales for every other model.

    A factor the group's points cannot identify is taken from ``prior`` (the next wider fit): the
    fixed times need a point at a decode batch of at most ``SMALL_BATCH`` (at large batch they
    trade off against the decode scale), the TTFT floor a TTFT point."""
    if not bases:
        return prior or Factors()
    pairs = np.asarray([fixed_times(bases, prior)])
    # the prefill scale needs points whose step is largely prefill; else the prior's
    prefill_grid = SCALE_GRID
    if prior is not None and prefill_points(bases) < MIN_PREFILL_POINTS:
        prefill_grid = np.asarray([prior.prefill_scale])
    # so does the per-request overhead: points at a high request rate
    request_grid: tuple[float, ...] = REQUEST_GRID_MS
    if prior is not None and request_points(bases) < MIN_PREFILL_POINTS:
        request_grid = (prior.request_overhead_ms,)
    best: tuple[float, Factors] | None = None
    for knee in KNEE_GRID:
        for request_ms in request_grid:
            grid = corrected_array(bases, prefill_grid, SCALE_GRID, knee, pairs[:, 0], request_ms, 0.0, pairs[:, 1])
            loss = np.sum(np.abs(_log_errors(grid, bases)), axis=3)  # least absolute log error
            i, j, k = np.unravel_index(int(np.argmin(loss)), loss.shape)
            if best is None or loss[i, j, k] < best[0] - 1e-12:
                best = (
                    float(loss[i, j, k]),
                    Factors(
                        prefill_scale=float(prefill_grid[i]),
                        decode_scale=float(SCALE_GRID[j]),
                        decode_knee_batch=knee,
                        launch_overhead_us=float(pairs[k, 0]),
                        request_overhead_ms=request_ms,
                        step_overhead_ms=float(pairs[k, 1]),
                    ),
                )
    assert best is not None
    fitted = best[1]
    ttft = [b for b in bases if b.measurement.metric_class == "ttft"]
    floor = prior.ttft_floor_ms if prior is not None else 0.0
    if ttft:
        at_floor = [np.asarray([corrected(b, replace(fitted, ttft_floor_ms=fl)) for b in ttft]) for fl in FLOOR_GRID_MS]
        losses = [float(np.sum(_log_errors(pred, ttft) ** 2)) for pred in at_floor]
        floor = float(FLOOR_GRID_MS[int(np.argmin(losses))])
    return replace(fitted, ttft_floor_ms=floor, points=len(bases), scope=scope)


@dataclass(frozen=True)
class FittedFactors:
    """Factors per (GPU, engine), with the engine-wide and global fallbacks."""

    groups: dict[tuple[str, str], Factors]
    engines: dict[str, Factors]
    overall: Factors

    def for_point(self, m: Measurement) -> Factors:
        """The group's factors when it has enough points, else the engine's, else the overall
        fit; the TTFT floor is always the engine's (few TTFT points per group)."""
        engine = self.engines.get(m.engine)
        floor = (engine or self.overall).ttft_floor_ms
        group = self.groups.get((m.hardware, m.engine))
        if group is not None and group.points >= MIN_GROUP_POINTS:
            return replace(group, ttft_floor_ms=floor)
        if engine is not None and engine.points >= MIN_GROUP_POINTS:
            return engine
        return replace(self.overall, ttft_floor_ms=floor)


def fit_factors(bases: list[Base]) -> FittedFactors:
    """One set of factors per (GPU, engine), per engine (pooled over GPUs) and overall."""
    usable = [b for b in bases if b.fits]
    groups: dict[tuple[str, str], list[Base]] = {}
    engines: dict[str, list[Base]] = {}
    for b in usable:
        groups.setdefault((b.measurement.hardware, b.measurement.engine), []).append(b)
        engines.setdefault(b.measurement.engine, []).append(b)
    overall = fit_group(usable, "all")
    pooled = {key: fit_group(items, "engine", overall) for key, items in engines.items()}
    return FittedFactors(
        {
            key: fit_group(items, "gpu+engine", pooled[key[1]])
            for key, items in groups.items()
            if len(items) >= MIN_GROUP_POINTS
        },
        pooled,
        overall,
    )


@dataclass(frozen=True)
class Row:
    base: Base
    in_sample: float
    held_out: float  # predicted with the factors fitted without this point's family

    @property
    def measured(self) -> float:
        return self.base.measurement.value


@dataclass(frozen=True)
class BroadReport:
    rows: tuple[Row, ...]
    factors: FittedFactors
    unfitted: tuple[Base, ...]  # measurements the cost model cannot serve (e.g. out of memory)


def run(measurements: list[Measurement] | None = None) -> BroadReport:
    """Base figures, in-sample fit and leave-one-family-out predictions for every measurement."""
    bases = base_figures(measurements if measurements is not None else load_measurements())
    usable = [b for b in bases if b.fits]
    factors = fit_factors(usable)
    held: dict[str, float] = {}
    for family in sorted({b.measurement.family for b in usable}):
        train = fit_factors([b for b in usable if b.measurement.family != family])
        for b in usable:
            if b.measurement.family == family:
                held[b.measurement.id] = corrected(b, train.for_point(b.measurement))
    rows = tuple(Row(b, corrected(b, factors.for_point(b.measurement)), held[b.measurement.id]) for b in usable)
    return BroadReport(rows, factors, tuple(b for b in bases if not b.fits))


def summary(rows: Iterable[Row], pick: Callable[[Row], float]) -> tuple[int, float, float]:
    """(points, median |error|, share within 2x) of ``pick`` (a prediction) against measured."""
    rows = list(rows)
    if not rows:
        return 0, math.nan, math.nan
    errors = [abs(pick(r) / r.measured - 1) for r in rows]
    within = [max(pick(r) / r.measured, r.measured / pick(r)) <= 2.0 for r in rows]
    return len(rows), statistics.median(errors), sum(within) / len(within)


def meets_target(report: BroadReport) -> bool:
    """Issue 14's bar: leave-one-family-out median |error| <= 20% per metric class, >= 90% within 2x."""
    for cls in ("throughput", "tpot", "ttft"):
        n, med, _ = summary((r for r in report.rows if r.base.measurement.metric_class == cls), lambda r: r.held_out)
        if n and med > TARGET_MEDIAN_ABS_ERROR:
            return False
    _, _, within = summary(report.rows, lambda r: r.held_out)
    return within >= TARGET_WITHIN_2X


CLASSES = ("throughput", "tpot", "ttft")


def _table(rows: list[Row], key: Callable[[Row], str], title: str) -> list[str]:
    lines = [
        f"| {title} | points | base median abs. error | in-sample median abs. error | in-sample within 2x | "
        "held-out median abs. error | held-out within 2x |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in sorted({key(r) for r in rows}):
        part = [r for r in rows if key(r) == name]
        n, base, base2 = summary(part, lambda r: r.base.value)
        _, ins, ins2 = summary(part, lambda r: r.in_sample)
        _, out, out2 = summary(part, lambda r: r.held_out)
        lines.append(f"| {name} | {n} | {base:.0%} | {ins:.0%} | {ins2:.0%} | {out:.0%} | {out2:.0%} |")
    return lines


def render_markdown(report: BroadReport, picture: str | None = None) -> str:
    """The broad fidelity section of ``results/fidelity.md``."""
    rows = list(report.rows)
    lines = [
        "# Cost-model fidelity beyond DeepSeek-V3 (issue 14)",
        "",
        f"{len(rows)} published measurements (`placer/data/measurements.json`): "
        f"{len({r.base.measurement.family for r in rows})} model families, "
        f"{len({r.base.measurement.engine for r in rows})} engines, "
        f"{len({r.base.measurement.hardware for r in rows})} GPU types; decode batches "
        f"{min(r.base.decode_batch for r in rows):.0f} to {max(r.base.decode_batch for r in rows):,.0f} at the "
        "modelled serving point. Each is re-expressed in the mode it was measured in (offline: the batch filled "
        "to memory or to the engine's / burst's cap; concurrency: a closed loop) and run through the serving "
        "model; *base* is the cost model alone, *in-sample* adds engine factors fitted on all points, "
        "*held-out* adds factors fitted without the point's model family (leave-one-family-out). One set of "
        "factors per (GPU, engine); groups with fewer than "
        f"{MIN_GROUP_POINTS} points use the engine's pooled fit. Error is predicted / measured - 1.",
        "",
        "## By metric",
        "",
        *_table(rows, lambda r: r.base.measurement.metric_class, "metric"),
        "",
        f"Target (issue 14): held-out median |error| <= {TARGET_MEDIAN_ABS_ERROR:.0%} per metric and >= "
        f"{TARGET_WITHIN_2X:.0%} of points within 2x: **{'met' if meets_target(report) else 'NOT met'}**. "
        f"TPOT rests on {_count(rows, 'tpot')} and TTFT on {_count(rows, 'ttft')} small-batch points (few "
        "families per engine, so leaving a family out often leaves the engine without small-batch points).",
        "",
        "## By engine",
        "",
        *_table(rows, lambda r: r.base.measurement.engine, "engine"),
        "",
        "## By GPU",
        "",
        *_table(rows, lambda r: r.base.measurement.hardware, "GPU"),
        "",
        "## By model family",
        "",
        *_table(rows, lambda r: r.base.measurement.family, "family"),
        "",
    ]
    if picture:
        lines += ["## Predicted against measured", "", f"![predicted vs measured, log axes]({picture})", ""]
    lines += [
        "## Fitted factors per (GPU, engine)",
        "",
        "| GPU | engine | points | prefill scale | decode scale | decode knee batch | kernel overhead us | "
        "step overhead ms | request overhead ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fitted = [((g, e), f) for (g, e), f in sorted(report.factors.groups.items())]
    fitted += [(("(all GPUs)", e), f) for e, f in sorted(report.factors.engines.items())]
    for (gpu, engine), f in fitted:
        lines.append(
            f"| {gpu} | {engine} | {f.points} | {f.prefill_scale:.2f} | {f.decode_scale:.2f} | "
            f"{f.decode_knee_batch:,.0f} | {f.launch_overhead_us:.0f} | {f.step_overhead_ms:.1f} | "
            f"{f.request_overhead_ms:.0f} |"
        )
    floors = ", ".join(f"{e} {f.ttft_floor_ms:.0f} ms" for e, f in sorted(report.factors.engines.items()))
    lines += ["", f"TTFT floor per engine: {floors}.", ""]
    if report.unfitted:
        lines += ["## Not served by the model", ""]
        lines += [f"* {b.measurement.id}: {b.reason}" for b in report.unfitted]
        lines.append("")
    lines += [
        "## Every point",
        "",
        "| id | engine | GPU | metric | measured | base | in-sample | held-out | decode batch |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m = r.base.measurement
        lines.append(
            f"| {m.id} | {m.engine} | {m.hardware} | {m.metric} | {m.value:,.1f} | {r.base.value / m.value:.2f}x | "
            f"{r.in_sample / m.value:.2f}x | {r.held_out / m.value:.2f}x | {r.base.decode_batch:,.0f} |"
        )
    lines += ["", "## Sources", ""]
    for source in sorted({_source_document(r.base.measurement.source) for r in rows}):
        ids = [r.base.measurement.id for r in rows if _source_document(r.base.measurement.source) == source]
        lines.append(f"* {source} ({len(ids)} values)")
    lines.append("")
    return "\n".join(lines)


def _count(rows: list[Row], metric_class: str) -> int:
    return sum(r.base.measurement.metric_class == metric_class for r in rows)


def _source_document(source: str) -> str:
    """The document part of a source string (before the table / section reference)."""
    return source.split("), ")[0] + ")" if "), " in source else source


def plot(report: BroadReport, path: Path) -> None:
    """Predicted (held-out) against measured on log axes, one panel per metric class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    markers = {"trtllm": ("o", "tab:blue"), "vllm": ("s", "tab:orange"), "sglang": ("^", "tab:green")}
    for ax, cls in zip(axes, CLASSES, strict=True):
        rows = [r for r in report.rows if r.base.measurement.metric_class == cls]
        for engine, (marker, colour) in markers.items():
            part = [r for r in rows if r.base.measurement.engine == engine]
            if part:
                xs, ys = [r.measured for r in part], [r.held_out for r in part]
                ax.scatter(xs, ys, marker=marker, c=colour, label=engine, s=18)
        values = [v for r in rows for v in (r.measured, r.held_out)]
        if values:
            lo, hi = min(values) / 1.5, max(values) * 1.5
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            ax.plot([lo, hi], [2 * lo, 2 * hi], "k:", lw=0.6)
            ax.plot([lo, hi], [lo / 2, hi / 2], "k:", lw=0.6)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{cls} ({len(rows)} points, held-out)")
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


PICTURE_NAME = "fidelity-broad.png"


def render_all(out: Path | None = None, profiles_out: Path | None = None) -> tuple[str, bool]:
    """Both fidelity sections (the DeepSeek-V3 points of issue 6, then the broad set) as one
    Markdown text; with ``out`` the picture is written beside it, with ``profiles_out`` the fitted
    engine profiles. Returns the text and whether the DeepSeek-V3 target of issue 6 holds (the
    broad set reports its own target in the text)."""
    from placer.fidelity import render_markdown as render_deepseek
    from placer.fidelity import run_fidelity

    deepseek = run_fidelity()
    broad = run()
    picture = None
    if profiles_out is not None:
        write_atomic(profiles_out, json.dumps(engine_profiles_document(broad), indent=1) + "\n")
    if out is not None:
        plot(broad, out.parent / PICTURE_NAME)
        picture = PICTURE_NAME
    return render_deepseek(deepseek) + "\n" + render_markdown(broad, picture), deepseek.meets_target


def engine_profiles_document(report: BroadReport) -> dict[str, object]:
    """The fitted factors as ``placer/data/engine_profiles.json`` (read by
    :mod:`placer.catalogue.engine_profiles`), every figure with the measurements it came from."""
    rows = [r.base.measurement for r in report.rows]

    def record(f: Factors, ids: list[str]) -> dict[str, object]:
        return {
            "prefill_scale": round(f.prefill_scale, 4),
            "decode_scale": round(f.decode_scale, 4),
            "decode_knee_batch": None if math.isinf(f.decode_knee_batch) else f.decode_knee_batch,
            "launch_overhead_us": f.launch_overhead_us,
            "step_overhead_ms": f.step_overhead_ms,
            "request_overhead_ms": f.request_overhead_ms,
            "points": f.points,
            "source": f"fitted by placer fidelity (placer/fidelity_broad.py, grid search on log error) on "
            f"{len(ids)} measurements of placer/data/measurements.json: {', '.join(ids)}",
        }

    engines: dict[str, object] = {}
    for engine, pooled in sorted(report.factors.engines.items()):
        ids = [m.id for m in rows if m.engine == engine]
        by_gpu = {
            gpu: record(f, [m.id for m in rows if m.engine == engine and m.hardware == gpu])
            for (gpu, e), f in sorted(report.factors.groups.items())
            if e == engine
        }
        ttft_ids = [m.id for m in rows if m.engine == engine and m.metric_class == "ttft"]
        engines[engine] = {
            "ttft_floor_ms": pooled.ttft_floor_ms,
            "ttft_floor_source": f"fitted on the TTFT measurements {', '.join(ttft_ids) or '(none: 0)'}",
            "pooled": record(pooled, ids),
            "by_gpu": by_gpu,
        }
    return {
        "schema": "placer.engine_profiles/1",
        "note": "Engine factors fitted on the broad calibration set (docs/cost-model.md, 'Engine profiles'). "
        "Written by python benchmarks/fidelity.py --write-engine-profiles; do not edit by hand.",
        "engines": engines,
    }
