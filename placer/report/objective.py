"""What each objective term is, in words and units, for every report (terminal, Markdown, JSON).

The formulation keys its lexicographic terms by the goal (``max_throughput_per_gpu``), but the value
it minimises is not always the quantity the name suggests: throughput per GPU is maximised by
minimising GPU-seconds per batch, its inverse. A user reading ``max_throughput_per_gpu = 1.965``
cannot tell; the reports therefore show each term through this table, with the throughput it
stands for beside it. The internal keys stay what backends and tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from placer.evaluator import Evaluation


@dataclass(frozen=True)
class TermLabel:
    """How one objective term reads: ``label [unit]``, and a sentence saying what it measures."""

    label: str
    unit: str
    meaning: str


#: Term key -> label, unit and meaning. ``max_throughput_per_gpu`` depends on the phase the
#: instance's objective names (``throughput_phase``), hence the ``{phase}``/``{batch}`` slots.
TERM_LABELS: dict[str, TermLabel] = {
    "min_gpus": TermLabel("GPUs", "GPUs", "GPUs the plan uses (minimised)"),
    "max_throughput_per_gpu": TermLabel(
        "GPU-seconds per {batch}",
        "GPU·s",
        "GPUs x the time of one {batch} (minimised); {phase} throughput per GPU is the tokens of a {batch} over it",
    ),
    "min_cross_node_traffic": TermLabel(
        "cross-node all-to-all, node-dedup",
        "B/token/MoE layer",
        "bytes per token per MoE layer that leave a node in dispatch and combine (minimised)",
    ),
    "min_ttft": TermLabel("TTFT", "s", "time to first token of the longest prompt (minimised)"),
}

_BATCH = {"prefill": "prefill batch", "decode": "decode step"}
_THROUGHPUT = {
    "prefill": "prefill_tokens_per_ms_per_gpu",
    "decode": "decode_tokens_per_ms_per_gpu",
    "output": "decode_tokens_per_ms_per_gpu",  # evaluate_serving puts the serving output rate there
}
#: A serving solve (workload kinds other than burst) minimises GPU-seconds per output token.
SERVING_THROUGHPUT = TermLabel(
    "GPU-seconds per output token",
    "GPU·s",
    "1 / output tokens/s per GPU in the serving steady state (minimised)",
)


def objective_phase(problem: Any) -> str:
    """The phase the throughput term is read in: ``output`` for a serving workload (the serving
    solve's term, ``placer.serving_solve``), else the objective's ``throughput_phase``."""
    if problem.workload.kind != "burst":
        return "output"
    return str(problem.objective.throughput_phase)


def term_label(key: str, phase: str | None = None) -> TermLabel:
    """The label of ``key``; an unknown key reads as itself, without a unit."""
    if key == "max_throughput_per_gpu" and phase == "output":
        return SERVING_THROUGHPUT
    entry = TERM_LABELS.get(key)
    if entry is None:
        return TermLabel(key, "", key)
    batch = _BATCH.get(phase or "", "batch")
    words = {"batch": batch, "phase": phase or "the phase's"}
    return TermLabel(entry.label.format(**words), entry.unit, entry.meaning.format(**words))


def describe_terms(
    terms: dict[str, float], phase: str | None = None, evaluation: Evaluation | None = None
) -> list[dict[str, Any]]:
    """The lexicographic terms in order, each with label, unit, meaning and value; the GPU-seconds
    term also with the throughput it stands for, when the phase and the plan's figures are known."""
    described = []
    for key, value in terms.items():
        label = term_label(key, phase)
        entry: dict[str, Any] = {
            "term": key,
            "label": label.label,
            "unit": label.unit,
            "value": value,
            "meaning": label.meaning,
        }
        if key == "max_throughput_per_gpu" and phase in _THROUGHPUT and evaluation is not None:
            entry["equivalent"] = {
                "label": f"{phase} throughput",
                "unit": "tokens/ms/GPU",
                "value": getattr(evaluation, _THROUGHPUT[phase]),
            }
        described.append(entry)
    return described


def term_text(entry: dict[str, Any], number: Any) -> str:
    """One described term as ``label = value unit (equivalent)``, numbers through ``number``."""
    unit = f" {entry['unit']}" if entry["unit"] and entry["unit"] != entry["label"] else ""
    text = f"{entry['label']} = {number(entry['value'])}{unit}"
    equivalent = entry.get("equivalent")
    if equivalent:
        text += f" (= {equivalent['label']} {number(equivalent['value'])} {equivalent['unit']})"
    return text
