"""Named, overridable assumptions of the cost model.

Each default says where it comes from. An instance overrides any of them under
``cost_parameters``; the formulas that use them are in ``docs/cost-model.md``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt

from placer.schema.base import Dtype, StrictModel
from placer.schema.limits import AtMost


class CostParameters(StrictModel):
    """Assumptions the cost model makes that no input file states."""

    activation_buffers_per_token: Annotated[float, AtMost("MAX_RATIO")] = Field(
        8.0,
        gt=0,
        description=(
            "live hidden-size activation buffers per prefill token (residual, norm output, attention "
            "output, MoE dispatch/combine buffers): order of magnitude of vLLM's profile run"
        ),
    )
    memory_margin_fraction: float = Field(
        0.05, ge=0, lt=1, description="share of HBM left free by every plan that fits (fragmentation, allocator)"
    )
    comm_compute_overlap: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of the shorter of communication and compute hidden by the other; 0 = none (conservative)",
    )
    prefill_micro_batches: Annotated[PositiveInt, AtMost("MAX_MICRO_BATCHES")] | None = Field(
        None, description="pipeline micro-batches during prefill; default pp (vLLM runs pp virtual engines)"
    )
    decode_micro_batches: Annotated[PositiveInt, AtMost("MAX_MICRO_BATCHES")] | None = Field(
        None, description="pipeline micro-batches during decode; default pp"
    )
    allreduce_algorithm: Literal["ring", "tree", "custom"] = Field(
        "ring",
        description=(
            "'ring': NCCL's default for large messages; 'tree'; 'custom': the engines' own one-shot / "
            "two-shot all-reduce inside an NVLink domain (vLLM, SGLang, TensorRT-LLM), the ring across domains"
        ),
    )
    dispatch_dtype: Dtype | None = Field(
        None, description="precision of EP dispatch payload; default the activation precision (DeepEP uses fp8)"
    )
    combine_dtype: Dtype | None = Field(None, description="precision of EP combine payload; default activations")
    node_dedup_prefill: bool = Field(
        True, description="prefill all-to-all sends a token once per remote node (DeepEP normal mode)"
    )
    node_dedup_decode: bool = Field(
        False, description="decode all-to-all sends once per remote expert (DeepEP low-latency mode)"
    )
    default_prefill_chunk_tokens: Annotated[PositiveInt, AtMost("MAX_TOKENS")] = Field(
        8192,
        description=(
            "tokens per prefill forward per DP rank when the workload sets no prefill_chunk_tokens: "
            "the chunked-prefill budget SGLang (chunked_prefill_size) and vLLM (max_num_batched_tokens) default to"
        ),
    )
    two_batch_overlap: bool = Field(
        False,
        description=(
            "split every forward into two micro-batches whose communication overlaps the other's compute "
            "(DeepSeek's dual micro-batch overlap, SGLang --enable-two-batch-overlap): hides "
            "hardware.efficiency.overlap_efficiency of the shorter of compute and communication, reads the "
            "weights once per half-batch and halves the activation workspace"
        ),
    )
    redundant_experts_per_gpu: Annotated[int, AtMost("MAX_EXPERTS")] | None = Field(
        None,
        ge=0,
        description=(
            "redundant expert copies each GPU holds per MoE layer when experts are placed with routing "
            "statistics; null: placer chooses the count within memory. 0 fits an engine run without "
            "redundant experts (SGLang without --ep-num-redundant-experts, vLLM without EPLB)"
        ),
    )
    expert_load_imbalance: Annotated[float, AtMost("MAX_RATIO")] = Field(
        1.0,
        ge=1.0,
        description=(
            "busiest GPU's routed (token, expert) pairs over the mean, per MoE layer, when the instance gives "
            "no routing statistics (1.0: perfectly balanced). It scales the busiest GPU's expert GEMMs, its "
            "all-to-all volume and its MoE workspace. Balanced-by-EPLB serving stays above 1: SGLang measured "
            "50,302 vs 59,337 tokens/s/node for its default vs a simulated perfect expert distribution "
            "(lmsys.org/blog/2025-05-05-large-scale-ep). Ignored when routing statistics are given."
        ),
    )
    layer_overhead_us: Annotated[float, AtMost("MAX_MICROSECONDS")] = Field(
        0.0, ge=0, description="fixed per-layer launch overhead added to each phase's layer time"
    )
    launch_overhead_us: Annotated[float, AtMost("MAX_MICROSECONDS")] = Field(
        0.0,
        ge=0,
        description=(
            "fixed time per kernel of a layer's forward, added to each phase's layer time times the layer's "
            "kernel count (costmodel.layers.kernel_launches: attention, FFN or MoE, TP all-reduces)"
        ),
    )
    step_overhead_us: Annotated[float, AtMost("MAX_MICROSECONDS")] = Field(
        0.0,
        ge=0,
        description=(
            "fixed time per engine step whatever the depth (scheduler, input preparation, sampling, "
            "CUDA-graph launch), charged once per forward on the last pipeline stage with the LM head"
        ),
    )
    engine_profile: Literal["off", "fitted"] = Field(
        "off",
        description=(
            "'fitted': take launch_overhead_us and step_overhead_us from the engine profile fitted on the "
            "broad calibration set (placer/data/engine_profiles.json) for the instance's engine and GPU; "
            "needs engine set to vllm, sglang or trtllm. 'off' (default): the two figures as given"
        ),
    )
