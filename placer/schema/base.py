"""Shared pieces of the schema: a strict base model and number precisions."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

#: Storage precisions and their size in bytes per element. ``fp4`` counts the 4-bit payload
#: plus one shared 8-bit scale per 32 elements (MXFP4), i.e. 4.25 bits.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 4.25 / 8.0,
    # Per-component formats (docs/cost-model.md, "Per-component precision"):
    "mxfp4": 4.25 / 8.0,  # OCP MX: 4-bit E2M1 + one 8-bit E8M0 scale per 32 elements
    "nvfp4": 4.5 / 8.0,  # NVIDIA: 4-bit E2M1 + one 8-bit E4M3 scale per 16 elements (+ a per-tensor fp32)
    "fp8_block": 1.0 + 4.0 / (128 * 128),  # fp8 + one fp32 scale per 128x128 weight block (DeepSeek-V3)
    "int4": (4.0 + 16.0 / 128) / 8.0,  # weight-only int4 (AWQ/GPTQ): one 16-bit scale per group of 128
}

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4", "mxfp4", "nvfp4", "fp8_block", "int4"]

#: Which peak-FLOPS figure of a GPU a GEMM in a given storage precision runs at.
COMPUTE_PRECISION: dict[str, str] = {
    "fp32": "bf16",  # fp32 weights are assumed to be cast to bf16 for the tensor cores
    "bf16": "bf16",
    "fp16": "fp16",
    "fp8": "fp8",
    "int8": "int8",  # the profile's int8 peak, else its fp8 peak (HardwareProfile.peak_flops_per_s)
    "fp4": "fp4",
    "mxfp4": "fp4",  # falls back to the 16-bit peak on GPUs without FP4 tensor cores (weight-only there)
    "nvfp4": "fp4",
    "fp8_block": "fp8",
    "int4": "bf16",  # weight-only: dequantised to 16 bits in the GEMM's main loop
}


def _bare(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _allows_bool(tp: Any) -> bool:
    """Whether a field of type ``tp`` means to take ``true`` / ``false`` as they are."""
    tp = _bare(tp)
    if tp is bool or tp is Any or tp is object:
        return True
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_allows_bool(member) for member in get_args(tp))
    if origin is Literal:
        return any(isinstance(value, bool) for value in get_args(tp))
    return False


#: Values that hold no boolean inside them (checked by exact type: ``bool`` is a subclass of ``int``).
_SCALARS = frozenset({int, float, str, type(None)})


def _misplaced_bool(value: Any, tp: Any, path: str) -> str | None:
    """The path of the first boolean in ``value`` where ``tp`` wants something else, if any.

    Lists and dicts are followed through their element types; nested models check themselves."""
    kind = type(value)
    if kind is bool:
        return None if _allows_bool(tp) else path
    if kind in _SCALARS:  # the common case (long lists of numbers): nothing inside to look at
        return None
    tp = _bare(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        members = [m for m in args if m is not type(None)]
        if len(members) != 1:
            return None
        tp = _bare(members[0])
        origin, args = get_origin(tp), get_args(tp)
    if isinstance(value, (list, tuple)) and origin in (list, tuple, set, frozenset) and args:
        if set(map(type, value)) <= _SCALARS:  # a plain list of numbers or text (no bool among them)
            return None
        for index, item in enumerate(value):
            element = args[index] if origin is tuple and len(args) == len(value) and args[-1] is not ... else args[0]
            found = _misplaced_bool(item, element, f"{path}[{index}]")
            if found:
                return found
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        for key, item in value.items():
            found = _misplaced_bool(item, args[1], f"{path}.{key}")
            if found:
                return found
    return None


class StrictModel(BaseModel):
    """Immutable pydantic model that rejects unknown fields (a typo is an error, not a no-op),
    ``NaN`` and infinities, booleans where a number or a string is meant (pydantic's lax mode
    would read ``hidden_size: true`` as 1) and anything but ``true`` / ``false`` for a flag."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                key = name if name in data else info.alias
                if key is None or key not in data:
                    continue
                value = data[key]
                if _bare(info.annotation) is bool and not isinstance(value, bool):
                    # lax mode would read "yes", "off", 1 or 0 as a boolean
                    raise ValueError(f"{key}: must be true or false, got {value!r}")
                found = _misplaced_bool(value, info.annotation, str(key))
                if found:
                    raise ValueError(f"{found}: must be a number or text, not a boolean")
        return data
