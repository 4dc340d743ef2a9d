"""Cost-model formulas against hand calculations (arithmetic in the comments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from placer.costmodel.comm import allreduce_time_s
from placer.costmodel.layers import attention_dims
from placer.costmodel.params import count_params
from placer.costmodel.traffic import contiguous_map, layer_traffic
from placer.evaluator import evaluate
from placer.loading import load_model, load_plan
from placer.problem import load_problem
from placer.topology import Fabric

ROOT = Path(__file__).resolve().parents[1]


def test_moe10b_parameter_count_by_hand():
    # attention 4 x 512^2 = 1,048,576; norms 2 x 512; router 512 x 16 = 8,192;
    # experts 16 x 2 x 512 x 1024 = 16,777,216 -> 17,835,008 per layer, x 16 = 285,360,128;
    # embedding + LM head 2 x 32,000 x 512 = 32,768,000; final norm 512 -> 318,128,640.
    assert count_params(load_model("moe10b")).total == 318_128_640


def test_kv_bytes_per_token():
    # moe10b MHA: K and V, 16 heads x 32 dims, fp16 -> 2 x 512 x 2 B = 2,048 B per layer per token.
    assert attention_dims(load_model("moe10b"), 1).kv_bytes_per_token == 2048
    # DeepSeek-V3 MLA caches the latent (512) + rope key (64) in bf16 = 1,152 B, on every TP rank.
    dsv3 = load_model("deepseek-v3")
    assert attention_dims(dsv3, 1).kv_bytes_per_token == 1152
    assert attention_dims(dsv3, 8).kv_bytes_per_token == 1152
    # Mixtral GQA 8 KV heads x 128 dims bf16: tp 2 -> 4 heads x 128 x 2 (K,V) x 2 B = 2,048 B;
    # tp 16 > 8 KV heads -> each rank keeps one KV head: 1 x 128 x 2 x 2 = 512 B.
    mixtral = load_model("mixtral-8x7b")
    assert attention_dims(mixtral, 2).kv_bytes_per_token == 2048
    assert attention_dims(mixtral, 16).kv_bytes_per_token == 512


def test_ring_allreduce_alpha_beta():
    fabric = Fabric(8, None, 8, 100e9, 2e-6, 10e9, 5e-6)
    # 2 (p-1)/p x M / bw + 2 (p-1) alpha = 2 x 3/4 x 1e9 / 100e9 + 6 x 2e-6 = 0.015 + 0.000012
    assert allreduce_time_s(1e9, 4, fabric, False, "ring") == pytest.approx(0.015012)
    assert allreduce_time_s(1e9, 1, fabric, False, "ring") == 0.0


def test_plain_and_dedup_copies_for_seed002_layout():
    # 64 experts, one per EP rank of 2 GPUs (tp_moe 2), 8 GPUs per node -> 4 experts per node.
    # A token's 2 experts are remote with probability 60/64 each, 2 shards each:
    # plain cross-node copies = 2 x 2 x 60/64 = 3.75.
    domains = tuple(g // 8 for g in range(128))
    traffic = layer_traffic(contiguous_map(64, 64), domains, 2, 2)
    assert traffic.plain_scaleout == pytest.approx(3.75)
    # node-dedup: expected remote nodes hit = 15 x (1 - C(60, 2) / C(64, 2)) = 15 x 0.1220 = 1.830
    assert traffic.dedup_scaleout == pytest.approx(15 * (1 - (60 * 59) / (64 * 63)))
    assert traffic.imbalance == pytest.approx(1.0)


def test_seed000_plan_figures():
    problem = load_problem(ROOT / "instances" / "moe10b-decode.json")
    result = evaluate(problem, load_plan(ROOT / "plans" / "seed000-tp2-ep4-pp4.json"))
    # KV per GPU: 32 sequences per DP rank x 10,752 tokens x 4 layers x 1,024 B (8 of 16 heads) = 1.409 GB
    assert result.stages[0].memory.kv_cache_bytes == pytest.approx(32 * 10752 * 4 * 1024)
    # decode is bounded by KV reads: at most 1.44e12 / (10,240 x 32,768) = 4.29 tokens/ms/GPU
    assert result.decode_tokens_per_ms_per_gpu < 1.44e12 / (10240 * 32768) / 1e3
    assert not result.feasible  # the 100 tokens/ms/GPU decode floor fails
    assert result.ttft_s < 10.0  # TTFT is far inside the SLO; the seed claimed 6-8 s


def test_seed002_plan_figures():
    problem = load_problem(ROOT / "instances" / "ep64-128gpu.json")
    result = evaluate(problem, load_plan(ROOT / "plans" / "seed002-ep64-tp2.json"))
    # 3.75 plain cross-node copies x 512 hidden x (2 B dispatch + 2 B combine) = 7,680 B per token per MoE layer
    assert result.cross_node_bytes_per_token_plain == pytest.approx(7680)
    assert result.gpus == 128 and result.nodes == 16
    assert result.feasible
