"""Per-component precision and attention kinds read from Hugging Face configs (issue 14).

The shipped configs under ``models/hf/`` carry the documented values of gpt-oss-120b,
Llama-4-Maverick and Qwen3-235B-A22B; the sizes below are worked out by hand from them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from placer.cli import app
from placer.costmodel.layers import attended_tokens, causal_pairs, kv_bytes_for_context, kv_tokens_held
from placer.costmodel.params import count_params, weight_bytes
from placer.errors import InputError
from placer.hf import model_from_hf_config
from placer.loading import load_model
from placer.schema import DTYPE_BYTES

MODELS = Path(__file__).resolve().parents[1] / "models" / "hf"


def _config(name: str) -> dict:
    return json.loads((MODELS / name / "config.json").read_text())


def test_gpt_oss_120b_mixed_precision_and_sliding_layers() -> None:
    model = load_model(MODELS / "gpt-oss-120b" / "config.json")
    p = model.precision
    components = (p.of("experts"), p.of("attention"), p.of("embeddings"), p.of("dense_mlp"))
    assert components == ("mxfp4", "bf16", "bf16", "bf16")
    att = model.attention
    assert att.layer_types == ["sliding", "full"] * 18 and att.sliding_window == 128 and att.sinks
    counts = count_params(model)
    routed = sum(layer.routed_total for layer in counts.layers)
    rest = counts.total - routed
    # experts at 4.25 bits, everything else at 2 bytes
    assert weight_bytes(model) == pytest.approx(routed * 4.25 / 8 + rest * 2.0)
    assert 60e9 < weight_bytes(model) < 70e9  # the published checkpoint is ~65 GB


def test_llama4_maverick_chunked_and_global_layers() -> None:
    model = load_model(MODELS / "llama-4-maverick" / "config.json")
    att = model.attention
    # every fourth layer (3, 7, ...) is a NoPE global layer; the others chunked local attention
    assert att.layer_types == ["chunked", "chunked", "chunked", "full"] * 12
    assert att.attention_chunk_size == 8192
    assert model.moe is not None and model.moe_layers == list(range(1, 48, 2))
    assert not model.precision.mixed


def test_qwen3_235b_is_all_full_attention() -> None:
    model = load_model(MODELS / "qwen3-235b-a22b" / "config.json")
    assert model.attention.layer_types is None and model.num_layers == 94


def test_kv_and_attention_spans_by_layer_kind() -> None:
    gpt = load_model(MODELS / "gpt-oss-120b" / "config.json")
    per_token = 2 * 8 * 64 * 2  # K and V, 8 KV heads of 64, bf16
    assert kv_bytes_for_context(gpt, 8192) == pytest.approx((18 * 8192 + 18 * 128) * per_token * 1.0)
    assert kv_tokens_held(gpt, 0, 8192) == 128 and kv_tokens_held(gpt, 1, 8192) == 8192
    assert attended_tokens(gpt, 0, 100) == 100 and attended_tokens(gpt, 0, 5000) == 128
    llama4 = load_model(MODELS / "llama-4-maverick" / "config.json")
    assert attended_tokens(llama4, 0, 20000) == pytest.approx((8192 + 1) / 2)
    assert attended_tokens(llama4, 3, 20000) == 20000


@pytest.mark.parametrize("name, layer, length", [("gpt-oss-120b", 0, 700), ("llama-4-maverick", 0, 20000)])
def test_causal_pairs_match_a_brute_force_count(name: str, layer: int, length: int) -> None:
    model = load_model(MODELS / name / "config.json")
    window = model.attention.window(layer)
    assert window is not None
    if model.attention.layer_kind(layer) == "sliding":
        brute = sum(min(i + 1, window) for i in range(length))
    else:
        brute = sum(i % window + 1 for i in range(length))
    assert causal_pairs(model, layer, length) == brute


def test_modelopt_nvfp4_config_reads_per_component() -> None:
    config = _config("qwen3-235b-a22b")
    config["quantization_config"] = {
        "quant_method": "modelopt",
        "quant_algo": "NVFP4",
        "kv_cache_quant_algo": "FP8",
        "exclude_modules": ["lm_head", "model.layers.*.mlp.gate"],
    }
    model = model_from_hf_config(config)
    p = model.precision
    assert (p.weights, p.of("experts"), p.of("embeddings"), p.kv_cache) == ("nvfp4", "nvfp4", "bf16", "fp8")
    assert p.of("attention") == "bf16"  # the router ('mlp.gate') is listed as kept
    assert DTYPE_BYTES["nvfp4"] == 4.5 / 8 and DTYPE_BYTES["mxfp4"] == 4.25 / 8


def test_awq_reads_as_int4_weight_only() -> None:
    config = _config("llama-3.3-70b")
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128}
    model = model_from_hf_config(config)
    assert model.precision.weights == "int4" and model.precision.of("embeddings") == "bf16"


def test_unknown_quantization_is_noted_not_applied() -> None:
    config = _config("llama-3.3-70b")
    config["quantization_config"] = {"quant_method": "bitsandbytes"}
    model = model_from_hf_config(config)
    assert model.precision.weights == "bf16"
    assert any("bitsandbytes" in note for note in model.assumptions)


def test_layer_types_of_the_wrong_length_name_the_key() -> None:
    config = copy.deepcopy(_config("gpt-oss-120b"))
    config["layer_types"] = config["layer_types"][:-1]
    with pytest.raises(InputError, match="layer_types"):
        model_from_hf_config(config)


def test_model_show_prints_components_and_attention_kinds() -> None:
    result = CliRunner().invoke(app, ["model", "show", str(MODELS / "gpt-oss-120b" / "config.json")])
    assert result.exit_code == 0, result.output
    assert "experts mxfp4" in result.output
    assert "18 full, 18 sliding (window 128)" in result.output
    result = CliRunner().invoke(app, ["model", "show", str(MODELS / "llama-4-maverick" / "config.json")])
    assert "12 full, 36 chunked (chunk 8192)" in result.output


def test_int8_gemms_run_at_the_int8_peak_where_the_gpu_has_one() -> None:
    """W8A8 int8 GEMMs: A100 has int8 tensor cores (624 TOPS dense) and no fp8, so they no longer
    fall back to its 16-bit peak; Hopper's int8 peak equals its fp8 one; a GPU stating neither
    keeps the 16-bit figure."""
    from placer.loading import load_hardware
    from placer.schema.base import COMPUTE_PRECISION

    a100, h100, seed = (load_hardware(n) for n in ("a100-80gb-sxm", "h100-sxm", "seed-400tf"))
    int8 = COMPUTE_PRECISION["int8"]
    assert a100.peak_flops_per_s(int8) == 624e12 and a100.peak_flops_per_s("fp8") == 312e12
    assert h100.peak_flops_per_s(int8) == h100.peak_flops_per_s("fp8") == 1979e12
    assert seed.peak_flops_per_s(int8) == seed.peak_flops_per_s("bf16")


def test_activation_quantisation_is_charged_only_to_8_bit_gemms() -> None:
    """(O11) The quantisation passes over the hidden state belong to W8A8 / FP4 x FP8 GEMMs: a
    16-bit deployment pays none, DeepSeek-V3's FP8 weights pay them, FP4 weights pay them only on a
    GPU with FP4 units (elsewhere they run weight-only at the 16-bit peak)."""
    from types import SimpleNamespace

    from placer.costmodel.layers import QUANTISATION_PASSES_PER_LAYER, quantisation_passes
    from placer.loading import load_hardware

    h100, b200 = load_hardware("h100-sxm"), load_hardware("b200")

    def passes(model: str, hardware: object, weights: str | None = None) -> int:
        spec = load_model(model)
        if weights is not None:
            spec = spec.model_copy(update={"precision": spec.precision.model_copy(update={"weights": weights})})
        return quantisation_passes(SimpleNamespace(model=spec, hardware=hardware))  # type: ignore[arg-type]

    assert QUANTISATION_PASSES_PER_LAYER == 3
    assert passes("mixtral-8x7b", h100) == 0
    assert passes("deepseek-v3", h100) == 3
    assert passes("mixtral-8x7b", h100, "int8") == 3
    assert passes("mixtral-8x7b", h100, "nvfp4") == 0 and passes("mixtral-8x7b", b200, "nvfp4") == 3
