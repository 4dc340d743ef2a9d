"""Run the whole fuzz corpus (``tests/fuzz_mutants.py``) through the CLI in-process.

Every mutant must exit 2 with a message naming its field or file and no traceback. Prints the
count per exit code, per group, and every mutant that misses (first lines of its output or its
traceback). Exit status 1 when any mutant misses.

    python benchmarks/fuzz.py [--group routing-npz] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_mutants import mutants, run_mutant  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", help="run only this group")
    parser.add_argument("--only", help="run only mutants whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="print every failure's output in full")
    options = parser.parse_args()
    corpus = [
        m
        for m in mutants()
        if (options.group is None or m.group == options.group) and (options.only is None or options.only in m.name)
    ]
    by_code: collections.Counter[int] = collections.Counter()
    by_group: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    misses: list[tuple[str, str]] = []
    for mutant in corpus:
        with tempfile.TemporaryDirectory() as folder:
            code, output, escaped = run_mutant(mutant, Path(folder))
        by_code[code] += 1
        named = any(expect in output for expect in mutant.expect)
        ok = code == 2 and named and escaped is None and "Traceback" not in output
        by_group[mutant.group]["ok" if ok else "miss"] += 1
        if not ok:
            why = escaped or output
            if code == 2 and not named:
                why = f"(expected one of {mutant.expect} in the message)\n{output}"
            misses.append((f"{mutant.name}: exit {code}", why if options.verbose else "\n".join(why.splitlines()[-4:])))
    print(f"{len(corpus)} mutants")
    print("exit codes: " + ", ".join(f"{code}: {count}" for code, count in sorted(by_code.items())))
    for group, counts in sorted(by_group.items()):
        print(f"  {group:20s} ok {counts['ok']:4d}  miss {counts['miss']:4d}")
    tracebacks = sum(1 for _, why in misses if "Traceback" in why)
    print(f"misses: {len(misses)} (with a traceback: {tracebacks})")
    for head, why in misses:
        print(f"- {head}\n    " + why.replace("\n", "\n    "))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
