"""Fit a hardware profile's efficiency factors to measured kernel times.

A measurement is one kernel: ``operation`` (``gemm``, ``attention`` or ``memcpy``), its
``shape``, ``dtype``, ``phase`` (``prefill`` or ``decode``; default ``prefill``) and measured
``time_us``. Each becomes an :class:`~placer.costmodel.layers.Op` with its FLOPs and HBM bytes,
and the fit adjusts the factors that ``op_time_s`` (the cost model's own roofline) applies:

* ``hbm_bandwidth_utilisation`` from the memory-bound measurements (copies; GEMMs and attention
  whose roofline says memory binds);
* ``gemm_mfu``, ``gemm_mfu_decode``, ``attention_mfu``, ``attention_mfu_decode`` from the
  compute-bound measurements of each class.

Each factor is the geometric mean of the per-measurement implied factors (least squares on log
time), after dropping points more than ``OUTLIER_MADS`` median absolute deviations from the median
(robust to a few bad timings). Classification and fit alternate until they agree. numpy only.

Shapes: ``gemm`` ``{"m", "n", "k"}`` (``m`` tokens, ``n x k`` weight), bytes ``(m k + k n) b_in +
m n b_out`` with ``b_in`` from ``dtype`` and bf16 output; ``attention`` ``{"batch", "heads",
"q_len", "kv_len", "qk_dim", "v_dim", "causal", "kv_heads"}``, FLOPs ``2 b H q kv' (d_qk + d_v)``
with ``kv' = (kv+1)/2`` when causal and ``q = kv``, bytes: Q, K, V read and O written once
(bf16), K and V with ``kv_heads`` heads (default ``heads``; 1 for MLA's shared latent);
``memcpy`` ``{"bytes"}``: the bytes read plus written.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from placer.costmodel.layers import Op, op_time_s
from placer.errors import InputError
from placer.schema import DTYPE_BYTES, HardwareProfile
from placer.schema.base import COMPUTE_PRECISION

OPERATIONS = ("gemm", "attention", "memcpy")
PHASES = ("prefill", "decode")
GEMM_FIELDS = ("m", "n", "k")
ATTENTION_FIELDS = ("batch", "heads", "q_len", "kv_len", "qk_dim", "v_dim")
OUTLIER_MADS = 5.0
#: A measurement counts as memory-bound when its memory time is at least this share of the time.
MEMORY_BOUND_SHARE = 0.999


@dataclass(frozen=True)
class Measurement:
    """One timed kernel, as the cost model sees it."""

    op: Op
    precision: str  # the peak-FLOPS figure the op runs at
    time_s: float
    where: str  # "measurements[3]" or "row 4", for messages


def _number(value: Any, field: str, source: str, positive: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError.single(field, f"must be a number, got {value!r}", source) from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise InputError.single(field, f"must be a positive number, got {value!r}", source)
    return number


def to_measurement(row: dict[str, Any], where: str, source: str) -> Measurement:
    """Validate one record and turn it into an op; errors name the field."""
    operation = row.get("operation")
    if operation not in OPERATIONS:
        raise InputError.single(
            f"{where}.operation", f"must be one of {', '.join(OPERATIONS)}, got {operation!r}", source
        )
    phase = row.get("phase") or "prefill"
    if phase not in PHASES:
        raise InputError.single(f"{where}.phase", f"must be prefill or decode, got {phase!r}", source)
    dtype = row.get("dtype") or "bf16"
    if dtype not in DTYPE_BYTES:
        raise InputError.single(f"{where}.dtype", f"must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}", source)
    time_s = _number(row.get("time_us"), f"{where}.time_us", source) * 1e-6
    shape = row.get("shape")
    if not isinstance(shape, dict):
        raise InputError.single(f"{where}.shape", "must be an object of named sizes", source)

    def size(name: str) -> float:
        return _number(shape.get(name), f"{where}.shape.{name}", source)

    b_in = DTYPE_BYTES[dtype]
    if operation == "gemm":
        m, n, k = (size(f) for f in GEMM_FIELDS)
        op = Op("gemm", 2 * m * n * k, (m * k + k * n) * b_in + m * n * 2.0, "gemm", phase)
        precision = COMPUTE_PRECISION[dtype]
    elif operation == "attention":
        b, heads, q, kv, dqk, dv = (size(f) for f in ATTENTION_FIELDS)
        causal = bool(shape.get("causal", False))
        kv_heads = size("kv_heads") if "kv_heads" in shape else heads
        pairs = q * (kv + 1) / 2 if causal and q == kv else q * kv
        flops = 2 * b * heads * pairs * (dqk + dv)
        moved = 2.0 * b * (heads * q * (dqk + dv) + kv_heads * kv * (dqk + dv))
        op = Op("attention", flops, moved, "attention", phase)
        precision = "bf16"
    else:
        op = Op("memcpy", 0.0, size("bytes"), "gemm", phase)
        precision = "bf16"
    return Measurement(op, precision, time_s, where)


def read_measurements(path: str | Path) -> list[Measurement]:
    """Measurements from a JSON file (``{"measurements": [...]}`` or a list) or a CSV file.

    CSV columns: ``operation, phase, dtype, time_us`` and the shape sizes (``m, n, k``;
    ``batch, heads, q_len, kv_len, qk_dim, v_dim, causal``; ``bytes``), empty where unused.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError.single("", f"measurements file not found: {path}") from None
    rows: list[tuple[dict[str, Any], str]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "operation" not in reader.fieldnames or "time_us" not in reader.fieldnames:
            raise InputError.single("header", "a CSV needs the columns operation and time_us", source)
        for number, record in enumerate(reader, start=2):
            shape = {
                key: (value.lower() == "true" if key == "causal" else value)
                for key, value in record.items()
                if key not in ("operation", "phase", "dtype", "time_us") and value not in (None, "")
            }
            row = {
                "operation": record.get("operation"),
                "phase": record.get("phase"),
                "dtype": record.get("dtype"),
                "time_us": record.get("time_us"),
                "shape": shape,
            }
            rows.append((row, f"row {number}"))
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError.single("", f"not valid JSON ({exc.msg} at line {exc.lineno})", source) from None
        records = data.get("measurements") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise InputError.single("measurements", "must be a list of measurement objects", source)
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise InputError.single(f"measurements[{index}]", "must be an object", source)
            rows.append((record, f"measurements[{index}]"))
    if not rows:
        raise InputError.single("measurements", "no measurements in the file", source)
    return [to_measurement(row, where, source) for row, where in rows]


def _robust_geomean(values: list[float]) -> float:
    logs = np.log(np.asarray(values, dtype=float))
    median = float(np.median(logs))
    mad = float(np.median(np.abs(logs - median)))
    if mad > 0:
        logs = logs[np.abs(logs - median) <= OUTLIER_MADS * 1.4826 * mad]
    return float(np.exp(logs.mean()))


FACTOR_OF = {
    ("gemm", "prefill"): "gemm_mfu",
    ("gemm", "decode"): "gemm_mfu_decode",
    ("attention", "prefill"): "attention_mfu",
    ("attention", "decode"): "attention_mfu_decode",
}


@dataclass(frozen=True)
class FitResult:
    factors: dict[str, float]
    counts: dict[str, int]
    profile: HardwareProfile


def fit_efficiency(measurements: list[Measurement], hardware: HardwareProfile, max_rounds: int = 20) -> FitResult:
    """Fit the efficiency factors; factors without a usable measurement keep the profile's value."""
    eff = hardware.efficiency
    bw = hardware.hbm_bytes_per_s
    u = eff.hbm_bandwidth_utilisation
    factors: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _ in range(max_rounds):
        memory_implied: list[float] = []
        compute_implied: dict[str, list[float]] = {}
        for m in measurements:
            memory_share = m.op.hbm_bytes / (bw * u) / m.time_s
            if m.op.flops <= 0 or memory_share >= MEMORY_BOUND_SHARE:
                memory_implied.append(m.op.hbm_bytes / (bw * m.time_s))
            else:
                name = FACTOR_OF[(m.op.kind, m.op.phase)]
                compute_implied.setdefault(name, []).append(
                    m.op.flops / (hardware.peak_flops_per_s(m.precision) * m.time_s)
                )
        new_u = min(1.0, _robust_geomean(memory_implied)) if memory_implied else u
        new_factors = {name: min(1.0, _robust_geomean(values)) for name, values in compute_implied.items()}
        counts = {name: len(values) for name, values in compute_implied.items()} | {
            "hbm_bandwidth_utilisation": len(memory_implied)
        }
        converged = abs(new_u - u) <= 1e-12 and new_factors == factors
        u, factors = new_u, new_factors
        if converged:
            break
    fitted = dict(factors)
    if counts.get("hbm_bandwidth_utilisation"):
        fitted["hbm_bandwidth_utilisation"] = u
    new_eff = eff.model_copy(update=fitted)
    profile = hardware.model_copy(update={"efficiency": type(eff).model_validate(new_eff.model_dump())})
    return FitResult(fitted, counts, profile)


def predicted_time_s(m: Measurement, hardware: HardwareProfile) -> float:
    """The cost model's time for a measured kernel (for residuals)."""
    return op_time_s(m.op, hardware, m.precision)


def calibrated_profile(measurements_path: str | Path, hardware: HardwareProfile) -> tuple[HardwareProfile, FitResult]:
    """Read, fit and return a new profile whose sources say where the factors came from."""
    measurements = read_measurements(measurements_path)
    result = fit_efficiency(measurements, hardware)
    fitted = ", ".join(f"{k} {v:.4g} ({result.counts.get(k, 0)} points)" for k, v in sorted(result.factors.items()))
    sources = dict(hardware.sources)
    sources["efficiency"] = (
        f"fitted by `placer calibrate` from {Path(measurements_path).name} ({len(measurements)} kernel timings): "
        f"{fitted or 'no factor fitted'}; factors not fitted keep the values of profile {hardware.name}"
    )
    profile = result.profile.model_copy(update={"sources": sources})
    return profile, result
