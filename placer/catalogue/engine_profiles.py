"""Engine profiles: what a serving engine adds to the kernels' roofline time, beside the hardware profile.

A hardware profile says what the GPU can do; an engine profile says how far one engine's kernels
and scheduler are from that, per GPU (``docs/cost-model.md``, "Engine profiles"):

* ``prefill_scale``, ``decode_scale``: prefill and decode kernels take that many times their
  roofline time;
* ``decode_knee_batch``: the decode part of a step takes ``1 + b / knee`` times longer at a
  decode batch of ``b`` (``null``: flat);
* ``launch_overhead_us``: fixed time per kernel of a layer per engine step (launch and ramp of the
  small kernels), times the layer's kernel count (``costmodel.layers.kernel_launches``); it is the
  cost model's ``cost_parameters.launch_overhead_us``;
* ``step_overhead_ms``: fixed time per engine step, whatever the depth (scheduler, input
  preparation, sampling, graph launch); the cost model's ``cost_parameters.step_overhead_us`` / 1000;
* ``request_overhead_ms``: serial time per request outside the GPU (API server, tokeniser);
* ``ttft_floor_ms`` (per engine): fixed time added to every first token.

The figures live in ``placer/data/engine_profiles.json``, written by ``python
benchmarks/fidelity.py --write-engine-profiles`` from the fit of :mod:`placer.fidelity_broad`
on ``placer/data/measurements.json``; each carries the measurements it was fitted on as its source.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placer.errors import InputError
from placer.schema.costparams import CostParameters

PROFILES_FILE = Path(__file__).resolve().parents[1] / "data" / "engine_profiles.json"
FACTOR_FIELDS = (
    "prefill_scale",
    "decode_scale",
    "decode_knee_batch",
    "launch_overhead_us",
    "step_overhead_ms",
    "request_overhead_ms",
)


@dataclass(frozen=True)
class EngineFactors:
    """One engine on one GPU (or pooled over GPUs), with where the figures come from."""

    engine: str
    gpu: str | None  # None: pooled over every GPU of the engine
    prefill_scale: float
    decode_scale: float
    decode_knee_batch: float  # math.inf: flat
    launch_overhead_us: float
    step_overhead_ms: float
    request_overhead_ms: float
    ttft_floor_ms: float
    source: str

    def cost_parameters(self) -> dict[str, float | str]:
        """The cost-model parameters this profile sets (``Instance.cost_parameters``): the fixed
        per-kernel and per-step times and the engines' all-reduce (``custom``, C1a). The kernel
        scales, the knee and the request overhead describe the fit's correction of whole serving
        figures and have no cost-model parameter yet."""
        return {
            "launch_overhead_us": self.launch_overhead_us,
            "step_overhead_us": self.step_overhead_ms * 1e3,
            # the fit ran with the engines' own all-reduce (docs/cost-model.md C1a)
            "allreduce_algorithm": "custom",
        }


def _factors(record: Any, where: str, source: str) -> dict[str, float]:
    if not isinstance(record, dict):
        raise InputError.single(where, "must be an object of engine factors", source)
    out = {}
    for name in FACTOR_FIELDS:
        value = record.get(name)
        if name == "decode_knee_batch" and value is None:
            out[name] = math.inf
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or not math.isfinite(value):
            raise InputError.single(f"{where}.{name}", f"must be a non-negative number, got {value!r}", source)
        out[name] = float(value)
    if not isinstance(record.get("source"), str) or not record["source"]:
        raise InputError.single(f"{where}.source", "every figure needs its source", source)
    return out


def load_engine_profiles(path: str | Path = PROFILES_FILE) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError.single("", f"engine profiles file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise InputError.single("", f"not valid JSON ({exc.msg} at line {exc.lineno})", str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("engines"), dict):
        raise InputError.single("engines", "must be an object keyed by engine", str(path))
    return data


def engine_factors(engine: str, gpu: str, path: str | Path = PROFILES_FILE) -> EngineFactors:
    """The profile of ``engine`` on hardware ``gpu``: its own fit where one exists, else the engine's
    fit pooled over GPUs."""
    data = load_engine_profiles(path)
    source = str(path)
    profile = data["engines"].get(engine)
    if not isinstance(profile, dict):
        known = ", ".join(sorted(data["engines"]))
        raise InputError.single("engine", f"no profile for engine {engine!r}; known: {known}", source)
    floor = profile.get("ttft_floor_ms")
    if not isinstance(floor, int | float) or floor < 0:
        raise InputError.single(f"engines.{engine}.ttft_floor_ms", "must be a non-negative number", source)
    by_gpu = profile.get("by_gpu") or {}
    if gpu in by_gpu:
        record, where, on = by_gpu[gpu], f"engines.{engine}.by_gpu.{gpu}", gpu
    else:
        record, where, on = profile.get("pooled"), f"engines.{engine}.pooled", None
    values = _factors(record, where, source)
    return EngineFactors(engine, on, **values, ttft_floor_ms=float(floor), source=record["source"])


def resolve_cost_parameters(params: CostParameters, engine: str, gpu: str, source: str | None = None) -> CostParameters:
    """The instance's cost parameters with the fitted engine profile applied when it asks for one
    (``cost_parameters.engine_profile: fitted``): the profile's fixed per-kernel and per-step times
    replace ``launch_overhead_us`` and ``step_overhead_us``, and the all-reduce is the engines' own.
    With ``off`` (the default) the parameters come back unchanged, so no figure moves unless an
    instance opts in."""
    if params.engine_profile == "off":
        return params
    if engine not in ("vllm", "sglang", "trtllm"):
        raise InputError.single(
            "cost_parameters.engine_profile",
            f"'fitted' needs the instance's engine set to vllm, sglang or trtllm (it is {engine!r})",
            source,
        )
    return params.model_copy(update=engine_factors(engine, gpu).cost_parameters())
