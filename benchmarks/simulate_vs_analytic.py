"""Analytic serving model (placer.serving) against the simulator (placer.simulate), on a grid of
(instance, plan, workload kind, load) points, including loads above 80% utilisation where the two
are expected to part. Prints one row per point: utilisation, mean TTFT and TPOT of both, errors in
% of the simulated figure, and the p99 TTFT of both.

    python benchmarks/simulate_vs_analytic.py [--requests 2000] [--seed 0] [--only aggregated|disaggregated]

Disaggregated rows (issue 12): the two-pool model (placer.serving_disagg) against the two-pool
simulator (placer.simulate_disagg) on a few prefill/decode plans, with throughput as a third figure.

Both sides use the same StepTimer (step times and KV capacity from the evaluator's cost model), so
a difference is a difference of scheduling, which is what the analytic model approximates.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from placer.costmodel.kvtransfer import kv_path
from placer.loading import load_plan
from placer.problem import Problem, load_problem
from placer.schema import DisaggregatedPlan, Parallelism, Plan
from placer.serving import StepTimer, serving_point
from placer.serving_disagg import DecodePool, DisaggModel, PrefillPool, pool_nodes
from placer.simulate import simulate
from placer.simulate_disagg import simulate_disaggregated
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


def _pool(gpus: int, tp: int, ep: int, replicas: int, layers: int, dp: int = 1) -> dict[str, object]:
    par = {"tp": tp, "ep": ep, "replicas": replicas, "dp_attn": dp}
    return {"gpus": gpus, "parallelism": par, "stages": [{"layers": [0, layers - 1]}]}


#: Disaggregated plans of the grid: name -> (instance, plan).
DISAGG_PLANS = {
    "mixtral 2P tp2 + 1D tp4": (
        "mixtral-8x7b-h100-serving",
        {"name": "2p1d", "gpus": 8, "prefill": _pool(4, 2, 2, 2, 32), "decode": _pool(4, 4, 4, 1, 32)},
    ),
    "mixtral 1P tp4 + 2D tp2": (
        "mixtral-8x7b-h100-serving",
        {"name": "1p2d", "gpus": 8, "prefill": _pool(4, 4, 4, 1, 32), "decode": _pool(4, 2, 2, 2, 32)},
    ),
    "deepseek-v3 1P dp8 + 1D dp8": (
        "deepseek-v3-h200-serving",
        {"name": "1p1d", "gpus": 16, "prefill": _pool(8, 1, 8, 1, 61, 8), "decode": _pool(8, 1, 8, 1, 61, 8)},
    ),
}


@dataclass(frozen=True)
class DisaggCase:
    """One disaggregated grid point: a plan of DISAGG_PLANS, lengths, a kind and a load."""

    plan: str
    prompt_mean: float | None  # None: every prompt is the instance's
    output_max: int
    output_mean: float | None
    kind: str
    load: float

    def label(self) -> str:
        return f"{self.plan} isl {self.prompt_mean or 'max'} osl {self.output_mean or self.output_max}"


@dataclass(frozen=True)
class DisaggRow:
    case: DisaggCase
    prefill_utilisation: float
    stable: bool
    ttft: tuple[float, float]  # analytic, simulated (s)
    tpot: tuple[float, float]
    throughput: tuple[float, float]  # output tokens/s
    ttft_p99: tuple[float, float]


def compare_disagg(case: DisaggCase, requests: int, seed: int) -> DisaggRow:
    instance, document = DISAGG_PLANS[case.plan]
    base = load_problem(ROOT / "instances" / f"{instance}.json")
    w = base.workload
    prompt = w.prompt_tokens
    if case.prompt_mean is not None:
        prompt = prompt.model_copy(update={"min": 1, "max": round(2 * case.prompt_mean), "mean": case.prompt_mean})
    extra = {"concurrency": int(case.load)} if case.kind == "concurrency" else {"rate_rps": case.load}
    workload = w.model_copy(
        update={
            "kind": case.kind,
            "concurrency": None,
            "prompt_tokens": prompt,
            "output_tokens": case.output_max,
            "output_tokens_mean": case.output_mean,
            **extra,
        }
    )
    problem = base.replace(workload=workload)
    plan = DisaggregatedPlan.model_validate(document)
    pre, dec = PrefillPool(problem, plan.pool_plan("prefill")), DecodePool(problem, plan.pool_plan("decode"))
    model = DisaggModel(problem, pre, dec, kv_path(problem.fabric, *pool_nodes(plan, problem.fabric)))
    point = model.point()
    sim = simulate_disaggregated(problem, plan, requests=requests, seed=seed, decode_timer=dec.timer)
    run = sim.run
    return DisaggRow(
        case,
        point.prefill_utilisation,
        point.stable,
        (point.ttft_s, run.ttft.mean),
        (point.tpot_s, run.tpot.mean),
        (point.output_tokens_per_s, sim.output_tokens_per_s),
        (point.ttft_percentiles_s.get("p99", float("nan")), run.ttft.p99),
    )


def disagg_grid() -> list[DisaggCase]:
    cases = []
    mix = (2000.0, 400, 200.0)
    for plan in ("mixtral 2P tp2 + 1D tp4", "mixtral 1P tp4 + 2D tp2"):
        cases += [DisaggCase(plan, *mix, "concurrency", n) for n in (8, 32, 64, 128)]
        cases += [DisaggCase(plan, *mix, "rate", r) for r in (5.0, 15.0, 25.0)]
    ds = "deepseek-v3 1P dp8 + 1D dp8"
    cases += [DisaggCase(ds, None, 500, None, "concurrency", n) for n in (32, 170)]
    cases += [DisaggCase(ds, 2000.0, 1000, 500.0, "concurrency", n) for n in (32, 170)]
    cases += [DisaggCase(ds, 2000.0, 1000, 500.0, "rate", r) for r in (2.0, 6.0)]
    return cases


def print_disagg(requests: int, seed: int) -> None:
    print(
        f"{'disaggregated plan, lengths':48} {'kind':5} {'load':>6} {'util_p':>6}  {'TTFT ms an/sim':>17} {'err':>7}  "
        f"{'TPOT ms an/sim':>15} {'err':>7}  {'tok/s an/sim':>15} {'err':>7}  {'p99 TTFT an/sim':>17}"
    )
    for case in disagg_grid():
        r = compare_disagg(case, requests, seed)
        if not r.stable:
            print(f"{case.label():48} {case.kind[:5]:5} {case.load:6.4g}  unstable by the analytic model")
            continue
        errors = [a / s - 1 for a, s in (r.ttft, r.tpot, r.throughput)]
        print(
            f"{case.label():48} {case.kind[:5]:5} {case.load:6.4g} {r.prefill_utilisation:6.2f}  "
            f"{r.ttft[0] * 1e3:8.1f} {r.ttft[1] * 1e3:8.1f} {errors[0]:+7.1%}  "
            f"{r.tpot[0] * 1e3:7.2f} {r.tpot[1] * 1e3:7.2f} {errors[1]:+7.1%}  "
            f"{r.throughput[0]:7.0f} {r.throughput[1]:7.0f} {errors[2]:+7.1%}  "
            f"{r.ttft_p99[0] * 1e3:8.1f} {r.ttft_p99[1] * 1e3:8.1f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("aggregated", "disaggregated"), default=None)
    args = parser.parse_args()
    if args.only != "aggregated":
        print_disagg(args.requests, args.seed)
    if args.only == "disaggregated":
        return
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
