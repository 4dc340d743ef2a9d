"""Solve every shipped instance with every backend and print status, plan and wall time.

    python benchmarks/solve_times.py [--backends cpsat,milp,exhaustive]

Prints a table; not part of the default test run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from placer.problem import load_problem
from placer.solve import solve

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="cpsat,milp,exhaustive")
    parser.add_argument("--time-limit", type=float, default=60.0)
    args = parser.parse_args()
    print(
        f"{'instance':<24} {'backend':<11} {'status':<11} {'GPUs':>5} {'pp tp dp ep tpm R':<18} "
        f"{'objective':>12} {'gap':>7} {'wall s':>7}"
    )
    for path in sorted((ROOT / "instances").glob("*.json")):
        problem = load_problem(path)
        for backend in args.backends.split(","):
            started = time.perf_counter()
            try:
                result = solve(problem, backend=backend, time_limit_s=args.time_limit)
            except ImportError as exc:  # a backend whose solver is not installed
                print(f"{path.stem:<24} {backend:<11} unavailable: {exc}")
                continue
            wall = time.perf_counter() - started
            if result.plan is None:
                print(
                    f"{path.stem:<24} {backend:<11} {result.status.value:<11} {'—':>5} {'':<18} {'':>12} "
                    f"{'':>7} {wall:7.2f}"
                )
                continue
            p = result.plan.parallelism
            degrees = f"{p.pp} {p.tp} {p.dp_attn} {p.ep} {p.tp_moe} {p.replicas}"
            gap = f"{result.gap:.2%}" if result.gap is not None else "—"
            print(
                f"{path.stem:<24} {backend:<11} {result.status.value:<11} {result.plan.gpus:>5} {degrees:<18} "
                f"{result.objective:>12.6g} {gap:>7} {wall:7.2f}"
            )


if __name__ == "__main__":
    main()
