"""Per-layer weights, KV cache and work per GPU, for one set of parallel degrees.

Each function returns figures for *one GPU* of a stage. Operations are listed with their FLOPs
and HBM bytes and timed by roofline; collectives are timed by ``comm``. Equations (M1)-(M4),
(O1)-(O9) of ``docs/cost-model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from placer.costmodel.comm import allgather_time_s, allreduce_time_s, alltoall_time_s
from placer.costmodel.params import ffn_params
from placer.costmodel.shapes import PhaseShape
from placer.costmodel.traffic import LayerTraffic
from placer.schema import DTYPE_BYTES, HardwareProfile, ModelSpec, Parallelism
from placer.schema.base import COMPUTE_PRECISION
from placer.schema.costparams import CostParameters
from placer.topology import Fabric


@dataclass(frozen=True)
class Op:
    """One kernel on one GPU: work and bytes moved through HBM."""

    name: str
    flops: float
    hbm_bytes: float
    kind: str  # "gemm" or "attention"
    phase: str = "prefill"  # "prefill" or "decode": picks the phase's MFU
    precision: str | None = None  # peak-FLOPS figure of a GEMM whose weights differ from the model's default
    #: multiplier on the profile's MFU for this op (O1a): 1 except for kernels known to run below
    #: the op class's calibrated efficiency (weight-only MXFP4 GEMMs)
    mfu_scale: float = 1.0


@dataclass(frozen=True)
class Collective:
    """One communication step on one GPU."""

    name: str
    time_s: float


@dataclass(frozen=True)
class LayerPhaseCost:
    """Time of one layer for one micro-batch on the busiest GPU of its stage."""

    ops: tuple[Op, ...]
    op_times_s: tuple[float, ...]
    collectives: tuple[Collective, ...]
    compute_s: float
    comm_s: float
    time_s: float


@dataclass(frozen=True)
class AttentionDims:
    """Attention sizes on one TP rank."""

    heads: float  # query heads per rank
    proj_params: float  # projection weights per rank
    kv_bytes_per_token: float  # cached bytes per token on this rank
    qk_dim_prefill: int
    v_dim_prefill: int
    qk_dim_decode: int
    v_dim_decode: int


def attention_dims(model: ModelSpec, tp: int) -> AttentionDims:
    """(M1) Per-rank projection weights and KV bytes.

    GQA: KV heads split over TP, replicated when ``tp`` exceeds them. MLA: the compressed latent
    is shared by all heads, so every TP rank caches all of it, and the down-projections
    (``q_a``, ``kv_a``) are replicated.
    """
    att = model.attention
    h = model.hidden_size
    kv_bytes = DTYPE_BYTES[model.precision.kv_cache]
    heads = att.num_heads / tp
    if att.kind == "mla":
        assert att.kv_lora_rank and att.qk_nope_head_dim and att.qk_rope_head_dim and att.v_head_dim
        qk = att.qk_nope_head_dim + att.qk_rope_head_dim
        latent = att.kv_lora_rank + att.qk_rope_head_dim
        if att.q_lora_rank:
            q = h * att.q_lora_rank + att.q_lora_rank * heads * qk
        else:
            q = h * heads * qk
        kv = h * latent + att.kv_lora_rank * heads * (att.qk_nope_head_dim + att.v_head_dim)
        out = heads * att.v_head_dim * h
        return AttentionDims(
            heads=heads,
            proj_params=q + kv + out,
            kv_bytes_per_token=latent * kv_bytes,
            qk_dim_prefill=qk,
            v_dim_prefill=att.v_head_dim,
            qk_dim_decode=latent,  # absorbed: scores in the latent space
            v_dim_decode=att.kv_lora_rank,
        )
    hd = model.head_dim
    kv_heads = max(att.kv_heads / tp, 1.0)
    proj = h * hd * (heads + 2 * kv_heads) + heads * hd * h
    if att.qkv_bias:
        proj += hd * (heads + 2 * kv_heads)
    return AttentionDims(heads, proj, 2 * kv_heads * hd * kv_bytes, hd, hd, hd, hd)


def kv_bytes_per_token(model: ModelSpec) -> float:
    """KV-cache bytes per token of context, all layers, unsplit (full-attention layers; see
    :func:`kv_bytes_for_context` for sliding and chunked layers, whose cache stops growing)."""
    return model.num_layers * attention_dims(model, 1).kv_bytes_per_token


def kv_tokens_held(model: ModelSpec, layer: int, context: float) -> float:
    """(M3a) Tokens of a ``context``-token sequence that ``layer`` keeps in its KV cache.

    Full attention keeps all of them; a sliding-window layer the last ``sliding_window``; a
    chunked-local layer at most one chunk (the engine frees a chunk's keys once the next chunk
    starts, as vLLM's and TensorRT-LLM's chunked-attention caches do)."""
    window = model.attention.window(layer)
    return context if window is None else min(context, float(window))


def kv_bytes_for_context(model: ModelSpec, context: float) -> float:
    """KV-cache bytes of one ``context``-token sequence, all layers, unsplit."""
    per_token = attention_dims(model, 1).kv_bytes_per_token
    return sum(kv_tokens_held(model, layer, context) for layer in range(model.num_layers)) * per_token


def attended_tokens(model: ModelSpec, layer: int, context: float) -> float:
    """(O3a) Keys one decode query of ``layer`` reads at a context of ``context`` tokens.

    Full: all of them. Sliding: ``min(context, window)``. Chunked: the query's own chunk, which
    holds ``context`` keys while the context is within the first chunk and on average
    ``(chunk + 1) / 2`` beyond it (a decode step lands anywhere in its chunk)."""
    kind = model.attention.layer_kind(layer)
    window = model.attention.window(layer)
    if window is None or context <= window:
        return context
    return float(window) if kind == "sliding" else (window + 1) / 2


def causal_pairs(model: ModelSpec, layer: int, length: int) -> float:
    """(O3b) (query, key) pairs of a causal prefill of ``length`` tokens in ``layer``.

    Full: ``L (L + 1) / 2``. Sliding window ``w``: each query sees ``min(i, w)`` keys, so
    ``w (w + 1) / 2 + (L - w) w`` beyond the window. Chunked ``k``: every whole chunk is a small
    causal block, ``q k (k + 1) / 2 + r (r + 1) / 2`` with ``L = q k + r``."""
    window = model.attention.window(layer)
    if window is None or length <= window:
        return length * (length + 1) / 2
    if model.attention.layer_kind(layer) == "sliding":
        return window * (window + 1) / 2 + (length - window) * window
    whole, rest = divmod(length, window)
    return whole * window * (window + 1) / 2 + rest * (rest + 1) / 2


def attention_flops_per_context_token(model: ModelSpec) -> float:
    """Decode attention FLOPs per new token per token of context, all layers (2 c H (d_qk + d_v))."""
    dims = attention_dims(model, 1)
    return model.num_layers * 2 * dims.heads * (dims.qk_dim_decode + dims.v_dim_decode)


def layer_weight_bytes(model: ModelSpec, layer: int, par: Parallelism, distinct_experts_max: int) -> float:
    """(M2) Weight bytes of one layer on the fullest GPU of its stage."""
    prec = model.precision
    h = model.hidden_size
    if not prec.mixed:  # one precision: the sum of parameters times its bytes, as always
        return _layer_params_on_gpu(model, layer, par, distinct_experts_max) * DTYPE_BYTES[prec.weights]
    att_b, mlp_b, exp_b = (DTYPE_BYTES[prec.of(c)] for c in ("attention", "dense_mlp", "experts"))
    total = (attention_dims(model, par.tp).proj_params + 2 * h) * att_b  # + the two RMSNorm vectors
    moe = model.moe
    if moe is not None and model.is_moe_layer(layer):
        total += h * moe.num_experts * att_b  # router, replicated, kept with the attention weights
        total += moe.num_shared_experts * ffn_params(h, moe.shared_ffn_size, moe.gated) / par.tp * mlp_b
        expert = ffn_params(h, moe.expert_ffn_size, moe.gated, moe.expert_bias) / par.tp_moe
        total += distinct_experts_max * expert * exp_b
    else:
        assert model.ffn_size is not None
        total += ffn_params(h, model.ffn_size, model.ffn_gated) / par.tp * mlp_b
    return total


def _layer_params_on_gpu(model: ModelSpec, layer: int, par: Parallelism, distinct_experts_max: int) -> float:
    h = model.hidden_size
    params = attention_dims(model, par.tp).proj_params + 2 * h  # + the two RMSNorm vectors
    moe = model.moe
    if moe is not None and model.is_moe_layer(layer):
        params += h * moe.num_experts  # router, replicated
        params += moe.num_shared_experts * ffn_params(h, moe.shared_ffn_size, moe.gated) / par.tp
        params += distinct_experts_max * ffn_params(h, moe.expert_ffn_size, moe.gated, moe.expert_bias) / par.tp_moe
    else:
        assert model.ffn_size is not None
        params += ffn_params(h, model.ffn_size, model.ffn_gated) / par.tp
    return params


def layer_kv_bytes(
    model: ModelSpec, par: Parallelism, seqs_resident: int, context_tokens: int, layer: int | None = None
) -> float:
    """(M3) KV cache of one layer on one GPU: resident sequences x tokens held x bytes per token.

    ``layer`` None is a full-attention layer (the largest any layer holds); a sliding or chunked
    layer holds :func:`kv_tokens_held`."""
    held = context_tokens if layer is None else kv_tokens_held(model, layer, context_tokens)
    return seqs_resident * held * attention_dims(model, par.tp).kv_bytes_per_token


def op_time_s(op: Op, hardware: HardwareProfile, precision: str) -> float:
    """(O1) Roofline: ``max(FLOPs / (peak x MFU), bytes / (HBM bandwidth x utilisation))``.

    The MFU is the op class's figure for the op's phase (``EfficiencySpec.mfu``). ``placer
    calibrate`` fits the efficiency factors through this same function.
    """
    eff = hardware.efficiency
    mfu = eff.mfu(op.kind, op.phase) * op.mfu_scale
    if op.kind == "gemm" and op.precision is not None:
        precision = op.precision
    peak = hardware.peak_flops_per_s(precision if op.kind == "gemm" else "bf16")
    compute = op.flops / (peak * mfu)
    memory = op.hbm_bytes / (hardware.hbm_bytes_per_s * eff.hbm_bandwidth_utilisation)
    return max(compute, memory)


@dataclass(frozen=True)
class LayerContext:
    """What a layer's cost depends on besides the layer itself."""

    model: ModelSpec
    hardware: HardwareProfile
    fabric: Fabric
    params: CostParameters
    par: Parallelism
    shape: PhaseShape
    tp_crosses_domain: bool
    stage_crosses_domain: bool


#: (O12) Kernels of one layer's forward, counted from the standard decoder layer (vLLM's
#: ``LlamaDecoderLayer``, ``Qwen3Attention``, ``DeepseekV2MLAAttention`` and its fused-MoE path):
#: attention block, GQA: RMSNorm (fused with the residual add), QKV GEMM, rotary + cache write,
#: attention, output GEMM;
KERNELS_ATTENTION_GQA = 5
#: + per-head q/k RMSNorm (Qwen3);
KERNELS_QK_NORM = 1
#: MLA: RMSNorm, fused q/kv down-projection, q and kv latent RMSNorms, q up-projection, rotary +
#: cache write, W_UK absorption, attention, W_UV absorption, output GEMM;
KERNELS_ATTENTION_MLA = 10
#: dense FFN: RMSNorm (+ residual), gate/up GEMM, activation, down GEMM;
KERNELS_DENSE_FFN = 4
#: MoE: RMSNorm (+ residual), router GEMM, top-k, token sort / align, two grouped GEMMs, the
#: activation between them, weighted un-permute / sum;
KERNELS_MOE = 8
#: shared experts: gate/up GEMM, activation, down GEMM;
KERNELS_SHARED_EXPERTS = 3
#: tensor parallelism: the all-reduces after attention and after the FFN.
KERNELS_TP_ALLREDUCE = 2


def kernel_launches(model: ModelSpec, layer: int, tp: int) -> int:
    """(O12) Kernels ``layer`` launches per forward on one GPU (the count the per-kernel fixed time
    ``launch_overhead_us`` multiplies)."""
    att = model.attention
    if att.kind == "mla":
        n = KERNELS_ATTENTION_MLA
    else:
        n = KERNELS_ATTENTION_GQA + (KERNELS_QK_NORM if att.qk_norm else 0)
    moe = model.moe
    if moe is not None and model.is_moe_layer(layer):
        n += KERNELS_MOE + (KERNELS_SHARED_EXPERTS if moe.num_shared_experts else 0)
    else:
        n += KERNELS_DENSE_FFN
    return n + (KERNELS_TP_ALLREDUCE if tp > 1 else 0)


def layer_fixed_s(ctx: LayerContext, layer: int) -> float:
    """(O12) Fixed time of one layer per forward: ``layer_overhead_us`` plus
    ``launch_overhead_us`` x :func:`kernel_launches` (both 0 unless an instance sets them)."""
    us = ctx.params.layer_overhead_us
    if ctx.params.launch_overhead_us:
        us += ctx.params.launch_overhead_us * kernel_launches(ctx.model, layer, ctx.par.tp)
    return us * 1e-6


def layer_phase_cost(ctx: LayerContext, layer: int, traffic: LayerTraffic | None) -> LayerPhaseCost:
    """(O2)-(O8) Ops and collectives of ``layer`` for one micro-batch, and its time (O10).

    Without two-batch overlap the layer's compute and communication add up, less
    ``comm_compute_overlap`` of the shorter. With it (O10), the micro-batch runs as two halves:
    every op and collective is costed at half the tokens (so weights are read once per half), and
    the halves' compute and all-to-all legs pair up in four slots; in each slot
    ``overlap_efficiency`` of the shorter piece is hidden. An SM-driven all-to-all
    (node-deduplicated, DeepEP normal mode) slows the compute it overlaps by
    ``1 / (1 - alltoall_sm_fraction)``.
    """
    if not ctx.params.two_batch_overlap:
        ops, colls = _layer_ops(ctx, layer, traffic)
        times = _op_times(ctx, ops)
        compute = sum(times) + layer_fixed_s(ctx, layer)
        comm = sum(c.time_s for c in colls)
        total = compute + comm - ctx.params.comm_compute_overlap * min(compute, comm)
        return LayerPhaseCost(ops, times, colls, compute, comm, total)
    half = replace(
        ctx.shape,
        seqs_per_rank=ctx.shape.seqs_per_rank / 2,
        tokens_per_rank=ctx.shape.tokens_per_rank / 2,
        tokens_per_stage=ctx.shape.tokens_per_stage / 2,
    )
    ops_half, colls_half = _layer_ops(replace(ctx, shape=half), layer, traffic)
    times_half = _op_times(ctx, ops_half)
    ops = tuple(replace(op, flops=2 * op.flops, hbm_bytes=2 * op.hbm_bytes) for op in ops_half)
    times = tuple(2 * t for t in times_half)
    colls = tuple(Collective(c.name, 2 * c.time_s) for c in colls_half)
    eff = ctx.hardware.efficiency
    slow = 1.0 / (1.0 - eff.alltoall_sm_fraction) if _sm_driven_alltoall(ctx) else 1.0
    # Half-batch pieces: attention side (everything before the dispatch), expert side, dispatch, combine.
    expert = sum(t for op, t in zip(ops_half, times_half, strict=True) if op.name == "routed_experts") * slow
    attention = sum(times_half) * slow - expert + layer_fixed_s(ctx, layer) / 2
    dispatch = sum(c.time_s for c in colls_half if c.name == "moe_dispatch")
    combine = sum(c.time_s for c in colls_half if c.name == "moe_combine")
    serial = sum(c.time_s for c in colls_half if c.name not in ("moe_dispatch", "moe_combine"))
    f = eff.overlap_efficiency

    def slot(compute_s: float, comm_s: float) -> float:
        return compute_s + comm_s - f * min(compute_s, comm_s)

    # (O10) Steady state of two half-batches X, Y on a compute and a communication stream:
    # Y.attention || X.dispatch, X.experts || Y.dispatch, Y.experts || X.combine,
    # X.attention (next layer) || Y.combine. Other collectives do not overlap.
    total = (
        slot(attention, dispatch)
        + slot(expert, dispatch)
        + slot(expert, combine)
        + slot(attention, combine)
        + 2 * serial
    )
    compute = 2 * (attention + expert)
    comm = sum(c.time_s for c in colls)
    return LayerPhaseCost(ops, times, colls, compute, comm, total)


def _sm_driven_alltoall(ctx: LayerContext) -> bool:
    """Whether the phase's all-to-all runs on SMs (DeepEP normal mode = node-deduplicated)."""
    if ctx.model.moe is None or ctx.par.ep <= 1:
        return False
    return ctx.params.node_dedup_prefill if ctx.shape.phase == "prefill" else ctx.params.node_dedup_decode


def _op_times(ctx: LayerContext, ops: tuple[Op, ...]) -> tuple[float, ...]:
    precision = compute_precision(ctx.model.precision.weights, ctx.hardware)
    return tuple(op_time_s(op, ctx.hardware, precision) for op in ops)


#: (O1a) Hopper's BF16 x MXFP4 (weight-only, W4A16) matmul reaches 49% of the BF16 dense peak in
#: OpenAI's Triton kernels (triton-lang/triton pull request #6833, 2025-05-15: "improves utilisation
#: from 28% to 37%", "with #6812 we hit 49% util"), the MoE kernels vLLM and TensorRT-LLM run for
#: gpt-oss on Hopper; GPUs without FP4 tensor cores (Ampere) are assumed the same. The compute
#: side of such a GEMM runs at ``min(MFU, 0.49)`` of the 16-bit peak.
MXFP4_WEIGHT_ONLY_UTILISATION = 0.49


def compute_precision(dtype: str, hardware: HardwareProfile) -> str:
    """(O1a) The peak-FLOPS figure a GEMM with weights stored in ``dtype`` runs at on ``hardware``.

    MXFP4 is an exception to :data:`COMPUTE_PRECISION`: on GPUs with FP4 tensor cores the engines
    pair MXFP4 weights with MXFP8 activations (W4A8: TensorRT-LLM's ``W4A8_MXFP4_MXFP8`` MoE
    mode, vLLM's FlashInfer MXFP4 x MXFP8 MoE kernels for SM100, vllm-project/vllm issue #35528),
    so the FP8 peak; elsewhere the weights are dequantised to 16 bits (W4A16)."""
    if dtype == "mxfp4":
        return "fp8" if "fp4" in hardware.dense_tflops else "bf16"
    return COMPUTE_PRECISION[dtype]


def weight_only_mfu_scale(dtype: str, hardware: HardwareProfile, phase: str) -> float:
    """(O1a) MFU multiplier of a GEMM with ``dtype`` weights: below 1 only for weight-only MXFP4
    (no FP4 tensor cores), whose compute side reaches :data:`MXFP4_WEIGHT_ONLY_UTILISATION`."""
    if dtype != "mxfp4" or "fp4" in hardware.dense_tflops:
        return 1.0
    mfu = hardware.efficiency.mfu("gemm", phase)
    return min(1.0, MXFP4_WEIGHT_ONLY_UTILISATION / mfu) if mfu > 0 else 1.0


def _own_precision(model: ModelSpec, dtype: str, hardware: HardwareProfile) -> str | None:
    """The peak-FLOPS figure of a component stored in ``dtype``, or None where it is the model's
    default (so models with one precision build exactly the ops they always did)."""
    return None if dtype == model.precision.weights else compute_precision(dtype, hardware)


def _layer_ops(
    ctx: LayerContext, layer: int, traffic: LayerTraffic | None
) -> tuple[tuple[Op, ...], tuple[Collective, ...]]:
    """The ops and collectives of ``layer`` for the context's shape."""
    model, par, shape, fabric = ctx.model, ctx.par, ctx.shape, ctx.fabric
    phase = shape.phase
    h = model.hidden_size
    a_bytes = DTYPE_BYTES[model.precision.activations]
    att_dtype, mlp_dtype = model.precision.of("attention"), model.precision.of("dense_mlp")
    att_b, mlp_b = DTYPE_BYTES[att_dtype], DTYPE_BYTES[mlp_dtype]
    att_p, mlp_p = _own_precision(model, att_dtype, ctx.hardware), _own_precision(model, mlp_dtype, ctx.hardware)
    n = shape.tokens_per_rank
    reads = shape.forwards_per_micro_batch
    dims = attention_dims(model, par.tp)
    ops: list[Op] = []
    colls: list[Collective] = []
    algorithm = ctx.params.allreduce_algorithm

    # (O2) attention projections
    ops.append(
        Op(
            "attn_proj",
            2 * n * dims.proj_params,
            reads * dims.proj_params * att_b + 4 * n * h * a_bytes,
            "gemm",
            phase,
            att_p,
        )
    )
    # (O3) attention core
    if shape.phase == "prefill":
        length = shape.context_tokens
        width = dims.qk_dim_prefill + dims.v_dim_prefill
        if model.attention.window(layer) is None:  # written as before, so full-attention figures stay bit-identical
            flops = shape.seqs_per_rank * length * (length + 1) * dims.heads * width
        else:
            flops = shape.seqs_per_rank * 2 * causal_pairs(model, layer, length) * dims.heads * width
        moved = n * dims.kv_bytes_per_token + 2 * n * dims.heads * (dims.qk_dim_prefill + dims.v_dim_prefill) * a_bytes
    else:
        ctx_len = attended_tokens(model, layer, shape.context_tokens)
        flops = 2 * n * ctx_len * dims.heads * (dims.qk_dim_decode + dims.v_dim_decode)
        # Each sequence's cache is read once per step, however many tokens (drafts) it verifies.
        kv_read = shape.seqs_per_rank * ctx_len * dims.kv_bytes_per_token
        moved = kv_read + 2 * n * dims.heads * (dims.qk_dim_decode + dims.v_dim_decode) * a_bytes
    ops.append(Op("attn_core", flops, moved, "attention", phase))
    colls.append(
        Collective(
            "attn_allreduce", allreduce_time_s(n * h * a_bytes, par.tp, fabric, ctx.tp_crosses_domain, algorithm)
        )
    )

    moe = model.moe
    if moe is None or not model.is_moe_layer(layer):
        assert model.ffn_size is not None
        params = ffn_params(h, model.ffn_size, model.ffn_gated) / par.tp
        ops.append(
            Op(
                "dense_ffn",
                2 * n * params,
                reads * params * mlp_b + n * (2 * h + 2 * model.ffn_size / par.tp) * a_bytes,
                "gemm",
                phase,
                mlp_p,
            )
        )
        colls.append(
            Collective(
                "ffn_allreduce", allreduce_time_s(n * h * a_bytes, par.tp, fabric, ctx.tp_crosses_domain, algorithm)
            )
        )
    else:
        assert traffic is not None
        ops.append(Op("router", 2 * n * h * moe.num_experts, reads * h * moe.num_experts * att_b, "gemm", phase, att_p))
        if moe.num_shared_experts:
            params = moe.num_shared_experts * ffn_params(h, moe.shared_ffn_size, moe.gated) / par.tp
            ops.append(
                Op("shared_experts", 2 * n * params, reads * params * mlp_b + 4 * n * h * a_bytes, "gemm", phase, mlp_p)
            )
        ops.append(_routed_expert_op(ctx, traffic))
        colls += _moe_collectives(ctx, traffic)
    ops.append(Op("elementwise", 0.0, n * elementwise_bytes_per_token(ctx, layer, traffic), "gemm", phase))
    return tuple(ops), tuple(colls)


#: Hidden-size activation passes per layer outside the GEMMs, read + write counted separately:
#: two RMSNorms (read h, write h: 4) and two residual adds (read 2h, write h: 6).
HIDDEN_PASSES_PER_LAYER = 10
#: The 8-bit quantisation of the attention and FFN inputs (read h, write half as many bytes: ~3
#: passes), only where the layer's GEMMs take 8-bit or narrower activations (W8A8, FP4 x FP8).
QUANTISATION_PASSES_PER_LAYER = 3
#: Compute precisions whose GEMMs quantise their activations first.
QUANTISED_ACTIVATION_PRECISIONS = frozenset({"fp8", "int8", "fp4"})


def quantisation_passes(ctx: LayerContext) -> int:
    """(O11) Activation-quantisation passes per layer: charged when the model's default weight
    precision runs its GEMMs in 8 bits or fewer on this GPU (a 16-bit deployment quantises nothing;
    FP4 weights on a GPU without FP4 units run weight-only at the 16-bit peak and quantise nothing)."""
    precision = compute_precision(ctx.model.precision.weights, ctx.hardware)
    if precision not in QUANTISED_ACTIVATION_PRECISIONS:
        return 0
    if precision == "fp4" and "fp4" not in ctx.hardware.dense_tflops:
        return 0
    return QUANTISATION_PASSES_PER_LAYER


def elementwise_bytes_per_token(ctx: LayerContext, layer: int, traffic: LayerTraffic | None) -> float:
    """(O11) HBM bytes per token of one layer's memory-bound kernels that are not GEMMs.

    Norms and residual adds (``HIDDEN_PASSES_PER_LAYER`` passes over the hidden state) and the
    activation quantisation of 8-bit GEMMs (:func:`quantisation_passes`, none for 16-bit weights);
    rotary embedding and the head-wise expansion of keys and values (write and read
    back ``H_r * (d_qk + d_v)``); the gate activation of the FFNs (read ``2x``, write ``x`` per
    token and FFN); and, for routed experts, the permutation into expert order and the weighted
    un-permutation (``2 h`` activation elements per (token, expert) pair on this GPU: an 8-bit copy
    read and written, and the expert output read back). Small per token, but for
    16,384-token prefill chunks these are gigabytes per layer.
    """
    model, par = ctx.model, ctx.par
    h = model.hidden_size
    a_bytes = DTYPE_BYTES[model.precision.activations]
    dims = attention_dims(model, par.tp)
    qkv = dims.qk_dim_prefill + dims.v_dim_prefill if ctx.shape.phase == "prefill" else 0
    per_token = (HIDDEN_PASSES_PER_LAYER + quantisation_passes(ctx)) * h + 2 * dims.heads * qkv
    moe = model.moe
    if moe is None or not model.is_moe_layer(layer):
        assert model.ffn_size is not None
        per_token += 3 * model.ffn_size / par.tp
    else:
        per_token += 3 * moe.num_shared_experts * moe.shared_ffn_size / par.tp
        if traffic is not None:
            # pairs on this GPU per token of its DP rank: stage pairs / rank tokens
            share = ctx.shape.tokens_per_stage * max(traffic.gpu_pairs_per_token) / max(ctx.shape.tokens_per_rank, 1)
            per_token += share * (2 * h + 3 * moe.expert_ffn_size / par.tp_moe)
    return per_token * a_bytes


def _routed_expert_op(ctx: LayerContext, traffic: LayerTraffic) -> Op:
    """(O5) Routed experts on the busiest GPU: its token-expert pairs and the experts they touch."""
    model, par, shape = ctx.model, ctx.par, ctx.shape
    moe = model.moe
    assert moe is not None
    h = model.hidden_size
    a_bytes = DTYPE_BYTES[model.precision.activations]
    exp_dtype = model.precision.of("experts")
    w_bytes = DTYPE_BYTES[exp_dtype]
    expert_params = ffn_params(h, moe.expert_ffn_size, moe.gated, moe.expert_bias) / par.tp_moe
    pairs = shape.tokens_per_stage * np.asarray(traffic.gpu_pairs_per_token)  # per GPU
    distinct = np.asarray(traffic.gpu_distinct_experts, dtype=float)
    per_expert = np.divide(pairs, np.maximum(distinct, 1.0) * shape.tokens_per_stage)
    touched = distinct * (1.0 - np.power(np.clip(1.0 - per_expert, 0.0, 1.0), shape.tokens_per_stage))
    flops = 2 * pairs * expert_params
    moved = (
        shape.forwards_per_micro_batch * touched * expert_params * w_bytes
        + pairs * (2 * h + 2 * moe.expert_ffn_size / par.tp_moe) * a_bytes
    )
    precision = compute_precision(exp_dtype, ctx.hardware)
    phase = shape.phase
    scale = weight_only_mfu_scale(exp_dtype, ctx.hardware, phase)
    # GPUs with the same work take the same time: time each distinct (FLOPs, bytes) pair once
    by_work: dict[tuple[float, float], float] = {}
    times = []
    for f, b in zip(flops.tolist(), moved.tolist(), strict=True):
        t = by_work.get((f, b))
        if t is None:
            t = by_work[(f, b)] = op_time_s(Op("x", f, b, "gemm", phase, mfu_scale=scale), ctx.hardware, precision)
        times.append(t)
    busiest = int(np.argmax(times))
    own = _own_precision(model, exp_dtype, ctx.hardware)
    return Op("routed_experts", float(flops[busiest]), float(moved[busiest]), "gemm", phase, own, scale)


def _moe_collectives(ctx: LayerContext, traffic: LayerTraffic) -> list[Collective]:
    """(O6) MoE communication: all-reduce (pure TP), all-gather/reduce-scatter (EP 1 with DP
    attention) or all-to-all dispatch + combine (EP > 1)."""
    model, par, shape, fabric, params = ctx.model, ctx.par, ctx.shape, ctx.fabric, ctx.params
    h = model.hidden_size
    a_bytes = DTYPE_BYTES[model.precision.activations]
    n = shape.tokens_per_rank
    algorithm = params.allreduce_algorithm
    moe = model.moe
    assert moe is not None
    if par.ep == 1 and par.dp_attn == 1:
        return [
            Collective(
                "moe_allreduce", allreduce_time_s(n * h * a_bytes, par.tp, fabric, ctx.tp_crosses_domain, algorithm)
            )
        ]
    colls: list[Collective] = []
    if par.ep == 1:
        stage_bytes = shape.tokens_per_stage * h * a_bytes
        width = par.stage_width
        t = allgather_time_s(stage_bytes, width, fabric, ctx.stage_crosses_domain)
        colls += [Collective("moe_allgather", t), Collective("moe_reduce_scatter", t)]
    else:
        dedup = params.node_dedup_prefill if shape.phase == "prefill" else params.node_dedup_decode
        tokens_per_gpu = shape.tokens_per_stage / par.stage_width
        imbalance = max(1.0, traffic.imbalance)
        if dedup:
            up, out = traffic.dedup_scaleup, traffic.max_source_scaleout_dedup
        else:
            up, out = traffic.plain_scaleup, traffic.max_source_scaleout_plain
        for leg, dtype in (("dispatch", params.dispatch_dtype), ("combine", params.combine_dtype)):
            elem = DTYPE_BYTES[dtype or model.precision.activations]
            per_copy = tokens_per_gpu * h * elem * imbalance
            colls.append(Collective(f"moe_{leg}", alltoall_time_s(up * per_copy, out * per_copy, fabric)))
    if moe.num_shared_experts and par.tp > 1:
        colls.append(
            Collective(
                "shared_allreduce", allreduce_time_s(n * h * a_bytes, par.tp, fabric, ctx.tp_crosses_domain, algorithm)
            )
        )
    return colls
