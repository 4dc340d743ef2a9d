"""Hardware profile schema: one GPU type and the fabric it usually ships with.

Every figure carries its unit in its name. Bandwidths are *per GPU, per direction*. FLOPS are
dense (no 2:4 sparsity). Efficiency factors are the fraction of the peak that a kernel class
reaches; they are named so that a user (or ``placer calibrate``) can override them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from placer.schema.base import StrictModel
from placer.schema.limits import AtMost

HARDWARE_SCHEMA_VERSION = "placer.hardware/1"


class EfficiencySpec(StrictModel):
    """Achieved fraction of peak per kernel class and phase (dimensionless, in (0, 1]).

    The ``*_decode`` figures apply to decode-step kernels (few tokens per GEMM, attention over a
    long cache); left out, they equal the prefill figure. ``overlap_efficiency`` and
    ``alltoall_sm_fraction`` only act when ``cost_parameters.two_batch_overlap`` is on.
    ``placer calibrate`` fits the first five from measured kernel times.
    """

    gemm_mfu: float = Field(0.6, gt=0, le=1, description="dense and grouped GEMMs, prefill (many tokens)")
    gemm_mfu_decode: float | None = Field(None, gt=0, le=1, description="GEMMs of a decode step; default gemm_mfu")
    attention_mfu: float = Field(0.5, gt=0, le=1, description="attention core (flash-attention style), prefill")
    attention_mfu_decode: float | None = Field(
        None, gt=0, le=1, description="attention core of a decode step (e.g. FlashMLA); default attention_mfu"
    )
    hbm_bandwidth_utilisation: float = Field(0.8, gt=0, le=1)
    scaleup_bandwidth_utilisation: float = Field(0.8, gt=0, le=1, description="NVLink / xGMI collectives")
    scaleout_bandwidth_utilisation: float = Field(0.9, gt=0, le=1, description="RDMA NICs")
    overlap_efficiency: float = Field(
        0.9,
        ge=0,
        le=1,
        description="two-batch overlap: share of the shorter of compute and communication hidden behind the other",
    )
    alltoall_sm_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "share of the SMs an SM-driven all-to-all (DeepEP normal mode, prefill) takes from compute "
            "while the two batches overlap"
        ),
    )

    def mfu(self, kind: str, phase: str) -> float:
        """The MFU of an op class (``gemm`` or ``attention``) in ``phase`` (``prefill`` or ``decode``)."""
        if kind == "attention":
            return self.attention_mfu_decode if phase == "decode" and self.attention_mfu_decode else self.attention_mfu
        return self.gemm_mfu_decode if phase == "decode" and self.gemm_mfu_decode else self.gemm_mfu


class HardwareProfile(StrictModel):
    """A GPU type, its memory and its links."""

    schema_version: Literal["placer.hardware/1"] = HARDWARE_SCHEMA_VERSION
    name: str = Field(min_length=1, description="catalogue id, e.g. 'h100-sxm'")
    description: str = ""
    dense_tflops: dict[
        Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4"], Annotated[PositiveFloat, AtMost("MAX_TFLOPS")]
    ] = Field(description="peak dense tensor-core TFLOPS per precision (10^12 FLOP/s)")
    hbm_capacity_gb: Annotated[PositiveFloat, AtMost("MAX_HBM_GB")] = Field(description="device memory, 10^9 bytes")
    hbm_bandwidth_tb_per_s: Annotated[PositiveFloat, AtMost("MAX_BANDWIDTH_GB_PER_S")] = Field(
        description="peak device-memory bandwidth, 10^12 bytes/s"
    )
    runtime_reserve_gb: float = Field(
        3.0, ge=0, description="memory the runtime keeps for itself: CUDA context, NCCL and GEMM workspaces"
    )
    efficiency: EfficiencySpec = EfficiencySpec()
    scaleup_bandwidth_gb_per_s: Annotated[PositiveFloat, AtMost("MAX_BANDWIDTH_GB_PER_S")] = Field(
        description="NVLink per GPU per direction, 10^9 bytes/s"
    )
    scaleup_latency_us: Annotated[float, AtMost("MAX_MICROSECONDS")] = Field(
        3.0, ge=0, description="per collective step inside a node"
    )
    scaleout_bandwidth_gb_per_s: Annotated[PositiveFloat, AtMost("MAX_BANDWIDTH_GB_PER_S")] = Field(
        description="RDMA per GPU per direction, 10^9 bytes/s"
    )
    scaleout_latency_us: Annotated[float, AtMost("MAX_MICROSECONDS")] = Field(
        8.0, ge=0, description="per collective step across nodes"
    )
    gpus_per_node: Annotated[PositiveInt, AtMost("MAX_GPUS_PER_NODE")] = 8
    nvlink_domain_gpus: Annotated[PositiveInt, AtMost("MAX_GPUS_PER_NODE")] | None = Field(
        None, description="GPUs sharing one NVLink domain; default one node"
    )
    price_per_gpu_hour_usd: Annotated[float, AtMost("MAX_PRICE_USD")] | None = Field(None, gt=0)
    sources: dict[str, str] = Field(default_factory=dict, description="field -> where the figure comes from")

    @model_validator(mode="after")
    def _check(self) -> HardwareProfile:
        if "bf16" not in self.dense_tflops and "fp16" not in self.dense_tflops:
            raise ValueError("dense_tflops: needs at least a bf16 or fp16 figure")
        if self.runtime_reserve_gb >= self.hbm_capacity_gb:
            raise ValueError("runtime_reserve_gb: must be below hbm_capacity_gb")
        return self

    def peak_flops_per_s(self, precision: str) -> float:
        """Dense peak for GEMMs in ``precision``, falling back to the 16-bit figure; int8 GEMMs use
        the int8 figure where the profile states one, else the fp8 one (equal on Hopper and Blackwell)."""
        tflops = self.dense_tflops
        chain = (precision, "fp8") if precision == "int8" else (precision,)
        for key in (*chain, "bf16", "fp16"):
            if key in tflops:
                return tflops[key] * 1e12
        raise KeyError(precision)  # unreachable: the validator requires bf16 or fp16

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_capacity_gb * 1e9

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_bandwidth_tb_per_s * 1e12
