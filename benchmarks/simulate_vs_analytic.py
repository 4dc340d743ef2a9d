"""Analytic serving model (placer.serving) against the simulator (placer.simulate), on a grid of
(instance, plan, workload kind, load) points, including loads above 80% utilisation where the two
are expected to part. Prints one row per point: utilisation, mean TTFT and TPOT of both, errors in
% of the simulated figure, and the p99 TTFT of both.

    python benchmarks/simulate_vs_analytic.py [--requests 2000] [--seed 0]

Both sides use the same StepTimer (step times and KV capacity from the evaluator's cost model), so
a difference is a difference of scheduling, which is what the analytic model approximates.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from placer.loading import load_plan
from placer.problem import Problem, load_problem
from placer.schema import Parallelism, Plan
from placer.serving import StepTimer, serving_point
from placer.simulate import simulate
from placer.strategy import plan_from_starts

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One grid point: a serving copy of a shipped instance, a plan, a kind and a load."""

    instance: str
    plan: str  # a file under plans/, or "tp.ep.replicas" for a one-stage plan
    prompt_mean: float | None  # None: every prompt is the instance's longest
    output_max: int
    output_mean: float | None  # None: every output is output_max
    kind: str  # concurrency | rate
    load: float  # concurrency (whole deployment) or rate_rps (whole deployment)

    def label(self) -> str:
        lengths = f"isl {self.prompt_mean or 'max'} osl {self.output_mean or self.output_max}"
        return f"{self.instance} {self.plan} {lengths}"


def build(case: Case) -> tuple[Problem, Plan]:
    base = load_problem(ROOT / "instances" / f"{case.instance}.json")
    w = base.workload
    prompt = w.prompt_tokens.model_copy(update={"mean": case.prompt_mean})
    extra = {"concurrency": int(case.load)} if case.kind == "concurrency" else {"rate_rps": case.load}
    workload = w.model_copy(
        update={
            "kind": case.kind,
            "batch_size": 1,
            "prompt_tokens": prompt,
            "output_tokens": case.output_max,
            "output_tokens_mean": case.output_mean,
            **extra,
        }
    )
    problem = base.replace(workload=workload)
    if case.plan.endswith(".json"):
        plan = load_plan(ROOT / "plans" / case.plan)
    else:
        tp, ep, replicas = (int(v) for v in case.plan.split("."))
        plan = plan_from_starts(problem, Parallelism(tp=tp, ep=ep, replicas=replicas), (0,), "grid")
    return problem, plan


@dataclass(frozen=True)
class Row:
    case: Case
    utilisation: float
    kv_fraction: float
    stable: bool
    ttft_analytic_s: float
    ttft_sim_s: float
    tpot_analytic_s: float
    tpot_sim_s: float
    ttft_p99_analytic_s: float
    ttft_p99_sim_s: float
    seconds: float

    @property
    def ttft_error(self) -> float:
        return self.ttft_analytic_s / self.ttft_sim_s - 1

    @property
    def tpot_error(self) -> float:
        return self.tpot_analytic_s / self.tpot_sim_s - 1


def compare(case: Case, requests: int, seed: int) -> Row:
    problem, plan = build(case)
    timer = StepTimer(problem, plan)
    point = serving_point(problem, plan, timer)
    start = time.perf_counter()
    sim = simulate(problem, plan, requests=requests, seed=seed, timer=timer)
    return Row(
        case,
        point.utilisation,
        point.kv_tokens_used / point.kv_capacity_tokens,
        point.stable,
        point.ttft_s,
        sim.run.ttft.mean,
        point.tpot_s,
        sim.run.tpot.mean,
        point.ttft_percentiles_s["p99"],
        sim.run.ttft.p99,
        time.perf_counter() - start,
    )


MIX = ("mixtral-8x7b-h100", "2.2.2", None, 1024, 512.0)
MIX_FIXED = ("mixtral-8x7b-h100", "2.2.2", None, 512, None)
MIX_TP4 = ("mixtral-8x7b-h100", "4.4.1", 2048.0, 1024, 512.0)
MOE = ("moe10b", "seed000-tp2-ep4-pp4.json", None, 1024, 512.0)
MOE_SHORT = ("moe10b", "seed000-tp2-ep4-pp4.json", 2048.0, 1024, 512.0)


def grid() -> list[Case]:
    """The benchmark's grid: the test's points and loads up to saturation."""
    cases = []
    for setting, loads in (
        (MIX, (8, 32, 64, 128, 160, 200)),
        (MIX_FIXED, (8, 64, 128)),
        (MIX_TP4, (4, 16, 48, 96, 128)),
        (MOE, (16, 64, 256, 1024)),
        (MOE_SHORT, (16, 64, 256, 1024)),
    ):
        cases += [Case(*setting, "concurrency", n) for n in loads]
    for setting, rates in (
        (MIX, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)),
        (MIX_TP4, (1.0, 2.0, 4.0, 6.0)),
        (MOE, (20.0, 60.0, 100.0)),
        (MOE_SHORT, (50.0, 200.0, 400.0)),
    ):
        cases += [Case(*setting, "rate", rate) for rate in rates]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    header = (
        f"{'instance, plan, lengths':58} {'kind':5} {'load':>7} {'util':>5} {'kv':>5}  "
        f"{'TTFT ms an/sim':>17} {'err':>7}  {'TPOT ms an/sim':>15} {'err':>7}  {'p99 TTFT an/sim':>17}"
    )
    print(header)
    for case in grid():
        r = compare(case, args.requests, args.seed)
        if not r.stable:
            print(f"{case.label():58} {case.kind[:5]:5} {case.load:7.4g}  unstable by the analytic model")
            continue
        print(
            f"{case.label():58} {case.kind[:5]:5} {case.load:7.4g} {r.utilisation:5.2f} {r.kv_fraction:5.2f}  "
            f"{r.ttft_analytic_s * 1e3:8.1f} {r.ttft_sim_s * 1e3:8.1f} {r.ttft_error:+7.1%}  "
            f"{r.tpot_analytic_s * 1e3:7.2f} {r.tpot_sim_s * 1e3:7.2f} {r.tpot_error:+7.1%}  "
            f"{r.ttft_p99_analytic_s * 1e3:8.1f} {r.ttft_p99_sim_s * 1e3:8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
