"""Model architecture schema (``models/*.json``).

The fields are the architecture facts the cost model needs; parameter counts are derived from
them (`placer.costmodel.params`), never taken on trust. A declared count may be recorded so that
placer can say loudly when the architecture does not hold it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator

from placer.schema.base import Dtype, StrictModel
from placer.schema.limits import AtMost

MODEL_SCHEMA_VERSION = "placer.model/1"

#: How one layer's queries see the context (``AttentionSpec.layer_types``).
LayerAttention = Literal["full", "sliding", "chunked"]


class AttentionSpec(StrictModel):
    """Self-attention block.

    ``mha``: ``num_kv_heads == num_heads``. ``gqa``: ``num_heads`` a multiple of
    ``num_kv_heads``. ``mla`` (DeepSeek-V2/V3): queries optionally compressed to
    ``q_lora_rank``; keys and values compressed to a cached latent of ``kv_lora_rank`` plus a
    shared rotary key of ``qk_rope_head_dim``.
    """

    kind: Literal["mha", "gqa", "mla"]
    num_heads: Annotated[PositiveInt, AtMost("MAX_HEADS")]
    num_kv_heads: Annotated[PositiveInt, AtMost("MAX_HEADS")] | None = Field(None, description="defaults to num_heads")
    head_dim: Annotated[PositiveInt, AtMost("MAX_HEAD_DIM")] | None = Field(
        None, description="MHA/GQA head size; defaults to hidden/heads"
    )
    qkv_bias: bool = False
    qk_norm: bool = Field(False, description="per-head RMSNorm on q and k (Qwen3)")
    q_lora_rank: Annotated[PositiveInt, AtMost("MAX_HEAD_DIM")] | None = Field(
        None, description="MLA: query compression rank; null = none"
    )
    kv_lora_rank: Annotated[PositiveInt, AtMost("MAX_HEAD_DIM")] | None = None
    qk_nope_head_dim: Annotated[PositiveInt, AtMost("MAX_HEAD_DIM")] | None = None
    qk_rope_head_dim: Annotated[PositiveInt, AtMost("MAX_HEAD_DIM")] | None = None
    v_head_dim: Annotated[PositiveInt, AtMost("MAX_HEAD_DIM")] | None = None
    layer_types: list[LayerAttention] | None = Field(
        None,
        description="per layer: full, sliding (last sliding_window tokens) or chunked (the token's "
        "attention_chunk_size block); null = every layer full",
    )
    sliding_window: Annotated[PositiveInt, AtMost("MAX_TOKENS")] | None = None
    attention_chunk_size: Annotated[PositiveInt, AtMost("MAX_TOKENS")] | None = None
    sinks: bool = Field(False, description="one learned sink logit per head (gpt-oss): no KV, negligible work")

    @model_validator(mode="after")
    def _check_heads(self) -> AttentionSpec:
        kv = self.num_kv_heads if self.num_kv_heads is not None else self.num_heads
        if self.kind == "mha" and kv != self.num_heads:
            raise ValueError(
                f"num_kv_heads: MHA has one KV head per query head ({self.num_heads}), got {kv}; use kind 'gqa'"
            )
        if self.kind == "gqa" and self.num_heads % kv != 0:
            raise ValueError(f"num_heads: {self.num_heads} query heads are not divisible into {kv} KV-head groups")
        if self.kind == "mla":
            missing = [
                name
                for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{missing[0]}: required for MLA attention")
        kinds = set(self.layer_types or ())
        if "sliding" in kinds and self.sliding_window is None:
            raise ValueError("sliding_window: required when layer_types has sliding layers")
        if "chunked" in kinds and self.attention_chunk_size is None:
            raise ValueError("attention_chunk_size: required when layer_types has chunked layers")
        return self

    def layer_kind(self, layer: int) -> str:
        """``full``, ``sliding`` or ``chunked`` for transformer layer ``layer``."""
        return self.layer_types[layer] if self.layer_types is not None else "full"

    def window(self, layer: int) -> int | None:
        """Tokens a query of ``layer`` may see at most (``None``: the whole context).

        A chunked layer sees at most one chunk; where in the chunk a token falls is handled by
        :func:`attended_tokens`."""
        kind = self.layer_kind(layer)
        if kind == "sliding":
            return self.sliding_window
        if kind == "chunked":
            return self.attention_chunk_size
        return None

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads


class MoESpec(StrictModel):
    """Routed-expert block, and which layers carry it.

    Layer ``i`` is an MoE layer when ``i >= first_dense_layers`` and
    ``i % layer_interval == layer_offset``.
    """

    num_experts: Annotated[PositiveInt, AtMost("MAX_EXPERTS")]
    top_k: Annotated[PositiveInt, AtMost("MAX_TOP_K")]
    expert_ffn_size: Annotated[PositiveInt, AtMost("MAX_FFN_SIZE")]
    gated: bool = Field(True, description="gated FFN (SwiGLU: 3 matrices) or plain (2 matrices)")
    expert_bias: bool = False
    num_shared_experts: Annotated[int, AtMost("MAX_SHARED_EXPERTS")] = Field(0, ge=0)
    shared_expert_ffn_size: Annotated[PositiveInt, AtMost("MAX_FFN_SIZE")] | None = Field(
        None, description="defaults to expert_ffn_size"
    )
    first_dense_layers: Annotated[int, AtMost("MAX_LAYERS")] = Field(0, ge=0)
    layer_interval: Annotated[PositiveInt, AtMost("MAX_LAYERS")] = 1
    layer_offset: int = Field(0, ge=0)
    num_groups: Annotated[PositiveInt, AtMost("MAX_EXPERTS")] = Field(
        1, description="expert groups for group-limited routing"
    )
    groups_per_token: Annotated[PositiveInt, AtMost("MAX_EXPERTS")] | None = Field(
        None, description="groups a token may use; null = all"
    )
    router_bias: bool = Field(False, description="per-expert score correction bias (DeepSeek-V3)")

    @model_validator(mode="after")
    def _check_routing(self) -> MoESpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k: {self.top_k} is larger than the expert count {self.num_experts}")
        if self.num_experts % self.num_groups != 0:
            raise ValueError(f"num_groups: {self.num_experts} experts do not split into {self.num_groups} equal groups")
        if self.groups_per_token is not None:
            if self.groups_per_token > self.num_groups:
                raise ValueError(
                    f"groups_per_token: {self.groups_per_token} is larger than num_groups {self.num_groups}"
                )
            reachable = self.groups_per_token * (self.num_experts // self.num_groups)
            if self.top_k > reachable:
                raise ValueError(f"top_k: {self.top_k} experts cannot come from {self.groups_per_token} groups")
        if self.layer_offset >= self.layer_interval:
            raise ValueError(f"layer_offset: must be below layer_interval {self.layer_interval}")
        return self

    @property
    def shared_ffn_size(self) -> int:
        return self.shared_expert_ffn_size or self.expert_ffn_size

    @property
    def experts_per_group(self) -> int:
        return self.num_experts // self.num_groups


#: Weight components that may carry their own storage precision (``PrecisionSpec.of``).
WEIGHT_COMPONENTS = ("attention", "dense_mlp", "experts", "embeddings")


class PrecisionSpec(StrictModel):
    """Storage precision of weights, KV cache and activations.

    ``weights`` is the default of every weight component; ``attention`` (projections and the
    router), ``dense_mlp`` (dense FFNs and shared experts), ``experts`` (routed experts) and
    ``embeddings`` (input table and LM head) override it where a checkpoint mixes formats
    (gpt-oss: MXFP4 experts, bf16 elsewhere). Unset components follow ``weights``, so a model
    file that names one precision is costed as before.
    """

    weights: Dtype = "bf16"
    kv_cache: Dtype = "bf16"
    activations: Dtype = "bf16"
    attention: Dtype | None = Field(None, description="attention projections and router; default weights")
    dense_mlp: Dtype | None = Field(None, description="dense FFNs and shared experts; default weights")
    experts: Dtype | None = Field(None, description="routed experts; default weights")
    embeddings: Dtype | None = Field(None, description="embedding table and LM head; default weights")

    def of(self, component: str) -> str:
        """The storage precision of one weight component (``WEIGHT_COMPONENTS``)."""
        if component not in WEIGHT_COMPONENTS:
            raise KeyError(component)
        value = getattr(self, component)
        return value if value is not None else self.weights

    @property
    def mixed(self) -> bool:
        return any(getattr(self, c) not in (None, self.weights) for c in WEIGHT_COMPONENTS)


class DeclaredParams(StrictModel):
    """A parameter count someone published or claimed, kept to compare with the architecture."""

    total_params: Annotated[float, AtMost("MAX_PARAMS")] | None = Field(None, gt=0)
    active_params: Annotated[float, AtMost("MAX_PARAMS")] | None = Field(None, gt=0)
    source: str = ""


class ModelSpec(StrictModel):
    """A decoder-only transformer, dense or MoE."""

    schema_version: Literal["placer.model/1"] = MODEL_SCHEMA_VERSION
    name: str = Field(min_length=1)
    description: str = ""
    num_layers: Annotated[PositiveInt, AtMost("MAX_LAYERS")]
    hidden_size: Annotated[PositiveInt, AtMost("MAX_HIDDEN_SIZE")]
    attention: AttentionSpec
    ffn_size: Annotated[PositiveInt, AtMost("MAX_FFN_SIZE")] | None = Field(
        None, description="dense FFN intermediate size (dense layers)"
    )
    ffn_gated: bool = True
    moe: MoESpec | None = None
    vocab_size: Annotated[PositiveInt, AtMost("MAX_VOCAB")]
    tie_embeddings: bool = False
    precision: PrecisionSpec = PrecisionSpec()
    declared: DeclaredParams | None = None
    assumptions: list[str] = Field(default_factory=list, description="what was assumed where the source is silent")
    source: str = ""

    @model_validator(mode="after")
    def _check_layers(self) -> ModelSpec:
        att = self.attention
        if att.kind != "mla" and att.head_dim is None and self.hidden_size % att.num_heads != 0:
            raise ValueError(
                f"attention.head_dim: not given and hidden_size {self.hidden_size} is not divisible "
                f"by {att.num_heads} heads"
            )
        if self.moe is not None and self.moe.first_dense_layers > self.num_layers:
            raise ValueError("moe.first_dense_layers: more dense layers than num_layers")
        has_dense = any(not self.is_moe_layer(i) for i in range(self.num_layers))
        if has_dense and self.ffn_size is None:
            raise ValueError("ffn_size: required because the model has dense (non-MoE) layers")
        if att.layer_types is not None and len(att.layer_types) != self.num_layers:
            raise ValueError(f"attention.layer_types: {len(att.layer_types)} entries for {self.num_layers} layers")
        return self

    @property
    def head_dim(self) -> int:
        if self.attention.head_dim is not None:
            return self.attention.head_dim
        return self.hidden_size // self.attention.num_heads

    def is_moe_layer(self, layer: int) -> bool:
        """Whether transformer layer ``layer`` (0-based) carries routed experts."""
        moe = self.moe
        if moe is None:
            return False
        return layer >= moe.first_dense_layers and layer % moe.layer_interval == moe.layer_offset

    @property
    def moe_layers(self) -> list[int]:
        return [i for i in range(self.num_layers) if self.is_moe_layer(i)]
