"""Expert placement: placer against EPLB (hierarchical and global), in-sample and on held-out
tokens; at scale; under routing drift; re-placement with a migration budget.

Shapes: ``deepseek`` (58 MoE layers x 256 experts, top-8, 8 groups of which 4 per token) and
``kimi`` (61 x 384, top-8, no groups: EPLB hierarchical packs single experts onto nodes). 8 GPUs
per node, ``ceil(E / GPUs) + 1`` slots per GPU. Routing cases, from the seeded synthetic
generator (each layer's traces drawn once, then split: the first ``--tokens`` are the fit window
the methods see, the next ``--test-tokens`` the held-out window):

* no co-activation: Zipf 0.3, group-limited top-k (where the shape has groups), traces known;
* planted clusters: the same plus 32 planted clusters of 8 experts at affinity 0.5;
* loads only: Zipf 0.6; the methods see only the fit window's loads (what SGLang's
  ``logical_count`` gives) and the declared groups.

Every method is scored by one implementation (``placer.placement.metrics.placement_metrics``):
max/mean GPU load of the worst layer and node-deduplicated cross-node copies per token
(local-first replica choice, mean over layers), on the fit tokens (in-sample) and on the held-out
tokens. ``status`` counts the layers by how placer's map was found. Wall times are on a shared
machine and noisy; placer's includes its processes' start.

    python benchmarks/placement.py [--shape deepseek|kimi] [--gpus 64] [--layers N] [--case loads]
        [--processes 2] [--layer-time 1.0]
    python benchmarks/placement.py --drift 0.25        # fit window, drifted test window, hedged placer
    python benchmarks/placement.py --migrate           # K = 0, 8, 32, 128 copies moved
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from placer.placement.baselines import eplb_global, eplb_hierarchical
from placer.placement.data import LayerPlacementProblem
from placer.placement.improve import hedged_problem, migrate_layer
from placer.placement.metrics import placement_metrics
from placer.placement.planner import place_layers
from placer.routing.stats import stats_from_loads, stats_from_traces
from placer.routing.synthetic import drifted_ranking, planted_clusters, synthetic_traces

TOP_K, GPUS_PER_NODE = 8, 8
#: one expert's weights (DeepSeek-V3: gate, up, down of 7168 x 2048 in FP8) [B]
EXPERT_BYTES = 3 * 7168 * 2048


@dataclass(frozen=True)
class Shape:
    experts: int
    layers: int
    groups: int
    groups_per_token: int


SHAPES = {"deepseek": Shape(256, 58, 8, 4), "kimi": Shape(384, 61, 1, 1)}


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


def windows(case: Case, shape: Shape, layers: int, fit: int, test: int, seed: int, drift: float = 0.0):  # type: ignore[no-untyped-def]
    """(fit stats as the methods see them, fit stats with traces, held-out stats with traces).
    ``drift > 0``: the held-out window has that fraction of the experts' popularity ranks
    permuted (:func:`drifted_ranking`); 0: both windows come from one draw."""
    rng = np.random.default_rng(seed)
    grouped = shape.groups > 1
    group = np.arange(shape.experts) // (shape.experts // shape.groups) if grouped else None
    per_token = shape.groups_per_token if grouped else None
    clusters = planted_clusters(shape.experts, case.clusters, rng) if case.clusters > 1 else None
    fits, tests = [], []
    for _ in range(layers):
        args = (shape.experts, TOP_K)
        extra = dict(zipf_exponent=case.zipf, clusters=clusters, cluster_affinity=case.affinity)
        extra |= dict(expert_group=group, groups_per_token=per_token)
        if drift <= 0:
            both = synthetic_traces(*args, fit + test, rng, **extra)  # type: ignore[arg-type]
            fits.append(both[:fit])
            tests.append(both[fit:])
            continue
        ranking = rng.permutation(shape.experts) + 1
        fits.append(synthetic_traces(*args, fit, rng, ranking=ranking, **extra))  # type: ignore[arg-type]
        later = drifted_ranking(ranking, drift, rng)
        tests.append(synthetic_traces(*args, test, rng, ranking=later, **extra))  # type: ignore[arg-type]
    meta = {"expert_group": group, "groups_per_token": per_token}
    fit_stats = stats_from_traces(fits, shape.experts, "fit", **meta)
    test_stats = stats_from_traces(tests, shape.experts, "test", **meta)
    seen = (
        stats_from_loads([la.loads for la in fit_stats.layers], TOP_K, "fit loads", **meta)
        if case.loads_only
        else fit_stats
    )
    return seen, fit_stats, test_stats


def _problems(stats, rank_node, slots):  # type: ignore[no-untyped-def]
    return [
        LayerPlacementProblem(layer, rank_node, slots, stats.expert_group, stats.groups_per_token)
        for layer in stats.layers
    ]


def _score(args):  # type: ignore[no-untyped-def]
    placement, fit_problem, test_problem = args
    return placement_metrics(placement, fit_problem), placement_metrics(placement, test_problem)


def _row(label, name, placements, fit_p, test_p, wall, pool, status=""):  # type: ignore[no-untyped-def]
    """One method's row; every method scored by the same metric implementation."""
    scored = list(pool.map(_score, zip(placements, fit_p, test_p, strict=True)))
    fit_m = [f for f, _ in scored]
    test_m = [t for _, t in scored]
    worst_fit, worst_test = max(m.max_over_mean for m in fit_m), max(m.max_over_mean for m in test_m)
    print(
        f"{label:17s} {name:22s} {worst_fit:7.3f} {worst_test:8.3f} "
        f"{np.mean([m.dedup_cross for m in fit_m]):7.3f} {np.mean([m.dedup_cross for m in test_m]):8.3f} "
        f"{sum(m.wasted_slots for m in fit_m):6d} {sum(m.empty_slots for m in fit_m):6d} {wall:7.2f}  {status}",
        flush=True,
    )
    return fit_m, test_m


def _status(results) -> str:  # type: ignore[no-untyped-def]
    counts = Counter(r.status for r in results)
    return ", ".join(f"{n} {s}" for s, n in counts.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="deepseek")
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=4096, help="fit-window tokens per layer")
    parser.add_argument("--test-tokens", type=int, default=4096, help="held-out tokens per layer")
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--target", type=float, default=1.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layer-time", type=float, default=2.0, help="placer work budget per layer [CPU s]")
    parser.add_argument("--processes", type=int, default=2, help="placer's processes over layers")
    parser.add_argument("--case", choices=[c.name.split()[0] for c in CASES], default=None)
    parser.add_argument("--drift", type=float, default=0.0, help="share of experts whose popularity moves")
    parser.add_argument("--migrate", action="store_true", help="re-placement table, K = 0, 8, 32, 128 (with --drift)")
    parser.add_argument("--shrink", type=float, default=0.3, help="hedged placer: blend with uniform loads")
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    layers = args.layers or shape.layers
    slots = -(-shape.experts // args.gpus) + 1
    rank_node = np.arange(args.gpus) // GPUS_PER_NODE
    print(
        f"{args.shape} shape: {layers} x {shape.experts} experts, top-{TOP_K}"
        + (f", {shape.groups_per_token} of {shape.groups} groups" if shape.groups > 1 else ", no groups")
        + f"; {args.gpus // GPUS_PER_NODE} nodes x {GPUS_PER_NODE} GPUs, {slots} slots/GPU ({args.gpus * slots}); "
        f"fit {args.tokens} / held-out {args.test_tokens} tokens per layer"
        + (f" (held-out window drifted: {args.drift:g} of the experts re-ranked)" if args.drift else "")
        + f"; placer target {args.target:g}, {args.layer_time:g} s work/layer, {args.processes} processes; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    header = (
        f"{'case':17s} {'method':22s} {'mm fit':>7s} {'held-out':>8s} {'dedup':>7s} {'held-out':>8s} "
        f"{'waste':>6s} {'empty':>6s} {'wall s':>7s}  status"
    )
    print(header)
    print("-" * len(header))
    with ProcessPoolExecutor(max_workers=max(1, args.processes)) as pool:
        for case in CASES:
            if args.case is not None and not case.name.startswith(args.case):
                continue
            seen, fit_stats, test_stats = windows(
                case, shape, layers, args.tokens, args.test_tokens, args.seed, args.drift
            )
            seen_p, fit_p, test_p = (_problems(s, rank_node, slots) for s in (seen, fit_stats, test_stats))
            for name, method in (("EPLB hierarchical", eplb_hierarchical), ("EPLB global", eplb_global)):
                started = time.perf_counter()
                maps = [method(p) for p in seen_p]
                _row(case.name, name, maps, fit_p, test_p, time.perf_counter() - started, pool)
            variants = [(f"placer <= {args.target:g}", seen_p)]
            if args.drift:
                variants.append((f"placer hedged {args.shrink:g}", [hedged_problem(p, 4, args.shrink) for p in seen_p]))
            placed = None
            for name, problems in variants:
                started, cpu = time.perf_counter(), _child_cpu_s()
                results = place_layers(problems, args.target, None, args.layer_time * layers, processes=args.processes)
                wall = time.perf_counter() - started
                cpu = _child_cpu_s() - cpu if args.processes > 1 else time.process_time()
                maps = [r.placement for r in results]
                _row(case.name, name, maps, fit_p, test_p, wall, pool, f"cpu {cpu:.0f} s; " + _status(results))
                placed = placed or maps
            if args.migrate:
                _migration(case, test_stats, placed, args, rank_node, slots, pool)


def _migrate_one(job):  # type: ignore[no-untyped-def]
    problem, in_service, k, target, layer_time = job
    return migrate_layer(problem, in_service, k, target, layer_time)


def _migration(case, later, placed, args, rank_node, slots, pool):  # type: ignore[no-untyped-def]
    """Map in service: placer's on the fit window. New statistics: the first half of the later
    (with --drift, drifted) window; scored on it and on its second half; K copies may move per
    layer (each a copy of one expert's weights written into a slot)."""
    half = args.test_tokens // 2
    meta = _meta(later)
    new_fit = stats_from_traces([la.traces[:half] for la in later.layers], later.num_experts, "new", **meta)
    new_test = stats_from_traces([la.traces[half:] for la in later.layers], later.num_experts, "new+", **meta)
    new_seen = (
        stats_from_loads([la.loads for la in new_fit.layers], TOP_K, "new loads", **meta)
        if case.loads_only
        else new_fit
    )
    new_p, fit_p, test_p = (_problems(s, rank_node, slots) for s in (new_seen, new_fit, new_test))
    for k in (0, 8, 32, 128):
        started = time.perf_counter()
        jobs = [(p, m, k, args.target, args.layer_time) for p, m in zip(new_p, placed, strict=True)]
        out = list(pool.map(_migrate_one, jobs))
        moved = sum(o.copies_moved for o in out)
        label = f"migrate K={k}"
        status = f"{moved / len(out):.1f} copies/layer, {moved * EXPERT_BYTES / 1e9:.1f} GB moved in all"
        _row(case.name, label, [o.placement for o in out], fit_p, test_p, time.perf_counter() - started, pool, status)


def _child_cpu_s() -> float:
    """CPU seconds of the finished child processes (place_layers' pool once it has shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _meta(stats):  # type: ignore[no-untyped-def]
    return {"expert_group": stats.expert_group, "groups_per_token": stats.groups_per_token}


if __name__ == "__main__":
    main()
