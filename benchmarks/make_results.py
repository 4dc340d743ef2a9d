"""Regenerate ``results/``: every shipped instance solved on its own hardware and on the
comparison set, with plan JSON, Markdown reports, pictures and ``compare.md`` per instance.

    python benchmarks/make_results.py [--time-limit 120] [--jobs 1] [--hardware instance,h100-sxm,...]

Deterministic: CP-SAT with one worker and seed 0 per solve (solves run in parallel processes,
each independent); files leave out wall-clock times, so a diff shows only answers that moved.
A solve stopped by the time limit is recorded with its status and gap. ``results/fidelity.md``
and anything else not written here are left alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from placer.compare import SolveSettings, compare, parse_hardware_list, parse_sweep
from placer.report.comparison import write_comparison

ROOT = Path(__file__).resolve().parents[1]
HARDWARE = "instance,h100-sxm,h200,b200,mi300x"
#: instances that also get a GPUs-vs-SLO frontier (fast ones: the sweep multiplies the solves)
SWEEPS = {"moe10b": "ttft_s=0.5,1,2,5,10", "mixtral-8x7b-h100": "ttft_s=1,2,5,10"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per solve (wall clock)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="solves in parallel (1: a full core per solve, so the time limit is not eaten by contention)",
    )
    parser.add_argument("--hardware", default=HARDWARE)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--only", default=None, help="comma-separated instance names")
    args = parser.parse_args()
    hardware = parse_hardware_list(args.hardware)
    settings = SolveSettings(time_limit_s=args.time_limit, workers=1, seed=0)
    started = time.perf_counter()
    paths = sorted((ROOT / "instances").glob("*.json"))
    if args.only:
        wanted = set(args.only.split(","))
        paths = [p for p in paths if p.stem in wanted]
    for path in paths:
        t0 = time.perf_counter()
        sweep = parse_sweep(SWEEPS[path.stem]) if path.stem in SWEEPS else None
        comparison = compare(path, hardware, settings, sweep, jobs=args.jobs)
        write_comparison(comparison, args.out)
        statuses = ", ".join(f"{e.problem.hardware.name}: {e.result.status.value}" for e in comparison.entries)
        print(f"{path.stem:<22} {time.perf_counter() - t0:6.1f} s  {statuses}", flush=True)
    print(f"results/ regenerated in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
