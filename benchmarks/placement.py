"""DeepSeek-V3-shaped expert placement: placer against EPLB (hierarchical and global), in-sample
and on held-out tokens.

58 MoE layers x 256 experts, top-8, 8 groups of which 4 per token; 8 GPUs per node (64 GPUs by
default: 8 nodes, 5 slots = 4 + 1 redundant). Routing cases, from the seeded synthetic generator
(each layer's traces drawn once, then split: the first ``--tokens`` are the fit window the
methods see, the next ``--test-tokens`` the held-out window):

* no co-activation: Zipf 0.3, group-limited top-k, traces known;
* planted clusters: the same plus 32 planted clusters of 8 experts at affinity 0.5;
* loads only: Zipf 0.6, group-limited top-k; the methods see only the fit window's loads (what
  SGLang's ``logical_count`` gives) and the declared groups.

Every method is scored by one implementation (``placer.placement.metrics.placement_metrics``):
max/mean GPU load of the worst layer and node-deduplicated cross-node copies per token
(local-first replica choice, mean over layers), on the fit tokens (in-sample) and on the held-out
tokens. ``even`` is the worst layer's max/mean on the held-out tokens when each physical slot takes
an equal share of its expert's tokens wherever they come from (EPLB's own view, duplicates on one
GPU counted twice), for comparison. Runtimes are wall-clock on a shared machine and noisy.

    python benchmarks/placement.py [--layers 58] [--gpus 64] [--time-limit S] [--case loads-only]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from placer.backends.placement import node_solver
from placer.placement.baselines import eplb_global, eplb_hierarchical
from placer.placement.data import LayerPlacementProblem
from placer.placement.metrics import placement_metrics
from placer.placement.planner import place_layers
from placer.routing.stats import stats_from_loads, stats_from_traces
from placer.routing.synthetic import planted_clusters, synthetic_traces
from placer.stopping import StopToken

EXPERTS, TOP_K, GROUPS, GROUPS_PER_TOKEN, GPUS_PER_NODE = 256, 8, 8, 4, 8


@dataclass(frozen=True)
class Case:
    name: str
    zipf: float
    clusters: int
    affinity: float
    loads_only: bool


CASES = (
    Case("no co-activation", 0.3, 0, 0.0, False),
    Case("planted clusters", 0.3, 32, 0.5, False),
    Case("loads only", 0.6, 0, 0.0, True),
)


def windows(case: Case, layers: int, fit: int, test: int, seed: int):  # type: ignore[no-untyped-def]
    """(fit stats as the methods see them, fit stats with traces, held-out stats with traces)."""
    rng = np.random.default_rng(seed)
    group = np.arange(EXPERTS) // (EXPERTS // GROUPS)
    clusters = planted_clusters(EXPERTS, case.clusters, rng) if case.clusters > 1 else None
    traces = [
        synthetic_traces(EXPERTS, TOP_K, fit + test, rng, case.zipf, clusters, case.affinity, group, GROUPS_PER_TOKEN)
        for _ in range(layers)
    ]
    extra = {"expert_group": group, "groups_per_token": GROUPS_PER_TOKEN}
    fit_stats = stats_from_traces([t[:fit] for t in traces], EXPERTS, "fit", **extra)
    test_stats = stats_from_traces([t[fit:] for t in traces], EXPERTS, "test", **extra)
    seen = (
        stats_from_loads([la.loads for la in fit_stats.layers], TOP_K, "fit loads", **extra)
        if case.loads_only
        else fit_stats
    )
    return seen, fit_stats, test_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=58)
    parser.add_argument("--tokens", type=int, default=4096, help="fit-window tokens per layer")
    parser.add_argument("--test-tokens", type=int, default=4096, help="held-out tokens per layer")
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--slots", type=int, default=None, help="slots per GPU (default: ceil(256/gpus) + 1)")
    parser.add_argument("--target", type=float, default=1.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["none", "cpsat", "milp"], default="none")
    parser.add_argument("--layer-time", type=float, default=0.5, help="placer work budget per layer [s]")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="wall-clock limit of placer over all layers [s] (per case)"
    )
    parser.add_argument("--case", choices=[c.name.split()[0] for c in CASES], default=None)
    args = parser.parse_args()
    slots = args.slots or -(-EXPERTS // args.gpus) + 1
    rank_node = np.arange(args.gpus) // GPUS_PER_NODE
    solver = node_solver(None if args.backend == "none" else args.backend)
    layer_work = args.layer_time if args.time_limit is None else args.time_limit * 0.5 / args.layers
    print(
        f"DeepSeek-V3 shape: {args.layers} x {EXPERTS} experts, top-{TOP_K}, {GROUPS_PER_TOKEN} of {GROUPS} groups, "
        f"{args.gpus // GPUS_PER_NODE} nodes x {GPUS_PER_NODE} GPUs, {slots} slots/GPU ({args.gpus * slots} slots); "
        f"fit {args.tokens} / held-out {args.test_tokens} tokens per layer; placer target {args.target:g}, "
        f"{layer_work:.3g} s work/layer" + (f", wall limit {args.time_limit:g} s" if args.time_limit else "")
    )
    header = (
        f"{'case':17s} {'method':18s} {'max/mean fit':>12s} {'held-out':>9s} {'dedup fit':>10s} {'held-out':>9s} "
        f"{'even':>6s} {'waste':>6s} {'empty':>6s} {'fallbk':>6s} {'wall s':>7s}"
    )
    print(header)
    print("-" * len(header))
    for case in CASES:
        if args.case is not None and not case.name.startswith(args.case):
            continue
        seen, fit_stats, test_stats = windows(case, args.layers, args.tokens, args.test_tokens, args.seed)

        def problem(stats, i):  # type: ignore[no-untyped-def]
            return LayerPlacementProblem(stats.layers[i], rank_node, slots, stats.expert_group, GROUPS_PER_TOKEN)

        for name, method in (("EPLB hierarchical", eplb_hierarchical), ("EPLB global", eplb_global)):
            started = time.perf_counter()
            placed = [(method(problem(seen, i)), False) for i in range(args.layers)]
            wall = time.perf_counter() - started
            _print_row(case, name, placed, problem, fit_stats, test_stats, wall)
        name = f"placer <= {args.target:g}"
        started = time.perf_counter()
        token = StopToken.after(args.time_limit) if args.time_limit else None
        results = place_layers(
            [problem(seen, i) for i in range(args.layers)],
            args.target,
            solver,
            layer_work * args.layers,
            stop=token.should_stop if token else None,
            remaining_s=token.remaining_s if token else None,
        )
        wall = time.perf_counter() - started
        placed = [(r.placement, r.status == "balance-only") for r in results]
        _print_row(case, name, placed, problem, fit_stats, test_stats, wall)


def _print_row(case, name, placed, problem, fit_stats, test_stats, wall):  # type: ignore[no-untyped-def]
    """One method's row; every method scored by the same metric implementation."""
    fit_m = [placement_metrics(pl, problem(fit_stats, i)) for i, (pl, _) in enumerate(placed)]
    test_m = [placement_metrics(pl, problem(test_stats, i)) for i, (pl, _) in enumerate(placed)]
    even = [even_split(pl, test_stats.layers[i].loads) for i, (pl, _) in enumerate(placed)]
    print(
        f"{case.name:17s} {name:18s} {max(m.max_over_mean for m in fit_m):12.3f} "
        f"{max(m.max_over_mean for m in test_m):9.3f} {np.mean([m.dedup_cross for m in fit_m]):10.3f} "
        f"{np.mean([m.dedup_cross for m in test_m]):9.3f} {max(even):6.3f} "
        f"{sum(m.wasted_slots for m in fit_m):6d} {sum(m.empty_slots for m in fit_m):6d} "
        f"{sum(fb for _, fb in placed):6d} {wall:7.2f}"
    )


def even_split(placement, loads: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """max/mean rank load when every physical slot of expert e serves ``p_e / slots of e``."""
    slots_of = np.bincount([e for rank in placement for e in rank], minlength=loads.size)
    rank_load = np.array([sum(loads[e] / slots_of[e] for e in rank) for rank in placement])
    return float(rank_load.max() / rank_load.mean())


if __name__ == "__main__":
    main()
