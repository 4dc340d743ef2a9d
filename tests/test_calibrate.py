"""placer calibrate: synthetic kernel timings from known factors (through the cost model's own
op-time function) are fitted back; bad files give a clear error and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from placer.calibrate import calibrated_profile, fit_efficiency, predicted_time_s, read_measurements, to_measurement
from placer.errors import InputError
from placer.loading import load_hardware

TRUE = {
    "gemm_mfu": 0.52,
    "gemm_mfu_decode": 0.31,
    "attention_mfu": 0.44,
    "attention_mfu_decode": 0.57,
    "hbm_bandwidth_utilisation": 0.77,
}


def _records():
    rows = []
    for m in (2048, 4096, 8192, 16384):  # compute-bound prefill GEMMs (DeepSeek-V3 shapes)
        for n, k in ((7168, 2048), (4096, 7168), (7168, 16384)):
            rows.append({"operation": "gemm", "phase": "prefill", "dtype": "fp8", "shape": {"m": m, "n": n, "k": k}})
    for m in (512, 1024):  # decode batches large enough to be compute-bound
        rows.append({"operation": "gemm", "phase": "decode", "dtype": "bf16", "shape": {"m": m, "n": 7168, "k": 7168}})
    rows.append(
        {"operation": "gemm", "phase": "decode", "dtype": "fp8", "shape": {"m": 8, "n": 7168, "k": 2048}}
    )  # memory-bound
    for seq in (2048, 4096, 8192):
        rows.append(
            {
                "operation": "attention",
                "phase": "prefill",
                "shape": {
                    "batch": 2,
                    "heads": 32,
                    "q_len": seq,
                    "kv_len": seq,
                    "qk_dim": 128,
                    "v_dim": 128,
                    "causal": True,
                },
            }
        )
        rows.append(
            {
                "operation": "attention",
                "phase": "decode",
                "shape": {
                    "batch": 64,
                    "heads": 128,
                    "q_len": 4,
                    "kv_len": seq,
                    "qk_dim": 576,
                    "v_dim": 512,
                    "kv_heads": 1,
                },
            }
        )
    for size in (1e8, 1e9, 4e9):
        rows.append({"operation": "memcpy", "shape": {"bytes": size}})
    return rows


def _synthetic(noise: float, seed: int = 0):
    hw = load_hardware("h100-sxm")
    truth = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update=TRUE)})
    rng = np.random.default_rng(seed)
    rows = []
    for row in _records():
        m = to_measurement(dict(row, time_us=1.0), "x", "synthetic")
        t = predicted_time_s(m, truth) * float(np.exp(rng.normal(0.0, noise))) if noise else predicted_time_s(m, truth)
        rows.append(dict(row, time_us=t * 1e6))
    return hw, rows


def _write(tmp_path, rows, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"measurements": rows}))
    return path


def test_fit_recovers_known_factors_exactly(tmp_path):
    hw, rows = _synthetic(0.0)
    result = fit_efficiency(read_measurements(_write(tmp_path, rows)), hw)
    for name, value in TRUE.items():
        assert result.factors[name] == pytest.approx(value, rel=1e-9), name
    # the memory-bound decode GEMM counts towards HBM utilisation, not towards its MFU
    assert result.counts["gemm_mfu_decode"] == 2


def test_fit_with_noise_stays_close(tmp_path):
    hw, rows = _synthetic(0.05, seed=3)
    result = fit_efficiency(read_measurements(_write(tmp_path, rows)), hw)
    for name, value in TRUE.items():
        assert result.factors[name] == pytest.approx(value, rel=0.08), name


def test_csv_input_and_profile_source(tmp_path):
    hw, rows = _synthetic(0.0)
    lines = ["operation,phase,dtype,time_us,m,n,k,bytes"]
    for r in rows:
        if r["operation"] == "gemm":
            s = r["shape"]
            lines.append(f"gemm,{r['phase']},{r['dtype']},{r['time_us']},{s['m']},{s['n']},{s['k']},")
        elif r["operation"] == "memcpy":
            lines.append(f"memcpy,,,{r['time_us']},,,,{r['shape']['bytes']}")
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    profile, result = calibrated_profile(path, hw)
    assert profile.efficiency.gemm_mfu == pytest.approx(TRUE["gemm_mfu"], rel=1e-9)
    assert profile.efficiency.hbm_bandwidth_utilisation == pytest.approx(TRUE["hbm_bandwidth_utilisation"], rel=1e-9)
    assert profile.efficiency.attention_mfu == hw.efficiency.attention_mfu  # no attention rows: unchanged
    assert "m.csv" in profile.sources["efficiency"]


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([{"operation": "conv", "time_us": 1, "shape": {}}], "measurements[0].operation"),
        ([{"operation": "gemm", "time_us": -4, "shape": {"m": 1, "n": 1, "k": 1}}], "measurements[0].time_us"),
        ([{"operation": "gemm", "time_us": 4, "shape": {"m": 1, "k": 1}}], "measurements[0].shape.n"),
        (
            [{"operation": "gemm", "time_us": 4, "dtype": "fp7", "shape": {"m": 1, "n": 1, "k": 1}}],
            "measurements[0].dtype",
        ),
    ],
)
def test_bad_measurements_name_the_field(tmp_path, rows, field):
    with pytest.raises(InputError) as info:
        read_measurements(_write(tmp_path, rows))
    assert field in info.value.message


def test_cli_exit_code_2_and_nothing_written(tmp_path):
    bad = _write(tmp_path, [{"operation": "gemm", "time_us": "fast", "shape": {"m": 1, "n": 1, "k": 1}}])
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, "-m", "placer", "calibrate", str(bad), "--hardware", "h100-sxm", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "measurements[0].time_us" in proc.stderr
    assert not out.exists()


def test_cli_writes_a_loadable_profile(tmp_path):
    hw, rows = _synthetic(0.0)
    out = tmp_path / "fitted.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "placer",
            "calibrate",
            str(_write(tmp_path, rows)),
            "--hardware",
            "h100-sxm",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    fitted = load_hardware(str(out))
    assert fitted.efficiency.attention_mfu_decode == pytest.approx(TRUE["attention_mfu_decode"], rel=1e-9)
