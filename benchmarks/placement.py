"""DeepSeek-V3-shaped expert placement: placer against the baselines, per balance target.

58 MoE layers x 256 experts, top-8, 8 groups of which 4 per token, 8 nodes x 8 GPUs (EP 64),
one redundant slot per GPU (5 slots: 4 + 1). Routing: the seeded synthetic generator (Zipf 0.3
over a random ranking: the hottest expert carries about 3.6x the mean load; group-limited top-k).

Prints, per method: max/mean GPU load (worst layer), node-deduplicated and plain cross-node
copies and bytes per token per MoE layer (mean over layers), wasted/empty slots and runtime.
Timings are wall-clock on a shared machine and noisy.

    python benchmarks/placement.py [--layers 58] [--backend none|cpsat] [--tokens 4096]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from placer.backends.placement import node_solver
from placer.placement.baselines import BASELINES
from placer.placement.data import LayerPlacementProblem
from placer.placement.metrics import placement_metrics
from placer.placement.planner import place_layer
from placer.routing import synthetic_stats

HIDDEN = 7168  # DeepSeek-V3 hidden size
COPY_BYTES = HIDDEN * (1 + 2)  # FP8 dispatch (1 B) + BF16 combine (2 B), as DeepEP
TARGETS = (1.02, 1.05, 1.10, 1.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=58)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["none", "cpsat", "milp"], default="none")
    parser.add_argument("--layer-time", type=float, default=0.5, help="solver seconds per layer (backend only)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    stats = synthetic_stats(
        256, 8, args.layers, seed=args.seed, tokens=args.tokens, zipf_exponent=0.3, num_groups=8, groups_per_token=4
    )
    print(f"routing: {stats.source}; generated in {time.perf_counter() - t0:.1f} s")
    rank_node = np.arange(64) // 8
    problems = [LayerPlacementProblem(layer, rank_node, 5, stats.expert_group, 4) for layer in stats.layers]
    rows = []
    for name, method in BASELINES.items():
        t = time.perf_counter()
        ms = [placement_metrics(method(p), p) for p in problems]
        rows.append((name, None, ms, time.perf_counter() - t, None))
    solver = node_solver(None if args.backend == "none" else args.backend)
    found: list[list] = [[] for _ in problems]  # every placer placement, for the frontier
    for target in TARGETS:
        t = time.perf_counter()
        results = [place_layer(p, target, solver, time_limit_s=args.layer_time) for p in problems]
        wall = time.perf_counter() - t
        for i, r in enumerate(results):
            found[i].append(r)
        # at a looser target, any placement already found within it is admissible: keep the best
        chosen = []
        for runs in found:
            ok = [r for r in runs if r.metrics.max_over_mean <= target + 1e-9]
            chosen.append(
                min(ok, key=lambda r: r.metrics.dedup_cross) if ok else min(runs, key=lambda r: r.metrics.max_over_mean)
            )
        gaps = [r.gap for r in chosen if r.gap is not None]
        rows.append((f"placer <= {target:.2f}", target, [r.metrics for r in chosen], wall, max(gaps) if gaps else None))
    header = (
        f"{'method':26s} {'max/mean worst':>14s} {'dedup copies':>12s} {'dedup kB':>9s} {'plain copies':>12s} "
        f"{'plain kB':>9s} {'waste':>6s} {'empty':>6s} {'runtime s':>9s} {'gap':>7s}"
    )
    print(header)
    print("-" * len(header))
    for name, _target, ms, wall, gap in rows:
        worst = max(m.max_over_mean for m in ms)
        dedup = float(np.mean([m.dedup_cross for m in ms]))
        plain = float(np.mean([m.plain_cross for m in ms]))
        waste = sum(m.wasted_slots for m in ms)
        empty = sum(m.empty_slots for m in ms)
        gap_s = f"{gap:.1%}" if gap is not None else "-"
        print(
            f"{name:26s} {worst:14.3f} {dedup:12.3f} {dedup * COPY_BYTES / 1e3:9.1f} {plain:12.3f} "
            f"{plain * COPY_BYTES / 1e3:9.1f} {waste:6d} {empty:6d} {wall:9.2f} {gap_s:>7s}"
        )
    balance_only = next(ms for name, _t, ms, _w, _g in rows if name == "EPLB global")
    hier = next(ms for name, _t, ms, _w, _g in rows if name == "EPLB hierarchical")
    ref = float(np.mean([m.dedup_cross for m in balance_only]))
    print()
    for name, target, ms, wall, _gap in rows:
        if target is None:
            continue
        worst = max(m.max_over_mean for m in ms)
        dedup = float(np.mean([m.dedup_cross for m in ms]))
        print(
            f"{name}: worst layer {worst:.3f}, dedup traffic {1 - dedup / ref:+.1%} below the balance-only placement "
            f"(EPLB global, worst layer {max(m.max_over_mean for m in balance_only):.3f}), all layers "
            f"in {wall:.1f} s"
        )
    worst_h = max(m.max_over_mean for m in hier)
    print(
        f"EPLB hierarchical reaches worst layer {worst_h:.3f} at dedup "
        f"{np.mean([m.dedup_cross for m in hier]):.3f} copies/token"
    )


if __name__ == "__main__":
    main()
