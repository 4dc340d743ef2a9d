"""Time a 200-point capacity sweep (instances/sweeps/capacity.yaml: 4 models x 5 hardware x 10
demand levels) on the local executor with 1 and 2 processes and on a local Ray with 2 CPUs.

Each run starts from an empty cache, so every point is solved; the three tables must be identical
(byte for byte), which the script checks. Printed per run: the wall time, the sum of the solves'
own wall times, and the overhead per task: the executor's time per point beyond solving,
(wall x parallel slots - sum of solve times) / points, which counts start-up, pickling, result
transport and the idle tail. A second figure isolates dispatch: 200 empty tasks on a warm executor.

    python benchmarks/sweep.py                       # all three executors (a few minutes on 2 cores)
    python benchmarks/sweep.py --out results/sweeps/capacity    # also keep the table and pictures
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from placer import api  # noqa: E402
from placer.executors import LocalExecutor, RayExecutor  # noqa: E402
from placer.report.sweep import write_sweep_pictures  # noqa: E402

SPEC = ROOT / "instances" / "sweeps" / "capacity.yaml"
EMPTY_TASKS = 200


def _identity(item: int) -> int:
    return item


def dispatch_s_per_task(executor: object) -> float:
    """Seconds per empty task on ``executor`` (its workers already started)."""
    started = time.perf_counter()
    done = list(executor.map_unordered(_identity, list(range(EMPTY_TASKS))))  # type: ignore[attr-defined]
    assert len(done) == EMPTY_TASKS
    return (time.perf_counter() - started) / EMPTY_TASKS


def timed_sweep(name: str, executor: object, slots: int, folder: Path) -> dict[str, object]:
    started = time.perf_counter()
    outcome = api.sweep(SPEC, folder / name, executor, pictures=False)  # type: ignore[arg-type]
    wall = time.perf_counter() - started
    assert outcome.complete and len(outcome.solved) == len({p.key for p in outcome.points})
    solves = sum(outcome.answers[key].wall_s for key in outcome.solved)
    points = len(outcome.solved)
    return {
        "name": name,
        "points": points,
        "wall_s": wall,
        "solve_sum_s": solves,
        "overhead_s_per_task": (wall * slots - solves) / points,
        "failed": len(outcome.failed),
        "table": (folder / name / "table.csv").read_bytes(),
        "outcome": outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="copy the table and write the pictures here")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="placer-sweep-bench-"))
    runs = []
    try:
        runs.append(timed_sweep("local, 1 process", LocalExecutor(1), 1, folder))
        local2 = LocalExecutor(2)
        runs.append(timed_sweep("local, 2 processes", local2, 2, folder))
        runs[-1]["dispatch_s"] = dispatch_s_per_task(local2)
        if not args.no_ray:
            import ray

            started = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            init_s = time.perf_counter() - started
            try:
                executor = RayExecutor()
                runs.append(timed_sweep("local Ray, 2 CPUs", executor, 2, folder))
                runs[-1]["init_s"] = init_s
                runs[-1]["dispatch_s"] = dispatch_s_per_task(executor)
            finally:
                ray.shutdown()
        print(f"{SPEC.relative_to(ROOT)}: {runs[0]['points']} points, {runs[0]['failed']} failed")
        print(f"{'executor':<22} {'wall s':>8} {'sum of solves s':>16} {'overhead s/task':>16} {'empty task ms':>14}")
        for run in runs:
            dispatch = f"{run['dispatch_s'] * 1e3:.2f}" if "dispatch_s" in run else "-"
            extra = f"   (ray.init {run['init_s']:.1f} s, not in wall)" if "init_s" in run else ""
            print(
                f"{run['name']:<22} {run['wall_s']:>8.1f} {run['solve_sum_s']:>16.1f} "
                f"{run['overhead_s_per_task']:>16.3f} {dispatch:>14}{extra}"
            )
        identical = all(run["table"] == runs[0]["table"] for run in runs)
        print(f"tables identical across executors: {'yes' if identical else 'NO'}")
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            for name in ("table.csv", "table.parquet"):
                if (folder / runs[0]["name"] / name).is_file():
                    shutil.copyfile(folder / runs[0]["name"] / name, args.out / name)
            _, rows = runs[0]["outcome"].table()  # type: ignore[attr-defined]
            for path in write_sweep_pictures(args.out, "capacity", rows):
                print(f"wrote {path}")
        if not identical:
            sys.exit(1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
