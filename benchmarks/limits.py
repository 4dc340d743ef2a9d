"""Do the limits hold? Wall time of whole commands under ``--time-limit`` and Ctrl-C.

    python benchmarks/limits.py [--instance instances/deepseek-v3-h800.json] [--quick]

Each row is one process, timed from its start (Python's imports included) to its exit, with the
status, GPU count and gap it printed. The promise is 1.2x the limit for the command's own work;
the process also pays the interpreter's start (about 0.5 s here), which the last column shows
apart. Ctrl-C rows send SIGINT after the delay and must still answer with a plan (exit 0).
A benchmark, not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], sigint_after_s: float | None = None) -> tuple[float, int, dict | None]:
    """Run ``placer ARGS --json``; return (wall seconds, exit code, the JSON document or None)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "placer", *args, "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:  # read while waiting: a plan's JSON outgrows the pipe buffer
        out, _ = process.communicate(timeout=sigint_after_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate()
    wall = time.perf_counter() - started
    try:
        document = json.loads(out)
    except json.JSONDecodeError:
        document = None
    return wall, process.returncode, document


def startup_s() -> float:
    """Seconds to start the interpreter and import placer's CLI (paid by every command)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import placer.cli"], cwd=ROOT, check=True)
    return time.perf_counter() - started


def describe(document: dict | None) -> str:
    if document is None:
        return "no JSON"
    solver = document.get("solver") or {}
    gap = solver.get("gap")
    gpus = document.get("gpus", "-")
    interrupted = (document.get("search") or {}).get("interrupted")
    return f"{document.get('status')} {gpus} GPUs gap {'-' if gap is None else f'{gap:.1%}'}" + (
        " (interrupted)" if interrupted else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="instances/deepseek-v3-h800.json")
    parser.add_argument("--plan", default="plans/seed002-ep64-tp2.json")
    parser.add_argument("--place-instance", default="instances/ep64-128gpu.json")
    parser.add_argument("--quick", action="store_true", help="fewer rows")
    options = parser.parse_args()
    start = startup_s()
    print(f"interpreter start + imports: {start:.2f} s\n")
    print(f"{'command':58} {'limit s':>8} {'wall s':>7} {'exit':>4}  answer")
    limits = (1, 5) if options.quick else (1, 2, 5, 10)
    rows = [(["solve", options.instance, "--time-limit", str(t)], t, None) for t in limits]
    rows.append((["solve", options.instance, "--backend", "cpsat", "--time-limit", "5"], 5, None))
    rows.append((["solve", options.instance, "--backend", "milp", "--time-limit", "5"], 5, None))
    delays = (1, 5) if options.quick else (1, 3, 5, 20)
    rows += [(["solve", options.instance], None, d) for d in delays]
    rows += [(["place", options.place_instance, options.plan, "--time-limit", str(t)], t, None) for t in (2, 10)]
    for args, limit, delay in rows:
        wall, code, document = run(args, delay)
        label = " ".join(args) + (f"  ^C at {delay} s" if delay is not None else "")
        answer = describe(document) if args[0] == "solve" else ("placed" if document else "no JSON")
        within = "" if limit is None else ("  within 1.2x" if wall - start <= 1.2 * limit else "  OVER 1.2x")
        print(f"{label[:58]:58} {limit if limit is not None else '-':>8} {wall:7.2f} {code:>4}  {answer}{within}")


if __name__ == "__main__":
    main()
