"""Reading a Hugging Face ``config.json`` as a placer :class:`~placer.schema.ModelSpec`.

Each supported ``model_type`` has one reader that maps the family's keys onto the schema's
architecture facts. What a config says that the schema does not model (sliding windows, rotary
scaling, attention sinks, biases on norms and output projections, multi-token-prediction heads,
vision towers) is written into ``assumptions`` rather than dropped silently.

A key that is missing or malformed becomes an :class:`~placer.errors.InputError` that names it
(``ffn_config.moe_top_k: required by the dbrx config reader``), never a ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from placer.errors import InputError
from placer.schema import ModelSpec
from placer.validation import validate

_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}

#: ``architectures`` class names, for a config that lacks ``model_type``.
_ARCHITECTURES = {
    "MixtralForCausalLM": "mixtral",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "OlmoeForCausalLM": "olmoe",
    "GptOssForCausalLM": "gpt_oss",
    "DbrxForCausalLM": "dbrx",
    "Llama4ForConditionalGeneration": "llama4",
    "Llama4ForCausalLM": "llama4_text",
    "PhiMoEForCausalLM": "phimoe",
    "PhimoeForCausalLM": "phimoe",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}


class _Config:
    """Typed access to one (possibly nested) config dict; errors name the HF key."""

    def __init__(self, data: dict[str, Any], model_type: str, source: str, prefix: str = "") -> None:
        self.data = data
        self.model_type = model_type
        self.source = source or None
        self.prefix = prefix

    def _error(self, key: str, reason: str) -> InputError:
        return InputError.single(f"{self.prefix}{key}", reason, self.source)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def nested(self, key: str, required: bool = True) -> _Config:
        value = self.data.get(key)
        if value is None and not required:
            value = {}
        if not isinstance(value, dict):
            if value is None:
                raise self._error(key, f"required by the {self.model_type} config reader")
            raise self._error(key, f"must be an object, got {value!r}")
        return _Config(value, self.model_type, self.source or "", f"{self.prefix}{key}.")

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        """An integer ``>= minimum``; ``default`` when absent or null (required when no default)."""
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise self._error(key, f"required by the {self.model_type} config reader")
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(key, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self._error(key, f"must be >= {minimum}, got {value}")
        return value

    def opt_integer(self, key: str, minimum: int = 1) -> int | None:
        """An integer or ``None`` when absent or null."""
        return self.integer(key, minimum=minimum) if self.has(key) else None

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._error(key, f"must be true or false, got {value!r}")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self._error(key, f"must be a list of layer indices, got {value!r}")
        return list(value)


# --------------------------------------------------------------------------------------------
# Shared pieces


def _attention(cfg: _Config, hidden: int, *, qkv_bias: bool = False, qk_norm: bool = False) -> dict[str, Any]:
    """MHA/GQA block from the common Llama-style keys."""
    heads = cfg.integer("num_attention_heads")
    kv_heads = cfg.integer("num_key_value_heads", default=heads)
    if kv_heads > heads:
        raise cfg._error("num_key_value_heads", f"{kv_heads} KV heads exceed the {heads} query heads")
    head_dim = cfg.opt_integer("head_dim")
    if head_dim is None and hidden % heads != 0:
        raise cfg._error("head_dim", f"required: hidden size {hidden} is not divisible by {heads} heads")
    return {
        "kind": "mha" if kv_heads == heads else "gqa",
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim if head_dim is not None else hidden // heads,
        "qkv_bias": qkv_bias,
        "qk_norm": qk_norm,
    }


def _precision(cfg: _Config, notes: list[str], *outer: _Config) -> dict[str, str]:
    """Weights from ``torch_dtype``/``dtype`` (fp8 when quantized so); KV cache and activations bf16
    unless the model is fp16."""
    raw = None
    for c in (cfg, *outer):
        raw = c.data.get("torch_dtype") or c.data.get("dtype")
        if raw is not None:
            break
    if raw is None:
        weights = "bf16"
        notes.append("torch_dtype not given: bf16 weights assumed")
    elif isinstance(raw, str) and raw in _DTYPES:
        weights = _DTYPES[raw]
    else:
        raise cfg._error("torch_dtype", f"unsupported dtype {raw!r}; expected bfloat16, float16 or float32")
    if weights == "fp32":
        notes.append("checkpoint is float32: weights counted at fp32 (serving usually casts to bf16)")
    runtime = "fp16" if weights == "fp16" else "bf16"
    precision = {"weights": weights, "kv_cache": runtime, "activations": runtime}
    quant = next((c.data.get("quantization_config") for c in (cfg, *outer) if c.data.get("quantization_config")), None)
    if isinstance(quant, dict) and quant.get("quant_method") is not None:
        precision.update(_quantized(quant, weights, notes))
    return precision


#: Module-name fragments of ``modules_to_not_convert`` / ``ignore`` lists, by weight component.
_COMPONENT_MODULES = {
    "attention": ("self_attn", ".attn", "router", "mlp.gate"),
    "embeddings": ("embed_tokens", "lm_head"),
}


def _kept(quant: dict[str, Any], component: str) -> bool:
    """Whether a quantization config leaves ``component`` in the checkpoint's own dtype (a listed
    module names it; ``mlp.gate`` is the router only when nothing follows it, not ``gate_proj``)."""
    skipped = [str(m) for key in ("modules_to_not_convert", "ignore", "exclude_modules") for m in quant.get(key) or []]
    for module in skipped:
        for frag in _COMPONENT_MODULES.get(component, ()):
            at = module.find(frag)
            if at >= 0 and (frag != "mlp.gate" or module.endswith(frag)):
                return True
    return False


def _quantized(quant: dict[str, Any], base: str, notes: list[str]) -> dict[str, str]:
    """Per-component precisions from ``quantization_config`` (``docs/cost-model.md``, per-component precision).

    ``mxfp4`` (gpt-oss): the routed experts in MXFP4, the modules the config lists in
    ``modules_to_not_convert`` (attention, router, embeddings, LM head) in the base dtype. ``fp8``:
    every linear layer in FP8 (block scales of ``weight_block_size`` are 1/16,384 of the bytes and
    not counted, so a DeepSeek-V3 config reads exactly as the shipped model file); embeddings stay
    in the base dtype when listed as skipped. ``modelopt`` with ``quant_algo`` NVFP4 or FP8: NVIDIA
    Model Optimizer checkpoints, every linear layer in that format, embeddings and LM head kept.
    ``awq``/``gptq`` (4 bits): INT4 weight-only linears, embeddings kept. Any other method is
    noted and leaves the weights as they were."""
    method = str(quant.get("quant_method")).lower()
    kept = {c: base for c in ("attention", "embeddings") if _kept(quant, c)}
    if method == "mxfp4":
        notes.append("quantization_config mxfp4: routed experts MXFP4 (4.25 bits); " + _kept_note(kept, base))
        return {"experts": "mxfp4", **kept}
    if method == "fp8":
        return {"weights": "fp8", **({"embeddings": base} if "embeddings" in kept else {})}
    if method == "modelopt":
        algo = str(quant.get("quant_algo") or "").upper()
        fmt = {"NVFP4": "nvfp4", "FP8": "fp8"}.get(algo)
        if fmt is None:
            notes.append(f"quantization_config.quant_algo {algo!r} is not modelled: weights taken as {base}")
            return {}
        if str(quant.get("kv_cache_quant_algo") or "").upper() == "FP8":
            kept["kv_cache"] = "fp8"
        notes.append(f"ModelOpt {algo}: linear layers {fmt}; " + _kept_note(kept, base))
        return {"weights": fmt, "embeddings": base, **kept}
    if method in ("awq", "gptq") and int(quant.get("bits", 4)) == 4:
        notes.append(f"{method} 4-bit weight-only: linear layers int4 (group scales counted), embeddings {base}")
        return {"weights": "int4", "embeddings": base}
    notes.append(f"quantization_config.quant_method {method!r} is not modelled: weights taken as {base}")
    return {}


def _kept_note(kept: dict[str, str], base: str) -> str:
    named = [c for c in kept if c != "kv_cache"]
    return f"{', '.join(named)} kept in {base}" if named else "no module listed as kept"


def _layer_types(cfg: _Config, num_layers: int, notes: list[str]) -> dict[str, Any]:
    """``layer_types``, ``sliding_window`` and ``attention_chunk_size`` of the attention spec.

    An explicit ``layer_types`` list (gpt-oss, Gemma-style alternation: ``sliding_attention`` /
    ``full_attention``) is read as it is; a ``sliding_window`` without one applies to every layer
    (Mistral) unless ``use_sliding_window`` is false (Qwen); Llama-4's ``attention_chunk_size``
    makes every RoPE layer chunked, and ``no_rope_layers`` (default: every
    ``no_rope_layer_interval``-th layer, 4, is a NoPE layer) marks the global ones."""
    window = cfg.data.get("sliding_window")
    names = cfg.data.get("layer_types")
    if isinstance(names, list):
        mapping = {"sliding_attention": "sliding", "full_attention": "full", "chunked_attention": "chunked"}
        if len(names) != num_layers or any(n not in mapping for n in names):
            raise cfg._error("layer_types", f"must list {num_layers} of {', '.join(mapping)}")
        kinds = [mapping[n] for n in names]
        out: dict[str, Any] = {"layer_types": kinds}
        if "sliding" in kinds:
            if not isinstance(window, int) or window < 1:
                raise cfg._error("sliding_window", "required (a positive integer) for sliding_attention layers")
            out["sliding_window"] = window
        if "chunked" in kinds:
            out["attention_chunk_size"] = cfg.integer("attention_chunk_size")
        return out
    if cfg.has("attention_chunk_size"):
        chunk = cfg.integer("attention_chunk_size")
        if cfg.has("no_rope_layers"):
            rope = cfg.data["no_rope_layers"]
            if not isinstance(rope, list) or len(rope) != num_layers:
                raise cfg._error("no_rope_layers", f"must list {num_layers} flags")
        else:
            interval = cfg.integer("no_rope_layer_interval", default=4)
            rope = [int((i + 1) % interval != 0) for i in range(num_layers)]
        return {"layer_types": ["chunked" if r else "full" for r in rope], "attention_chunk_size": chunk}
    if window is not None and cfg.data.get("use_sliding_window", True) is not False:
        if cfg.has("max_window_layers") and cfg.data.get("model_type", "").startswith("qwen"):
            notes.append(f"sliding_window {window} with max_window_layers is not modelled: full attention")
            return {}
        if not isinstance(window, int) or window < 1:
            raise cfg._error("sliding_window", "must be a positive integer")
        return {"layer_types": ["sliding"] * num_layers, "sliding_window": window}
    return {}


def _rope_note(cfg: _Config, notes: list[str]) -> None:
    scaling = cfg.data.get("rope_scaling")
    if isinstance(scaling, dict):
        kind = scaling.get("rope_type") or scaling.get("type")
        notes.append(f"rope_scaling ({kind}) does not change the weights; ignored")


def _moe(
    num_experts: int,
    top_k: int,
    expert_ffn_size: int,
    *,
    interval: int = 1,
    offset: int = 0,
    first_dense: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "num_experts": num_experts,
        "top_k": top_k,
        "expert_ffn_size": expert_ffn_size,
        "gated": True,
        "first_dense_layers": first_dense,
        "layer_interval": interval,
        "layer_offset": offset,
        **extra,
    }


def _is_moe(i: int, moe: dict[str, Any]) -> bool:
    return i >= moe["first_dense_layers"] and i % moe["layer_interval"] == moe["layer_offset"]


def _assemble(
    cfg: _Config,
    *,
    hidden: int,
    num_layers: int,
    vocab: int,
    attention: dict[str, Any],
    moe: dict[str, Any] | None,
    dense_ffn_key: str | None,
    precision: dict[str, str],
    notes: list[str],
    tie: bool,
) -> dict[str, Any]:
    """The ModelSpec dict; ``dense_ffn_key`` names the key holding the dense FFN size, read only
    when the model has a dense layer."""
    if moe is not None and not any(_is_moe(i, moe) for i in range(num_layers)):
        notes.append("no layer carries routed experts under this config: read as a dense model")
        moe = None
    ffn_size = None
    if moe is None or not all(_is_moe(i, moe) for i in range(num_layers)):
        if dense_ffn_key is None:
            raise cfg._error("num_hidden_layers", "dense layers appear but the family has no dense FFN size")
        ffn_size = cfg.integer(dense_ffn_key)
    return {
        "hidden_size": hidden,
        "num_layers": num_layers,
        "vocab_size": vocab,
        "attention": attention | _layer_types(cfg, num_layers, notes),
        "ffn_size": ffn_size,
        "ffn_gated": True,
        "moe": moe,
        "tie_embeddings": tie,
        "precision": precision,
        "assumptions": notes,
    }


# --------------------------------------------------------------------------------------------
# Family readers: each returns the ModelSpec fields other than name / description / source.


def _llama_like(cfg: _Config) -> dict[str, Any]:
    """Dense Llama, Mistral, Qwen2, Qwen3."""
    notes: list[str] = []
    t = cfg.model_type
    hidden = cfg.integer("hidden_size")
    if t == "qwen2":
        qkv_bias = True  # Qwen2 always has q/k/v biases
    else:
        qkv_bias = cfg.flag("attention_bias", False)
    if qkv_bias and t == "llama":
        notes.append("attention_bias: the output-projection bias is not counted")
    if cfg.flag("mlp_bias", False):
        notes.append("mlp_bias: FFN biases are not counted")
    attention = _attention(cfg, hidden, qkv_bias=qkv_bias, qk_norm=(t == "qwen3"))
    _rope_note(cfg, notes)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("num_hidden_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=attention,
        moe=None,
        dense_ffn_key="intermediate_size",
        precision=_precision(cfg, notes),
        notes=notes,
        tie=cfg.flag("tie_word_embeddings", False),
    )


def _mixtral_like(cfg: _Config) -> dict[str, Any]:
    """Mixtral and Phi-3.5-MoE: every layer MoE, ``intermediate_size`` per expert."""
    notes: list[str] = []
    hidden = cfg.integer("hidden_size")
    cfg.integer("num_key_value_heads")  # both families default to 8 KV heads in code, not to MHA
    qkv_bias = cfg.flag("attention_bias", False)
    if cfg.model_type == "phimoe":
        notes.append("Phi-MoE LayerNorm biases and the output-projection bias are not counted")
        if cfg.flag("lm_head_bias", False):
            notes.append("lm_head_bias: the LM-head bias is not counted")
    moe = _moe(cfg.integer("num_local_experts"), cfg.integer("num_experts_per_tok"), cfg.integer("intermediate_size"))
    _rope_note(cfg, notes)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("num_hidden_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=_attention(cfg, hidden, qkv_bias=qkv_bias),
        moe=moe,
        dense_ffn_key=None,
        precision=_precision(cfg, notes),
        notes=notes,
        tie=cfg.flag("tie_word_embeddings", False),
    )


def _qwen_moe(cfg: _Config) -> dict[str, Any]:
    """Qwen2-MoE (one gated shared expert, q/k/v biases) and Qwen3-MoE (QK-norm, no shared expert)."""
    notes: list[str] = []
    qwen2 = cfg.model_type == "qwen2_moe"
    if cfg.int_list("mlp_only_layers"):
        raise cfg._error("mlp_only_layers", "dense-only layers listed by index are not supported; must be empty")
    hidden = cfg.integer("hidden_size")
    step = cfg.integer("decoder_sparse_step", default=1)
    extra: dict[str, Any] = {}
    if qwen2:
        shared = cfg.integer("shared_expert_intermediate_size", minimum=0)
        if shared > 0:
            extra = {"num_shared_experts": 1, "shared_expert_ffn_size": shared}
            notes.append("the shared expert's sigmoid gate (hidden_size weights per layer) is not counted")
        attention = _attention(cfg, hidden, qkv_bias=True)
    else:
        attention = _attention(cfg, hidden, qkv_bias=cfg.flag("attention_bias", False), qk_norm=True)
    num_experts = cfg.integer("num_experts", minimum=0)
    moe = None
    if num_experts > 0:
        # HF: layer i is MoE when (i + 1) % decoder_sparse_step == 0.
        moe = _moe(
            num_experts,
            cfg.integer("num_experts_per_tok"),
            cfg.integer("moe_intermediate_size"),
            interval=step,
            offset=step - 1,
            **extra,
        )
    _rope_note(cfg, notes)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("num_hidden_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=attention,
        moe=moe,
        dense_ffn_key="intermediate_size",
        precision=_precision(cfg, notes),
        notes=notes,
        tie=cfg.flag("tie_word_embeddings", False),
    )


def _deepseek(cfg: _Config) -> dict[str, Any]:
    """DeepSeek-V2/V3: multi-head latent attention, shared experts, group-limited routing."""
    notes: list[str] = []
    hidden = cfg.integer("hidden_size")
    heads = cfg.integer("num_attention_heads")
    attention = {
        "kind": "mla",
        "num_heads": heads,
        "num_kv_heads": cfg.integer("num_key_value_heads", default=heads),
        "q_lora_rank": cfg.opt_integer("q_lora_rank"),
        "kv_lora_rank": cfg.integer("kv_lora_rank"),
        "qk_nope_head_dim": cfg.integer("qk_nope_head_dim"),
        "qk_rope_head_dim": cfg.integer("qk_rope_head_dim"),
        "v_head_dim": cfg.integer("v_head_dim"),
    }
    topk_method = cfg.data.get("topk_method", "greedy")
    n_group = cfg.integer("n_group", default=1)
    topk_group = cfg.opt_integer("topk_group")
    if topk_method == "greedy" and n_group > 1:
        notes.append(f"topk_method 'greedy' routes over all experts: n_group {n_group} ignored")
        n_group, topk_group = 1, None
    if n_group == 1:
        topk_group = None
    moe = None
    if cfg.has("n_routed_experts"):
        # HF: layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0.
        moe = _moe(
            cfg.integer("n_routed_experts"),
            cfg.integer("num_experts_per_tok"),
            cfg.integer("moe_intermediate_size"),
            interval=cfg.integer("moe_layer_freq", default=1),
            offset=0,
            first_dense=cfg.integer("first_k_dense_replace", default=0, minimum=0),
            num_shared_experts=cfg.integer("n_shared_experts", default=0, minimum=0),
            num_groups=n_group,
            groups_per_token=topk_group,
            router_bias=(topk_method == "noaux_tc"),
        )
    mtp = cfg.integer("num_nextn_predict_layers", default=0, minimum=0)
    if mtp:
        notes.append(f"multi-token-prediction module ({mtp} layer) not counted, as in published totals")
    _rope_note(cfg, notes)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("num_hidden_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=attention,
        moe=moe,
        dense_ffn_key="intermediate_size",
        precision=_precision(cfg, notes),
        notes=notes,
        tie=cfg.flag("tie_word_embeddings", False),
    )


def _olmoe(cfg: _Config) -> dict[str, Any]:
    """OLMoE: every layer MoE, QK-norm over the whole q/k projections."""
    notes = ["OLMoE normalises the full q and k projections; counted as per-head QK-norm (a few thousand weights)"]
    hidden = cfg.integer("hidden_size")
    moe = _moe(cfg.integer("num_experts"), cfg.integer("num_experts_per_tok"), cfg.integer("intermediate_size"))
    _rope_note(cfg, notes)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("num_hidden_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=_attention(cfg, hidden, qkv_bias=cfg.flag("attention_bias", False), qk_norm=True),
        moe=moe,
        dense_ffn_key=None,
        precision=_precision(cfg, notes),
        notes=notes,
        tie=cfg.flag("tie_word_embeddings", False),
    )


def _gpt_oss(cfg: _Config) -> dict[str, Any]:
    """gpt-oss: biased experts and attention, MXFP4 expert weights, attention sinks."""
    notes = [
        "attention sinks (one scalar per head per layer), the output-projection bias and the router bias "
        "are not counted",
    ]
    hidden = cfg.integer("hidden_size")
    top_k_key = "experts_per_token" if cfg.has("experts_per_token") else "num_experts_per_tok"
    moe = _moe(
        cfg.integer("num_local_experts"), cfg.integer(top_k_key), cfg.integer("intermediate_size"), expert_bias=True
    )
    _rope_note(cfg, notes)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("num_hidden_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=_attention(cfg, hidden, qkv_bias=cfg.flag("attention_bias", True)) | {"sinks": True},
        moe=moe,
        dense_ffn_key=None,
        precision=_precision(cfg, notes),
        notes=notes,
        tie=cfg.flag("tie_word_embeddings", False),
    )


def _dbrx(cfg: _Config) -> dict[str, Any]:
    """DBRX: MosaicML key names, attention and FFN settings in sub-objects."""
    notes = ["DBRX LayerNorms have no bias; the clip_qkv clamp does not change the weights"]
    attn = cfg.nested("attn_config")
    ffn = cfg.nested("ffn_config")
    hidden = cfg.integer("d_model")
    heads = cfg.integer("n_heads")
    kv_heads = attn.integer("kv_n_heads", default=heads)
    if kv_heads > heads or heads % kv_heads:
        raise attn._error("kv_n_heads", f"{kv_heads} KV heads do not divide the {heads} query heads")
    if hidden % heads:
        raise cfg._error("d_model", f"{hidden} is not divisible by {heads} heads")
    attention = {
        "kind": "mha" if kv_heads == heads else "gqa",
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": hidden // heads,
    }
    moe = _moe(ffn.integer("moe_num_experts"), ffn.integer("moe_top_k"), ffn.integer("ffn_hidden_size"))
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("n_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=attention,
        moe=moe,
        dense_ffn_key=None,
        precision=_precision(cfg, notes),
        notes=notes,
        tie=cfg.flag("tie_word_embeddings", False),
    )


def _layer_pattern(cfg: _Config, key: str, moe_layers: list[int], num_layers: int) -> tuple[int, int, int]:
    """``(first_dense_layers, layer_interval, layer_offset)`` reproducing an explicit layer list."""
    layers = sorted(set(moe_layers))
    if not layers or layers[0] < 0 or layers[-1] >= num_layers:
        raise cfg._error(key, f"must list layer indices in 0..{num_layers - 1}, got {moe_layers}")
    interval = layers[1] - layers[0] if len(layers) > 1 else num_layers
    offset = layers[0] % interval
    first = 0 if layers[0] < interval else layers[0]
    if [i for i in range(num_layers) if i >= first and i % interval == offset] != layers:
        raise cfg._error(key, "MoE layers must be evenly spaced up to the last layer to be modelled")
    return first, interval, offset


def _llama4(cfg: _Config, outer: _Config | None = None) -> dict[str, Any]:
    """Llama-4 text model: MoE layers every ``interleave_moe_layer_step``, one shared expert."""
    notes: list[str] = []
    if outer is not None and outer.has("vision_config"):
        notes.append("the vision encoder and projector are not counted (text model only)")
    hidden = cfg.integer("hidden_size")
    num_layers = cfg.integer("num_hidden_layers")
    expert = cfg.integer("intermediate_size")
    if cfg.has("moe_layers"):
        first, interval, offset = _layer_pattern(cfg, "moe_layers", cfg.int_list("moe_layers"), num_layers)
    else:
        # HF default: moe_layers = range(step - 1, num_layers, step), i.e. (i + 1) % step == 0.
        interval = cfg.integer("interleave_moe_layer_step", default=1)
        first, offset = 0, interval - 1
    moe = _moe(
        cfg.integer("num_local_experts"),
        cfg.integer("num_experts_per_tok"),
        expert,
        interval=interval,
        offset=offset,
        first_dense=first,
        num_shared_experts=1,
        shared_expert_ffn_size=expert,
    )
    if cfg.flag("use_qk_norm", False):
        notes.append("use_qk_norm is a weightless L2 norm: no QK-norm weights counted")
    _rope_note(cfg, notes)
    tie = cfg.flag("tie_word_embeddings", outer.flag("tie_word_embeddings", False) if outer else False)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=num_layers,
        vocab=cfg.integer("vocab_size"),
        attention=_attention(cfg, hidden, qkv_bias=cfg.flag("attention_bias", False)),
        moe=moe,
        dense_ffn_key="intermediate_size_mlp",
        precision=_precision(cfg, notes, *([outer] if outer else [])),
        notes=notes,
        tie=tie,
    )


def _llama4_wrapped(cfg: _Config) -> dict[str, Any]:
    return _llama4(cfg.nested("text_config"), outer=cfg)


_READERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "mixtral": _mixtral_like,
    "phimoe": _mixtral_like,
    "qwen2_moe": _qwen_moe,
    "qwen3_moe": _qwen_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    # Kimi-K2 is the DeepSeek-V3 architecture (MLA, 384 experts, one shared, noaux_tc routing)
    # under its own model_type; its config uses the DeepSeek-V3 keys.
    "kimi_k2": _deepseek,
    "olmoe": _olmoe,
    "gpt_oss": _gpt_oss,
    "dbrx": _dbrx,
    "llama4": _llama4_wrapped,
    "llama4_text": _llama4,
    "llama": _llama_like,
    "mistral": _llama_like,
    "qwen2": _llama_like,
    "qwen3": _llama_like,
}

#: The ``model_type`` values :func:`model_from_hf_config` reads.
SUPPORTED_MODEL_TYPES = tuple(sorted(_READERS))


def _model_type(config: dict[str, Any], source: str | None) -> str:
    model_type = config.get("model_type")
    if model_type is None:
        archs = config.get("architectures") or []
        known = [_ARCHITECTURES[a] for a in archs if isinstance(a, str) and a in _ARCHITECTURES]
        if not known:
            raise InputError.single(
                "model_type", f"missing, and architectures {archs!r} name no supported family", source
            )
        model_type = known[0]
    if model_type not in _READERS:
        raise InputError.single(
            "model_type",
            f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}",
            source,
        )
    return str(model_type)


def model_from_hf_config(config: dict[str, Any], source: str = "") -> ModelSpec:
    """Map a Hugging Face ``config.json`` (parsed) to a :class:`ModelSpec`.

    Parameters
    ----------
    config
        The parsed ``config.json``.
    source
        Where it came from (a path or a hub id); recorded in the spec and named in errors.

    Raises
    ------
    InputError
        For an unsupported ``model_type``, a missing or malformed key (named as the config spells
        it), or an architecture the schema cannot express.
    """
    where = source or None
    if not isinstance(config, dict):
        raise InputError.single("", "a Hugging Face config must be a JSON object", where)
    model_type = _model_type(config, where)
    fields = _READERS[model_type](_Config(config, model_type, source))
    name = config.get("_name_or_path") or model_type
    moe = fields["moe"]
    shape = f"{fields['num_layers']} layers, hidden {fields['hidden_size']}"
    if moe is not None:
        shape += f", {moe['num_experts']} experts top-{moe['top_k']} of FFN {moe['expert_ffn_size']}"
    data = {
        "name": str(name),
        "description": f"Read from a Hugging Face config.json (model_type {model_type}): {shape}.",
        **fields,
        "source": source,
    }
    return validate(ModelSpec, data, where)
