"""Solve every shipped instance with every backend; print build time, solve time and the plan.

    python benchmarks/solve_times.py [--backends cpsat,milp,exhaustive] [--no-variants]

For each instance: ``build s`` is a standalone :func:`build_formulation` at the instance's own GPU
cap (every configuration costed), ``in-solve build s`` the solve's own build (warm start included,
at the cap the warm start allows), ``wall s`` the whole solve. Besides the shipped instances it
runs DeepSeek-V3 with a 1,024-GPU budget (128 nodes), the scale issue 10 asks to prove in under
30 s. Wall-clock figures: note the machine's load next to them. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from placer.errors import InputError
from placer.formulation.data import build_formulation
from placer.loading import load_instance
from placer.problem import Problem, build_problem, load_problem
from placer.schema import DisaggregatedPlan
from placer.solve import solve

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "instances" / "deepseek-v3-h800.json"


def variant(path: Path, name: str, slo: dict[str, object], cluster: dict[str, object]) -> Problem:
    """``path`` with some SLO and cluster fields replaced (written to a scratch file, then loaded)."""
    data = json.loads(path.read_text())
    data["slo"].update(slo)
    data["cluster"].update(cluster)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / f"{name}.json"
        copy.write_text(json.dumps(data))
        return build_problem(load_instance(copy), path.parent, name)


def problems(variants: bool) -> Iterator[tuple[str, Problem]]:
    for path in sorted((ROOT / "instances").glob("*.json")):
        yield path.stem, load_problem(path)
    if variants:
        yield "deepseek-v3-1024gpu", variant(FLAGSHIP, "deepseek-v3-1024gpu", {"max_gpus": 1024}, {"num_nodes": 128})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="cpsat,milp,exhaustive")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--no-variants", action="store_true", help="shipped instances only")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        f"{'instance':<24} {'configs':>7} {'build s':>8} {'backend':<11} {'status':<11} {'GPUs':>5} "
        f"{'pp tp dp ep tpm R':<18} {'objective':>12} {'gap':>7} {'in-solve build s':>16} {'wall s':>7}"
    )
    for name, problem in problems(not args.no_variants):
        started = time.perf_counter()
        data = build_formulation(problem)
        build_s = time.perf_counter() - started
        head = f"{name:<24} {len(data.configs):>7} {build_s:8.2f}"
        for backend in args.backends.split(","):
            started = time.perf_counter()
            try:
                result = solve(problem, backend=backend, time_limit_s=args.time_limit)
            except ImportError as exc:  # a backend whose solver is not installed
                print(f"{head} {backend:<11} unavailable: {exc}")
                continue
            except InputError as exc:  # an instance this version of solve refuses (with its reason)
                print(f"{head} {backend:<11} refused: {exc.message.splitlines()[0][:90]}")
                break
            wall = time.perf_counter() - started
            in_solve_text = f"{result.search.build_s:16.2f}"
            if result.plan is None:
                print(
                    f"{head} {backend:<11} {result.status.value:<11} {'—':>5} {'':<18} {'':>12} "
                    f"{'':>7} {in_solve_text} {wall:7.2f}"
                )
                continue
            plan = result.plan
            if isinstance(plan, DisaggregatedPlan):  # two pools: prefill's degrees + decode's
                pools = (plan.prefill.parallelism, plan.decode.parallelism)
                degrees = " + ".join(f"{p.pp} {p.tp} {p.dp_attn} {p.ep} {p.tp_moe} {p.replicas}" for p in pools)
            else:
                p = plan.parallelism
                degrees = f"{p.pp} {p.tp} {p.dp_attn} {p.ep} {p.tp_moe} {p.replicas}"
            gap = f"{result.gap:.2%}" if result.gap is not None else "—"
            print(
                f"{head} {backend:<11} {result.status.value:<11} {result.plan.gpus:>5} {degrees:<18} "
                f"{result.objective:>12.6g} {gap:>7} {in_solve_text} {wall:7.2f}"
            )


if __name__ == "__main__":
    main()
