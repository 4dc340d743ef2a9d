"""Shared pieces of the schema: a strict base model and number precisions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

#: Storage precisions and their size in bytes per element. ``fp4`` counts the 4-bit payload
#: plus one shared 8-bit scale per 32 elements (MXFP4), i.e. 4.25 bits.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 4.25 / 8.0,
}

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4"]

#: Which peak-FLOPS figure of a GPU a GEMM in a given storage precision runs at.
COMPUTE_PRECISION: dict[str, str] = {
    "fp32": "bf16",  # fp32 weights are assumed to be cast to bf16 for the tensor cores
    "bf16": "bf16",
    "fp16": "fp16",
    "fp8": "fp8",
    "int8": "fp8",
    "fp4": "fp4",
}


class StrictModel(BaseModel):
    """Immutable pydantic model that rejects unknown fields (a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
