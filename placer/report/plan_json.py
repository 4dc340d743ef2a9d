"""A plan with its computed figures, as the versioned plan JSON."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from placer.evaluator import Evaluation
from placer.schema import Plan, SolverInfo
from placer.serving_disagg import DisaggEvaluation


def dumps(document: Any) -> str:
    """Indented JSON whose innermost lists (an expert map row, a stage's layers) stay on one line,
    so a DeepSeek-V3 plan reads as one line per GPU instead of one line per expert, and diffs of
    the committed results show which rows moved."""
    rows: list[str] = []

    def compact(value: Any) -> Any:
        if isinstance(value, list) and value and all(not isinstance(v, (list, dict)) for v in value):
            rows.append(json.dumps(value))
            return f"@@row{len(rows) - 1}@@"
        if isinstance(value, list):
            return [compact(v) for v in value]
        if isinstance(value, dict):
            return {k: compact(v) for k, v in value.items()}
        return value

    text = json.dumps(compact(document), indent=2)
    return re.sub(r'"@@row(\d+)@@"', lambda m: rows[int(m.group(1))], text) + "\n"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _serving_dict(point: Any) -> dict[str, Any] | None:
    """The serving point's figures, infinities (an unstable load) as null."""
    if point is None:
        return None
    return {k: _finite(v) if isinstance(v, float) else v for k, v in point.to_dict().items()}


def evaluation_dict(evaluation: Evaluation) -> dict[str, Any]:
    """Metrics, memory breakdown per stage, SLO checks and engine rules, JSON-ready."""
    stages = [
        {
            "index": st.index,
            "layers": list(st.layers),
            "memory_bytes": {
                "weights": st.memory.weights_bytes,
                "kv_cache": st.memory.kv_cache_bytes,
                "activations": st.memory.activation_bytes,
                "runtime_reserve": st.memory.runtime_reserve_bytes,
                "total": st.memory.total_bytes,
            },
            "prefill_s_per_micro_batch": st.prefill_s,
            "decode_s_per_micro_batch": st.decode_s,
        }
        for st in evaluation.stages
    ]
    checks = {c.name: {**c.to_dict(), "value": _finite(c.value), "slack": _finite(c.slack)} for c in evaluation.slo}
    rules = {c.name: c.ok for c in evaluation.rules}
    binding = evaluation.binding
    return {
        # an unstable serving load has infinite latencies: null in JSON (which has no infinity)
        "metrics": {key: _finite(value) for key, value in evaluation.metrics().items()},
        "stages": stages,
        "slo": checks,
        "rules": rules,
        "rule_violations": list(evaluation.rule_messages),
        "binding_constraint": binding.name if binding else None,
        "feasible": evaluation.feasible,
        "routing": "uniform (no routing statistics given)" if evaluation.uniform_routing else "from routing statistics",
        "notes": list(evaluation.notes),
        # the analytic steady state of a serving workload (null for burst); docs/cost-model.md (Q1)-(Q9)
        "serving": _serving_dict(evaluation.serving),
    }


def plan_with_figures(
    evaluation: Evaluation | DisaggEvaluation, status: str | None = None, solver: SolverInfo | None = None
) -> dict[str, Any]:
    """The plan file a user keeps: the decisions, then every figure the evaluator computed (a
    disaggregated plan's: :func:`placer.report.disagg.disagg_plan_with_figures`)."""
    if isinstance(evaluation, DisaggEvaluation):
        from placer.report.disagg import disagg_plan_with_figures

        return disagg_plan_with_figures(evaluation, status, solver)
    plan: Plan = evaluation.plan
    output_only = {"metrics", "slo", "status", "solver", "evaluation", "objective", "search", "timings"}
    data = plan.model_dump(mode="json", exclude=output_only, exclude_none=True)
    data["nodes"] = evaluation.nodes
    figures = evaluation_dict(evaluation)
    data["metrics"] = figures["metrics"]
    data["slo"] = figures["slo"]
    data["evaluation"] = {k: v for k, v in figures.items() if k not in ("metrics", "slo")}
    if status is not None:
        data["status"] = status
    if solver is not None:
        data["solver"] = solver.model_dump(mode="json")
    return data


def _is_timing(key: str) -> bool:
    """Wall-clock figures: the build time, every ``*wall_s`` (solver, pass, placement) and ``*elapsed_s``."""
    return key == "build_s" or key.endswith(("wall_s", "elapsed_s"))


def split_timings(search: Any, prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """``search`` without its wall-clock figures, and those figures keyed by their dotted path
    (``placement.wall_s``), so a document keeps them under one key that can be left out."""
    timings: dict[str, Any] = {}
    if isinstance(search, dict):
        kept = {}
        for key, value in search.items():
            path = f"{prefix}{key}"
            if isinstance(key, str) and _is_timing(key) and isinstance(value, (int, float, list, type(None))):
                timings[path] = value
                continue
            kept[key], inner = split_timings(value, f"{path}.")
            timings.update(inner)
        return kept, timings
    if isinstance(search, list):
        items = []
        for index, value in enumerate(search):
            item, inner = split_timings(value, f"{prefix}{index}.")
            items.append(item)
            timings.update(inner)
        return items, timings
    return search, timings
