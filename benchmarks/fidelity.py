"""Cost-model fidelity benchmark: predicted vs measured for published deployments.

Usage: ``python benchmarks/fidelity.py [--out results/fidelity.md]`` (same as ``placer fidelity
--out``). Two sections: the DeepSeek-V3 points of ``placer/data/calibration_points.json`` (issue
6), then the broad set of ``placer/data/measurements.json`` (issue 14: other families, engines and
GPUs, in-sample and leave-one-family-out), with its picture written beside the table
(``fidelity-broad.png``). Exit code 0 when the accuracy target of issue 6 is met, 1 when it is not
(the broad set states its own target in the text; the table is written either way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from placer.fidelity_broad import render_all
from placer.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "fidelity.md")
    parser.add_argument(
        "--write-engine-profiles",
        action="store_true",
        help="also write the fitted engine factors to placer/data/engine_profiles.json",
    )
    args = parser.parse_args(argv)
    text, deepseek_ok = render_all(
        args.out, ROOT / "placer" / "data" / "engine_profiles.json" if args.write_engine_profiles else None
    )
    write_atomic(args.out, text)
    sys.stdout.write(text)
    return 0 if deepseek_ok else 1


if __name__ == "__main__":
    sys.exit(main())
