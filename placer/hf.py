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
    quant = next((c.data.get("quantization_config") for c in (cfg, *outer) if c.data.get("quantization_config")), None)
    if isinstance(quant, dict) and quant.get("quant_method") is not None:
        method = str(quant.get("quant_method")).lower()
        if method == "fp8":
            weights = "fp8"
        elif method != "mxfp4":  # gpt-oss notes its MXFP4 experts itself
            notes.append(f"quantization_config.quant_method {method!r} is not modelled: weights taken as {weights}")
    runtime = "fp16" if weights == "fp16" else "bf16"
    return {"weights": weights, "kv_cache": runtime, "activations": runtime}


def _sliding_window_note(cfg: _Config, notes: list[str]) -> None:
    window = cfg.data.get("sliding_window")
    use = cfg.data.get("use_sliding_window", True)
    if window is not None and use is not False:
        notes.append(f"sliding_window {window} ignored: every layer is treated as full attention")


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
        "attention": attention,
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
    _sliding_window_note(cfg, notes)
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
    _sliding_window_note(cfg, notes)
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
    _sliding_window_note(cfg, notes)
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
        "experts ship in MXFP4 (4.25 bits per weight); attention, router, embedding and LM head in bf16. "
        "The schema has one weight precision: bf16 is used, which overstates expert bytes about 3.8x",
        "attention sinks (one scalar per head per layer), the output-projection bias and the router bias "
        "are not counted",
    ]
    hidden = cfg.integer("hidden_size")
    top_k_key = "experts_per_token" if cfg.has("experts_per_token") else "num_experts_per_tok"
    moe = _moe(
        cfg.integer("num_local_experts"), cfg.integer(top_k_key), cfg.integer("intermediate_size"), expert_bias=True
    )
    window = cfg.data.get("sliding_window")
    if window is not None:
        notes.append(f"alternating sliding-window layers (window {window}) treated as full attention")
    _rope_note(cfg, notes)
    return _assemble(
        cfg,
        hidden=hidden,
        num_layers=cfg.integer("num_hidden_layers"),
        vocab=cfg.integer("vocab_size"),
        attention=_attention(cfg, hidden, qkv_bias=cfg.flag("attention_bias", True)),
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
    if cfg.has("attention_chunk_size"):
        notes.append(f"chunked local attention (chunk {cfg.data['attention_chunk_size']}) treated as full attention")
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
