"""Measure GEMM, attention and HBM-copy times on this GPU for ``placer calibrate``.

Usage: ``python benchmarks/microbench.py --model models/deepseek-v3.json --out measurements.json``
then ``placer calibrate measurements.json --hardware h100-sxm --out my-h100.json``.

Times GEMMs at the model's own shapes (attention projections, dense FFN, one expert; many tokens
for prefill, a decode batch for decode), a causal attention core, and large device-to-device
copies for HBM bandwidth. Needs PyTorch with CUDA; the tests never import it. FP8 GEMMs use
``torch._scaled_mm`` where the GPU supports it, else the entry is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _require_cuda():
    try:
        import torch
    except ImportError:
        sys.exit("microbench needs PyTorch (pip install torch); it is not installed here")
    if not torch.cuda.is_available():
        sys.exit("microbench needs a CUDA GPU; torch.cuda.is_available() is False")
    return torch


def _time_us(torch, fn, repeats: int) -> float:
    """Median time of ``fn`` in microseconds over ``repeats`` CUDA-event-timed runs, after warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    times.sort()
    return times[len(times) // 2]


def gemm_shapes(model: dict) -> list[tuple[str, int, int]]:
    """(label, n, k) weight shapes of the model's GEMMs."""
    h = model["hidden_size"]
    shapes = [("o_proj", h, h)]
    if model.get("ffn_size"):
        shapes.append(("dense_up", model["ffn_size"], h))
        shapes.append(("dense_down", h, model["ffn_size"]))
    moe = model.get("moe")
    if moe:
        shapes.append(("expert_up", 2 * moe["expert_ffn_size"], h))
        shapes.append(("expert_down", h, moe["expert_ffn_size"]))
    return shapes


def measure(model: dict, prefill_tokens: int, decode_tokens: int, repeats: int) -> list[dict]:
    torch = _require_cuda()
    out: list[dict] = []
    dev = "cuda"
    for label, n, k in gemm_shapes(model):
        for phase, m in (("prefill", prefill_tokens), ("decode", decode_tokens)):
            a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            b = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
            t = _time_us(torch, lambda a=a, b=b: a @ b.t(), repeats)
            out.append(
                {
                    "operation": "gemm",
                    "phase": phase,
                    "dtype": "bf16",
                    "time_us": t,
                    "shape": {"m": m, "n": n, "k": k},
                    "label": label,
                }
            )
            if hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn"):
                try:
                    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
                    one = torch.ones((), device=dev)
                    t8 = _time_us(
                        torch,
                        lambda a8=a8, b8=b8, one=one: torch._scaled_mm(
                            a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16
                        ),
                        repeats,
                    )
                    out.append(
                        {
                            "operation": "gemm",
                            "phase": phase,
                            "dtype": "fp8",
                            "time_us": t8,
                            "shape": {"m": m, "n": n, "k": k},
                            "label": label,
                        }
                    )
                except (RuntimeError, TypeError):
                    pass  # no FP8 tensor cores or an older PyTorch: skip the FP8 entry
    heads, dim = 32, 128
    for seq in (1024, 4096):
        q = torch.randn(1, heads, seq, dim, device=dev, dtype=torch.bfloat16)
        t = _time_us(
            torch, lambda q=q: torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True), repeats
        )
        out.append(
            {
                "operation": "attention",
                "phase": "prefill",
                "dtype": "bf16",
                "time_us": t,
                "shape": {
                    "batch": 1,
                    "heads": heads,
                    "q_len": seq,
                    "kv_len": seq,
                    "qk_dim": dim,
                    "v_dim": dim,
                    "causal": True,
                },
            }
        )
    for size in (256 << 20, 1 << 30):
        src = torch.empty(size, dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        t = _time_us(torch, lambda s=src, d=dst: d.copy_(s), repeats)
        out.append(
            {"operation": "memcpy", "phase": "prefill", "dtype": "bf16", "time_us": t, "shape": {"bytes": 2 * size}}
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GEMM / attention / HBM microbenchmarks for placer calibrate")
    parser.add_argument(
        "--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "deepseek-v3.json"
    )
    parser.add_argument("--out", type=Path, default=Path("measurements.json"))
    parser.add_argument("--prefill-tokens", type=int, default=8192)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    model = json.loads(args.model.read_text())
    torch = _require_cuda()
    rows = measure(model, args.prefill_tokens, args.decode_tokens, args.repeats)
    doc = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "model": model.get("name"),
        "measurements": rows,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(rows)} measurements to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
