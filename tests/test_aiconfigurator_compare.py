"""The aiconfigurator comparison's reading of a disaggregated row (benchmarks/aiconfigurator_compare.py).

The rows below are aiconfigurator 0.12.0's top disaggregated configurations for two of the three
settings (`cli default --serving-mode disagg`), cut to the columns the benchmark reads. No
aiconfigurator install is needed: these tests pin how placer turns such a row into pools and how
it restates aiconfigurator's rate matching.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    path = ROOT / "benchmarks" / "aiconfigurator_compare.py"
    spec = importlib.util.spec_from_file_location("aiconfigurator_compare", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


BENCH = _bench()

# DeepSeek-V3 on 16 x H200 (1 prefill worker tp1 dp8 ep8, 1 decode worker tp8 ep8 at batch 192).
DEEPSEEK_ROW = {
    "concurrency": "192", "request_rate": "7.658", "request_latency": "23726.136", "ttft": "1692.292",
    "tpot": "44.156", "num_total_gpus": "16", "replicas": "1",
    "(p)workers": "1", "(p)bs": "1", "(p)seq/s/worker": "8.509", "(p)tp": "1", "(p)pp": "1", "(p)dp": "8",
    "(p)moe_tp": "1", "(p)moe_ep": "8",
    "(d)workers": "1", "(d)bs": "192", "(d)seq/s/worker": "8.714", "(d)tp": "8", "(d)pp": "1", "(d)dp": "1",
    "(d)moe_tp": "1", "(d)moe_ep": "8",
}  # fmt: skip

# Mixtral-8x7B on 8 x H100 (2 prefill workers tp1 dp2 etp2, 1 decode worker tp4 etp4 at batch 336).
MIXTRAL_ROW = {
    "concurrency": "336", "request_rate": "18.701", "request_latency": "16857.70", "ttft": "327.829",
    "tpot": "33.126", "num_total_gpus": "8", "replicas": "1",
    "(p)workers": "2", "(p)bs": "1", "(p)seq/s/worker": "10.981", "(p)tp": "1", "(p)pp": "1", "(p)dp": "2",
    "(p)moe_tp": "2", "(p)moe_ep": "1",
    "(d)workers": "1", "(d)bs": "336", "(d)seq/s/worker": "20.327", "(d)tp": "4", "(d)pp": "1", "(d)dp": "1",
    "(d)moe_tp": "4", "(d)moe_ep": "1",
}  # fmt: skip


@pytest.mark.parametrize("row", [DEEPSEEK_ROW, MIXTRAL_ROW])
def test_rate_is_the_smaller_degraded_capacity(row):
    """aiconfigurator's reported rate is min(0.9 x prefill capacity, 0.92 x decode capacity) of
    its own per-worker seq/s; the benchmark's restatement must reproduce it to its rounding."""
    op = BENCH._aic_operating_point(row, 500)
    expected = min(0.9 * op["prefill_capacity_rps"], 0.92 * op["decode_capacity_rps"])
    assert op["rate_rps"] == pytest.approx(expected, abs=2e-3)
    # Little's law on its own figures: fewer requests in decode than the batch it states
    assert op["in_decode_little"] < op["decode_batch_stated"] == int(row["(d)bs"])


def test_pools_follow_the_row():
    """Workers become pool replicas; aiconfigurator's tp/dp/etp/ep become placer's tp/dp_attn/tp_moe/ep."""
    prefill = BENCH._pool_parallelism(MIXTRAL_ROW, "p")
    decode = BENCH._pool_parallelism(MIXTRAL_ROW, "d")
    assert (prefill.tp, prefill.dp_attn, prefill.tp_moe, prefill.ep, prefill.replicas) == (1, 2, 2, 1, 2)
    assert (decode.tp, decode.dp_attn, decode.tp_moe, decode.ep, decode.replicas) == (4, 1, 4, 1, 1)
    assert prefill.gpus + decode.gpus == int(MIXTRAL_ROW["num_total_gpus"])


def test_same_rate_gives_the_same_throughput():
    """Open loop at aiconfigurator's rate: placer's tokens/s per GPU is that rate x OSL / GPUs
    whenever its pools serve the rate (DeepSeek-V3's do), so only TTFT and TPOT differ."""
    setting = BENCH.SETTINGS[0]
    ours = BENCH.placer_at_disagg(setting, DEEPSEEK_ROW, "rate")
    assert ours["gpus"] == 16 and ours["plan"]["mode"] == "disaggregated"
    assert ours["point"]["stable"]
    assert ours["output_tokens_per_s_per_gpu"] == pytest.approx(7.658 * setting.osl / 16)
