"""Hugging Face ``config.json`` files read as placer models, checked against published counts.

The fixtures under ``tests/data/hf/`` are the published ``config.json`` files of each model.
Mixtral-8x7B, DeepSeek-V3 and Qwen3-30B-A3B carry the values quoted in
``shared/reference/calibration.json``; the rest are transcribed from their Hugging Face repos
(Phi-3.5-MoE without the 48-entry ``longrope`` factor lists, which do not touch the weights).
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from placer.costmodel.params import count_params
from placer.errors import InputError
from placer.hf import model_from_hf_config
from placer.loading import load_model
from placer.schema import ModelSpec

HF_DIR = Path(__file__).parent / "data" / "hf"


def _config(name: str) -> dict:
    return json.loads((HF_DIR / name / "config.json").read_text())


def _unit(published: str) -> float:
    """One unit of the last stated digit of a count in billions: "3.3" -> 0.1e9, "37" -> 1e9."""
    return float(Decimal(1).scaleb(Decimal(published).as_tuple().exponent)) * 1e9


def _within(computed: float, published: str, rel: float) -> bool:
    return abs(computed - float(published) * 1e9) <= rel * float(published) * 1e9


def _truncated(computed: float, published: str) -> bool:
    # Publishers cut a count to their last stated digit rather than round it: DeepSeek-V3's
    # 37.55B active is published as "37B", Qwen3-30B-A3B's 3.353B as "3.3B". So a computed count
    # matches when published <= computed < published + one unit of the last stated digit.
    low = float(published) * 1e9
    return low <= computed < low + _unit(published)


def _rounded(computed: float, published: str) -> bool:
    """Within half a unit of the last stated digit (OLMoE's 1.28B published as "1.3B")."""
    return abs(computed - float(published) * 1e9) <= _unit(published) / 2


# ---------------------------------------------------------------------------------------------
# Every fixture loads


@pytest.mark.parametrize("name", sorted(p.name for p in HF_DIR.iterdir() if (p / "config.json").is_file()))
def test_every_fixture_loads_as_a_model(name: str) -> None:
    path = HF_DIR / name / "config.json"
    model = load_model(path)
    assert isinstance(model, ModelSpec)
    assert model.source == str(path)
    assert model.moe is not None and model.moe_layers
    counts = count_params(model)
    assert counts.total > counts.active > 0


# ---------------------------------------------------------------------------------------------
# The three calibration models: published counts, and agreement with the shipped model files

# name, published total (B), published active (B); calibration.json "models".
CALIBRATED = [
    ("mixtral-8x7b", "46.7", "12.9"),  # arXiv 2401.04088; computed 46.70B / 12.88B
    ("deepseek-v3", "671", "37"),  # DeepSeek-V3 README, MTP excluded; computed 671.03B / 37.55B
    ("qwen3-30b-a3b", "30.5", "3.3"),  # Qwen3-30B-A3B model card; computed 30.53B / 3.353B
]


@pytest.mark.parametrize(("name", "total", "active"), CALIBRATED)
def test_calibrated_models_match_published_counts(name: str, total: str, active: str) -> None:
    counts = count_params(load_model(HF_DIR / name / "config.json"))
    assert _within(counts.total, total, 0.01)
    # Active: within 1%, or a truncated publication (see _truncated).
    assert _within(counts.active, active, 0.01) or _truncated(counts.active, active)


@pytest.mark.parametrize("name", [row[0] for row in CALIBRATED])
def test_hf_config_agrees_with_shipped_model_file(name: str) -> None:
    from_hf = count_params(load_model(HF_DIR / name / "config.json"))
    shipped = count_params(load_model(name))
    assert from_hf.total == shipped.total
    assert from_hf.active == shipped.active


def test_deepseek_v3_structure() -> None:
    model = load_model(HF_DIR / "deepseek-v3" / "config.json")
    assert model.attention.kind == "mla"
    assert model.attention.q_lora_rank == 1536 and model.attention.kv_lora_rank == 512
    assert model.ffn_size == 18432
    moe = model.moe
    assert moe is not None
    assert (moe.first_dense_layers, moe.layer_interval, moe.layer_offset) == (3, 1, 0)
    assert (moe.num_groups, moe.groups_per_token, moe.num_shared_experts) == (8, 4, 1)
    assert moe.router_bias
    assert model.precision.weights == "fp8"  # quantization_config.quant_method == "fp8"
    assert len(model.moe_layers) == 58


def test_mixtral_and_qwen3_structure() -> None:
    mixtral = load_model(HF_DIR / "mixtral-8x7b" / "config.json")
    assert mixtral.attention.kind == "gqa" and mixtral.head_dim == 128  # no head_dim key: 4096 / 32
    assert mixtral.ffn_size is None and mixtral.precision.weights == "bf16"
    qwen3 = load_model(HF_DIR / "qwen3-30b-a3b" / "config.json")
    assert qwen3.attention.qk_norm and not qwen3.attention.qkv_bias
    assert qwen3.moe is not None and qwen3.moe.num_shared_experts == 0


# ---------------------------------------------------------------------------------------------
# Other families: published totals within 2%, active counts by each publisher's convention

# name, published total (B), published active (B), active convention, why
OTHERS = [
    # OLMoE paper: 6.9B total / 1.3B active; computed 6.92B / 1.282B, i.e. rounded, not truncated.
    ("olmoe-1b-7b", "6.9", "1.3", "rounded"),
    # Qwen1.5-MoE-A2.7B card: 14.3B total / 2.7B activated; computed 14.32B / 2.689B.
    ("qwen1.5-moe-a2.7b", "14.3", "2.7", "all"),
    # Phi-3.5-MoE card: 41.9B total / 6.6B active; computed 41.87B / 6.64B.
    ("phi-3.5-moe", "41.9", "6.6", "all"),
    # DBRX announcement: 132B total / 36B active; computed 131.60B / 36.47B (truncated).
    ("dbrx", "132", "36", "all"),
    # Llama-4-Scout card: 109B total / 17B active. The 109B includes the vision encoder and
    # projector, which placer does not count: computed 107.77B (-1.1%) / 17.17B (truncated).
    ("llama4-scout", "109", "17", "all"),
    # gpt-oss model card: 20.91B total / 3.61B active, where "active" counts the unembedding but
    # not the embedding table (a token only indexes it). Computed 20.915B; active including both
    # tables is 4.19B, without the input table 3.608B.
    ("gpt-oss-20b", "21", "3.6", "excluding_embedding"),
    # DeepSeek-V2 paper: V2-Lite has 15.7B total / 2.4B activated. The 2.4B leaves out the
    # 0.21B input embedding: computed 15.71B; active 2.661B with it, 2.451B without (truncated).
    ("deepseek-v2-lite", "15.7", "2.4", "excluding_embedding"),
]


@pytest.mark.parametrize(("name", "total", "active", "convention"), OTHERS)
def test_other_families_match_published_counts(name: str, total: str, active: str, convention: str) -> None:
    counts = count_params(load_model(HF_DIR / name / "config.json"))
    assert _within(counts.total, total, 0.02)
    computed = counts.active_excluding_embedding if convention == "excluding_embedding" else counts.active
    if convention == "rounded":
        assert _rounded(computed, active)
    else:
        assert _within(computed, active, 0.01) or _truncated(computed, active)


def test_qwen2_moe_has_one_shared_expert_and_qkv_bias() -> None:
    model = load_model(HF_DIR / "qwen1.5-moe-a2.7b" / "config.json")
    assert model.attention.qkv_bias and model.attention.kind == "mha"
    assert model.moe is not None
    assert (model.moe.num_shared_experts, model.moe.shared_ffn_size, model.moe.expert_ffn_size) == (1, 5632, 1408)


def test_qwen2_moe_sparse_step_makes_odd_layers_moe() -> None:
    config = _config("qwen1.5-moe-a2.7b") | {"decoder_sparse_step": 2}
    model = model_from_hf_config(config)
    assert model.moe is not None and (model.moe.layer_interval, model.moe.layer_offset) == (2, 1)
    assert model.moe_layers == list(range(1, 24, 2))  # HF: (i + 1) % step == 0
    assert model.ffn_size == 5632  # dense layers use intermediate_size


def test_qwen_moe_mlp_only_layers_are_refused() -> None:
    config = _config("qwen3-30b-a3b") | {"mlp_only_layers": [0, 47]}
    with pytest.raises(InputError) as err:
        model_from_hf_config(config)
    assert err.value.problems[0][0] == "mlp_only_layers"


def test_deepseek_v2_lite_has_no_query_compression() -> None:
    model = load_model(HF_DIR / "deepseek-v2-lite" / "config.json")
    assert model.attention.kind == "mla" and model.attention.q_lora_rank is None
    moe = model.moe
    assert moe is not None
    assert (moe.first_dense_layers, moe.num_shared_experts, moe.num_groups, moe.router_bias) == (1, 2, 1, False)
    assert model.ffn_size == 10944


def test_gpt_oss_biases_and_mxfp4_note() -> None:
    model = load_model(HF_DIR / "gpt-oss-20b" / "config.json")
    assert model.moe is not None and model.moe.expert_bias and model.moe.top_k == 4
    assert model.attention.qkv_bias and model.head_dim == 64  # head_dim key, not 2880 / 64
    assert model.precision.weights == "bf16"
    assert any("MXFP4" in note for note in model.assumptions)


def test_dbrx_reads_mosaic_keys() -> None:
    model = load_model(HF_DIR / "dbrx" / "config.json")
    assert (model.hidden_size, model.num_layers, model.attention.kv_heads) == (6144, 40, 8)
    assert model.moe is not None and (model.moe.num_experts, model.moe.top_k) == (16, 4)


def test_llama4_reads_nested_text_config() -> None:
    model = load_model(HF_DIR / "llama4-scout" / "config.json")
    assert model.moe is not None
    assert (model.moe.num_shared_experts, model.moe.shared_ffn_size) == (1, 8192)
    assert model.moe_layers == list(range(48))
    assert model.ffn_size is None  # every layer MoE: intermediate_size_mlp unused
    # A Maverick-style interleave: MoE on every second layer, dense FFN of intermediate_size_mlp.
    config = _config("llama4-scout")
    config["text_config"] |= {"interleave_moe_layer_step": 2, "num_local_experts": 128}
    maverick = model_from_hf_config(config)
    assert maverick.moe_layers == list(range(1, 48, 2))
    assert maverick.ffn_size == 16384
    # The bare text config reads the same.
    text = model_from_hf_config(_config("llama4-scout")["text_config"])
    assert count_params(text).total == count_params(model).total


def test_dense_llama_config() -> None:
    config = {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_hidden_layers": 32,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    model = model_from_hf_config(config, source="meta-llama/Llama-3.1-8B")
    assert model.moe is None and model.ffn_size == 14336
    assert model.source == "meta-llama/Llama-3.1-8B"
    assert abs(count_params(model).total - 8.03e9) < 0.01 * 8.03e9  # Llama-3.1-8B: 8.03B


def test_architectures_alone_identify_the_family() -> None:
    config = _config("mixtral-8x7b")
    del config["model_type"]
    assert count_params(model_from_hf_config(config)).total == count_params(load_model("mixtral-8x7b")).total


def test_fp16_checkpoint_keeps_fp16_cache() -> None:
    model = model_from_hf_config(_config("mixtral-8x7b") | {"torch_dtype": "float16"})
    assert (model.precision.weights, model.precision.kv_cache, model.precision.activations) == ("fp16",) * 3


# ---------------------------------------------------------------------------------------------
# Errors name the field


def test_unknown_model_type_is_an_input_error() -> None:
    with pytest.raises(InputError) as err:
        model_from_hf_config({"model_type": "bert", "hidden_size": 768})
    assert err.value.problems[0][0] == "model_type"


@pytest.mark.parametrize(
    ("name", "path", "field"),
    [
        ("mixtral-8x7b", ["num_local_experts"], "num_local_experts"),
        ("deepseek-v3", ["kv_lora_rank"], "kv_lora_rank"),
        ("dbrx", ["ffn_config", "moe_top_k"], "ffn_config.moe_top_k"),
        ("llama4-scout", ["text_config", "hidden_size"], "text_config.hidden_size"),
        ("llama4-scout", ["text_config"], "text_config"),
    ],
)
def test_missing_key_names_it(name: str, path: list[str], field: str, tmp_path: Path) -> None:
    config = copy.deepcopy(_config(name))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    file = tmp_path / "config.json"
    file.write_text(json.dumps(config))
    with pytest.raises(InputError) as err:
        load_model(file)
    assert err.value.problems[0][0] == field
    assert "required" in err.value.problems[0][1]


def test_malformed_value_names_it() -> None:
    with pytest.raises(InputError) as err:
        model_from_hf_config(_config("mixtral-8x7b") | {"num_experts_per_tok": "two"})
    assert err.value.problems[0][0] == "num_experts_per_tok"
