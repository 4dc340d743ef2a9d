"""Parameter counts derived from the architecture.

Convention: *total* counts every stored weight (embedding and LM head once each, or once when
tied). *Active* counts what one token uses: attention, norms, router, ``top_k`` routed experts,
shared experts, dense FFNs, and the embedding table and LM head in full (the convention behind
Mixtral's 12.9B and Qwen3-30B-A3B's 3.3B). ``active_excluding_embedding`` drops the input table,
which a token only indexes.
"""

from __future__ import annotations

from dataclasses import dataclass

from placer.schema import ModelSpec


@dataclass(frozen=True)
class LayerParams:
    """Weights of one transformer layer, by block (parameter counts, not bytes)."""

    attention: int
    norms: int
    dense_ffn: int
    router: int
    routed_expert: int  # one routed expert
    num_routed_experts: int
    shared_experts: int  # all shared experts together

    @property
    def routed_total(self) -> int:
        return self.routed_expert * self.num_routed_experts

    @property
    def total(self) -> int:
        return self.attention + self.norms + self.dense_ffn + self.router + self.routed_total + self.shared_experts

    def active(self, top_k: int) -> int:
        routed = self.routed_expert * min(top_k, self.num_routed_experts)
        return self.attention + self.norms + self.dense_ffn + self.router + routed + self.shared_experts


@dataclass(frozen=True)
class ParamCounts:
    """Totals for a whole model."""

    layers: tuple[LayerParams, ...]
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    final_norm: int
    top_k: int

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers) + self.embedding + self.lm_head + self.final_norm

    @property
    def active(self) -> int:
        body = sum(layer.active(self.top_k) for layer in self.layers)
        return body + self.embedding + self.lm_head + self.final_norm

    @property
    def active_excluding_embedding(self) -> int:
        # A tied table still serves as the LM head, a real matmul: keep it once.
        return self.active if self.lm_head == 0 else self.active - self.embedding


def attention_params(model: ModelSpec) -> int:
    """Projection weights (and biases / norms) of one attention block."""
    att = model.attention
    h = model.hidden_size
    if att.kind == "mla":
        assert att.kv_lora_rank and att.qk_nope_head_dim and att.qk_rope_head_dim and att.v_head_dim
        qk_head = att.qk_nope_head_dim + att.qk_rope_head_dim
        if att.q_lora_rank:
            q = h * att.q_lora_rank + att.q_lora_rank + att.q_lora_rank * att.num_heads * qk_head
        else:
            q = h * att.num_heads * qk_head
        kv = h * (att.kv_lora_rank + att.qk_rope_head_dim) + att.kv_lora_rank
        kv += att.kv_lora_rank * att.num_heads * (att.qk_nope_head_dim + att.v_head_dim)
        out = att.num_heads * att.v_head_dim * h
        return q + kv + out
    hd = model.head_dim
    q_width = att.num_heads * hd
    kv_width = att.kv_heads * hd
    params = h * q_width + 2 * h * kv_width + q_width * h
    if att.qkv_bias:
        params += q_width + 2 * kv_width
    if att.qk_norm:
        params += 2 * hd
    return params


def ffn_params(hidden: int, intermediate: int, gated: bool, bias: bool = False) -> int:
    """One feed-forward network: 3 matrices when gated (SwiGLU), else 2."""
    mats = 3 if gated else 2
    params = mats * hidden * intermediate
    if bias:
        params += (mats - 1) * intermediate + hidden
    return params


def layer_params(model: ModelSpec, layer: int) -> LayerParams:
    """Weights of transformer layer ``layer``."""
    h = model.hidden_size
    moe = model.moe
    attention = attention_params(model)
    norms = 2 * h
    if moe is not None and model.is_moe_layer(layer):
        router = h * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
        expert = ffn_params(h, moe.expert_ffn_size, moe.gated, moe.expert_bias)
        shared = moe.num_shared_experts * ffn_params(h, moe.shared_ffn_size, moe.gated)
        return LayerParams(attention, norms, 0, router, expert, moe.num_experts, shared)
    assert model.ffn_size is not None  # the schema requires it when a dense layer exists
    dense = ffn_params(h, model.ffn_size, model.ffn_gated)
    return LayerParams(attention, norms, dense, 0, 0, 0, 0)


def count_params(model: ModelSpec) -> ParamCounts:
    """Total and active parameter counts of ``model`` from its architecture."""
    layers = tuple(layer_params(model, i) for i in range(model.num_layers))
    embedding = model.vocab_size * model.hidden_size
    lm_head = 0 if model.tie_embeddings else embedding
    top_k = model.moe.top_k if model.moe else 0
    return ParamCounts(layers, embedding, lm_head, model.hidden_size, top_k)


def weight_bytes(model: ModelSpec, counts: ParamCounts | None = None) -> float:
    """Bytes of every stored weight, each component at its own precision (``PrecisionSpec.of``):
    attention, norms and router at ``attention``; dense FFNs and shared experts at ``dense_mlp``;
    routed experts at ``experts``; embedding table and LM head at ``embeddings``. With one
    precision this is ``total x bytes(weights)``."""
    from placer.schema import DTYPE_BYTES

    counts = counts or count_params(model)
    components = ("attention", "dense_mlp", "experts", "embeddings")
    att, mlp, exp, emb = (DTYPE_BYTES[model.precision.of(c)] for c in components)
    if not model.precision.mixed:
        return counts.total * DTYPE_BYTES[model.precision.weights]
    body = sum(
        (layer.attention + layer.norms + layer.router) * att
        + (layer.dense_ffn + layer.shared_experts) * mlp
        + layer.routed_total * exp
        for layer in counts.layers
    )
    return body + (counts.embedding + counts.lm_head) * emb + counts.final_norm * att


#: Relative disagreement between a declared and a computed count that triggers a warning.
DECLARED_TOLERANCE = 0.05


def declared_param_warnings(model: ModelSpec, counts: ParamCounts | None = None) -> list[str]:
    """Warnings where the architecture does not hold the parameter count the model declares.

    placer always sizes memory and compute from the architecture; the warning says so.
    """
    declared = model.declared
    if declared is None:
        return []
    counts = counts or count_params(model)
    warnings = []
    for label, claimed, computed in (
        ("total", declared.total_params, counts.total),
        ("active", declared.active_params, counts.active),
    ):
        if claimed is None:
            continue
        ratio = computed / claimed
        if abs(ratio - 1) > DECLARED_TOLERANCE:
            warnings.append(
                f"{model.name}: declared {label} parameters {claimed / 1e9:.3g}B, but the architecture holds "
                f"{computed / 1e9:.3g}B ({ratio:.1%} of the declared figure). placer uses the architecture's "
                f"{computed / 1e9:.3g}B for memory and compute."
            )
    return warnings
