"""A fixed sample of the fuzz corpus (``tests/fuzz_mutants.py``): exit 2, the field or file named, no traceback.

The whole corpus (about 2,000 mutants) runs with ``python benchmarks/fuzz.py``; here every
group is represented and the sample is the same on every run (every n-th cheap mutant of each
group, the routing and impossible-plan groups in full).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_mutants import Mutant, mutants, run_mutant

#: cheap document mutants taken per group (spread evenly over the group)
_PER_DOCUMENT_GROUP = 8
_SMALL_GROUPS = {"routing-loads", "routing-synthetic", "routing-file", "plan-physical"}


def _sample() -> list[Mutant]:
    corpus = mutants()
    groups: dict[str, list[Mutant]] = {}
    for mutant in corpus:
        if mutant.cheap:
            groups.setdefault(mutant.group, []).append(mutant)
    sample: list[Mutant] = []
    for group, members in sorted(groups.items()):
        if group in _SMALL_GROUPS:
            sample += members
            continue
        step = max(1, len(members) // _PER_DOCUMENT_GROUP)
        sample += members[::step][:_PER_DOCUMENT_GROUP]
    return sample


SAMPLE = _sample()


def test_corpus_is_large_and_deterministic() -> None:
    first, second = mutants(), mutants()
    assert len(first) >= 400
    assert [(m.name, m.files) for m in first] == [(m.name, m.files) for m in second]
    assert 40 <= len(SAMPLE) <= 90


@pytest.mark.parametrize("mutant", SAMPLE, ids=[m.name for m in SAMPLE])
def test_mutant_is_refused_by_name(mutant: Mutant, tmp_path: Path) -> None:
    code, output, escaped = run_mutant(mutant, tmp_path)
    assert escaped is None, escaped
    assert "Traceback" not in output
    assert code == 2, output
    assert any(expected in output for expected in mutant.expect), (mutant.expect, output)
