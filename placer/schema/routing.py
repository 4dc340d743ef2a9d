"""Routing statistics schema (optional input).

Without statistics placer assumes uniform, independent routing and says so in every report.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveInt

from placer.schema.base import StrictModel
from placer.schema.limits import AtMost


class SyntheticRouting(StrictModel):
    """Seeded generator, so that an instance is reproducible without data files."""

    kind: Literal["synthetic"] = "synthetic"
    seed: Annotated[int, AtMost("MAX_SEED")] = Field(0, ge=0, description="generator seed (numpy needs it >= 0)")
    tokens: Annotated[PositiveInt, AtMost("MAX_SYNTHETIC_TOKENS")] = Field(
        4096, description="tokens sampled per MoE layer"
    )
    zipf_exponent: Annotated[NonNegativeFloat, AtMost("MAX_ZIPF_EXPONENT")] = Field(
        0.0, description="expert popularity skew; 0 = uniform"
    )
    coactivation_clusters: Annotated[int, AtMost("MAX_EXPERTS")] = Field(
        0, ge=0, description="planted clusters of experts selected together"
    )
    cluster_affinity: float = Field(0.0, ge=0, le=1, description="probability a token stays inside its cluster")
    group_limited: bool = Field(True, description="honour the model's groups_per_token")


class LoadsRouting(StrictModel):
    """Measured per-layer expert loads (token counts or shares), one row per MoE layer."""

    kind: Literal["loads"] = "loads"
    loads: list[list[NonNegativeFloat]]


class FileRouting(StrictModel):
    """Statistics in a file: an ``.npz`` of per-layer ``[tokens, k]`` traces or SGLang ``logical_count``."""

    kind: Literal["file"] = "file"
    path: str
    format: Literal["npz_topk", "sglang_logical_count"]


RoutingSpec = SyntheticRouting | LoadsRouting | FileRouting
