"""What ``placer place`` prints as JSON and writes to ``--out``: the summary document, the placed
plan and SGLang's expert-location map.

Here, in the report layer, rather than beside the computation (:mod:`placer.placement.command`):
formatting and file writing sit above the placement and the engine exports they draw on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from placer.evaluator import Evaluation
from placer.export.common import ExportInput, equal_slots_per_rank
from placer.export.sglang import expert_location
from placer.files import write_atomic
from placer.placement.command import PlaceOutcome
from placer.report.placement import placement_summary
from placer.report.plan_json import dumps


def _figures(ev: Evaluation) -> dict[str, Any]:
    return {**ev.metrics(), "feasible": ev.feasible, "broken": [c.name for c in ev.slo + ev.rules if not c.ok]}


def place_document(outcome: PlaceOutcome) -> dict[str, Any]:
    """JSON-able summary: placement vs baselines, and the evaluator's figures before and after."""
    return {
        "instance": outcome.problem.name,
        "plan": outcome.placed.name,
        "placement": placement_summary(outcome.report),
        "copy_bytes_per_token": outcome.copy_bytes,
        "evaluation_placed": _figures(outcome.placed_eval),
        "evaluation_plan_map": _figures(outcome.contiguous_eval),
    }


def write_outputs(outcome: PlaceOutcome, out_dir: Path) -> list[Path]:
    """The placed plan (a plan document ``placer evaluate`` reads) and SGLang's expert-location map
    (when every rank has the same number of slots, as SGLang needs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    plan_path = out_dir / f"{outcome.placed.name or 'plan'}-placed.json"
    write_atomic(plan_path, dumps(outcome.placed.model_dump(mode="json", exclude_none=True)))
    written.append(plan_path)
    if outcome.placed.expert_map and outcome.problem.model.moe is not None:
        data = ExportInput(outcome.problem, outcome.placed)
        if equal_slots_per_rank(data):
            map_path = out_dir / "sglang-expert-location.json"
            write_atomic(map_path, json.dumps(expert_location(data)) + "\n")
            written.append(map_path)
    return written
