"""The broad calibration set: published serving measurements (``placer/data/measurements.json``).

Each record is one measured figure with where it was published (``source``: repository, commit,
file and table, or a URL), the engine and its version, every setting the source states
(``stated``) and what placer assumes where it is silent (``assumptions``). The fidelity check
(:mod:`placer.fidelity_broad`) re-expresses each record in the serving mode it was measured in
(``offline``: the batch filled to memory; ``concurrency``: a closed loop of ``concurrency``
requests) and compares the cost model's figure with ``value``.

``precision`` overrides the model file's precision field by field (a component left out keeps the
model's own: gpt-oss's config already has MXFP4 experts, so its BF16 runs name ``experts: bf16``).

This module only reads and checks the file; errors are :class:`~placer.errors.InputError` naming
the record and field (``measurements[3].metric``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.errors import InputError
from placer.schema import DTYPE_BYTES

DATA_FILE = Path(__file__).resolve().parent / "measurements.json"

ENGINES = ("vllm", "sglang", "trtllm")
MODES = ("offline", "concurrency")
#: metric -> its class in the fidelity tables
METRICS = {
    "output_tokens_per_s_per_gpu": "throughput",
    "total_tokens_per_s": "throughput",
    "tpot_ms": "tpot",
    "ttft_ms": "ttft",
}
PRECISION_FIELDS = ("weights", "kv_cache", "activations", "attention", "dense_mlp", "experts", "embeddings")
PARALLEL_FIELDS = ("tp", "dep", "dp_attn", "ep", "tp_moe")


@dataclass(frozen=True)
class Measurement:
    """One published figure and the deployment it was measured on."""

    id: str
    family: str
    model: str
    engine: str
    engine_version: str
    hardware: str
    gpus: int
    parallelism: dict[str, int]
    precision: dict[str, str]
    mode: str
    prompt_tokens: int
    output_tokens: float
    metric: str
    value: float
    source: str
    concurrency: int | None = None
    prefill_chunk_tokens: int | None = None
    max_batch_size: int | None = None  # the engine's cap on running requests (or a burst's size)
    stated: dict[str, Any] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()

    @property
    def metric_class(self) -> str:
        return METRICS[self.metric]


def _fail(where: str, name: str, reason: str, source: str) -> InputError:
    return InputError.single(f"{where}.{name}", reason, source)


def _positive(record: dict[str, Any], name: str, where: str, source: str, integer: bool = False) -> Any:
    value = record.get(name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (integer and not isinstance(value, int)):
        kind = "a positive integer" if integer else "a positive number"
        raise _fail(where, name, f"must be {kind}, got {value!r}", source)
    return value


def _text(record: dict[str, Any], name: str, where: str, source: str, choices: tuple[str, ...] = ()) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, name, "must be a non-empty string", source)
    if choices and value not in choices:
        raise _fail(where, name, f"must be one of {', '.join(choices)}, got {value!r}", source)
    return value


def parse_measurement(record: Any, where: str, source: str) -> Measurement:
    """Check one record and build its :class:`Measurement`."""
    if not isinstance(record, dict):
        raise InputError.single(where, "must be an object", source)
    par = record.get("parallelism")
    if not isinstance(par, dict) or not par or any(k not in PARALLEL_FIELDS for k in par):
        raise _fail(where, "parallelism", f"must be an object of {', '.join(PARALLEL_FIELDS)}", source)
    for name in par:
        _positive(par, name, f"{where}.parallelism", source, integer=True)
    precision = record.get("precision")
    if not isinstance(precision, dict) or any(k not in PRECISION_FIELDS for k in precision):
        raise _fail(where, "precision", f"must be an object of {', '.join(PRECISION_FIELDS)}", source)
    for name, dtype in precision.items():
        if dtype not in DTYPE_BYTES:
            raise _fail(f"{where}.precision", name, f"must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}", source)
    mode = _text(record, "mode", where, source, MODES)
    concurrency = None
    if mode == "concurrency":
        concurrency = _positive(record, "concurrency", where, source, integer=True)
    chunk = record.get("prefill_chunk_tokens")
    if chunk is not None:
        chunk = _positive(record, "prefill_chunk_tokens", where, source, integer=True)
    cap = record.get("max_batch_size")
    if cap is not None:
        cap = _positive(record, "max_batch_size", where, source, integer=True)
    assumptions = record.get("assumptions", [])
    if not isinstance(assumptions, list) or not all(isinstance(a, str) for a in assumptions):
        raise _fail(where, "assumptions", "must be a list of strings", source)
    stated = record.get("stated", {})
    if not isinstance(stated, dict):
        raise _fail(where, "stated", "must be an object", source)
    return Measurement(
        id=_text(record, "id", where, source),
        family=_text(record, "family", where, source),
        model=_text(record, "model", where, source),
        engine=_text(record, "engine", where, source, ENGINES),
        engine_version=_text(record, "engine_version", where, source),
        hardware=_text(record, "hardware", where, source),
        gpus=_positive(record, "gpus", where, source, integer=True),
        parallelism=dict(par),
        precision=dict(precision),
        mode=mode,
        prompt_tokens=_positive(record, "prompt_tokens", where, source, integer=True),
        output_tokens=float(_positive(record, "output_tokens", where, source)),
        metric=_text(record, "metric", where, source, tuple(METRICS)),
        value=float(_positive(record, "value", where, source)),
        source=_text(record, "source", where, source),
        concurrency=concurrency,
        prefill_chunk_tokens=chunk,
        max_batch_size=cap,
        stated=stated,
        assumptions=tuple(assumptions),
    )


def load_measurements(path: str | Path = DATA_FILE) -> list[Measurement]:
    """Every measurement of the file, checked; ids must be unique."""
    path = Path(path)
    source = str(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError.single("", f"measurements file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise InputError.single("", f"not valid JSON ({exc.msg} at line {exc.lineno})", source) from None
    records = data.get("measurements") if isinstance(data, dict) else None
    if not isinstance(records, list) or not records:
        raise InputError.single("measurements", "must be a non-empty list of measurement objects", source)
    out = [parse_measurement(r, f"measurements[{i}]", source) for i, r in enumerate(records)]
    seen: set[str] = set()
    for i, m in enumerate(out):
        if m.id in seen:
            raise InputError.single(f"measurements[{i}].id", f"duplicate id {m.id!r}", source)
        seen.add(m.id)
    return out
