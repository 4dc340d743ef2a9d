"""Markdown report of an evaluated plan, for ``results/`` and ``--out``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from placer.costmodel.params import declared_param_warnings
from placer.evaluator import Evaluation
from placer.problem import Problem
from placer.report.objective import objective_phase, term_label
from placer.report.terminal import METRIC_LABELS, fmt
from placer.serving_disagg import DisaggEvaluation

GB = 1e9


def evaluation_markdown(
    problem: Problem,
    evaluation: Evaluation | DisaggEvaluation,
    document: dict[str, Any],
    *,
    pictures: Sequence[tuple[str, str]] = (),
) -> str:
    """A self-contained report: decisions, stages, figures, constraints, assumptions; ``pictures``
    are ``(caption, relative path)`` pairs shown at the end. A disaggregated plan shares the
    opening (status, solver, objective), then reads per pool and for the whole."""
    lines = [f"# {problem.name}: {evaluation.gpus} x {problem.hardware.name}", ""]
    if problem.description:
        lines += [problem.description, ""]
    status = document.get("status")
    if status:
        lines += [f"**Status:** {status}", ""]
    solver = document.get("solver")
    if solver:
        lines += [_solver_line(problem, solver, document), ""]
    described = (document.get("objective") or {}).get("described") or []
    if described:
        lines += ["## Objective (lexicographic)", "", "| term | value | unit | what it is |", "|---|---:|---|---|"]
        for entry in described:
            value = fmt(entry["value"])
            equivalent = entry.get("equivalent")
            if equivalent:
                value += f" (= {fmt(equivalent['value'])} {equivalent['unit']} {equivalent['label']})"
            lines.append(f"| {entry['label']} | {value} | {entry['unit']} | {entry['meaning']} |")
        lines.append("")
    for warning in declared_param_warnings(problem.model):
        lines += [f"> **Warning:** {warning}", ""]
    if isinstance(evaluation, DisaggEvaluation):
        from placer.report.disagg import disagg_markdown

        return disagg_markdown(problem, evaluation, document, lines, pictures)
    plan = evaluation.plan
    par = plan.parallelism
    lines += [
        "## Decisions",
        "",
        "| GPUs | nodes | pp | tp | dp_attn | ep | tp_moe | replicas |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {evaluation.gpus} | {evaluation.nodes} | {par.pp} | {par.tp} | {par.dp_attn} | {par.ep} | {par.tp_moe} "
        f"| {par.replicas} |",
        "",
        "## Stages (fullest GPU of each)",
        "",
        "| stage | layers | weights GB | KV cache GB | activations GB | reserve GB | total GB "
        "| prefill ms/micro-batch | decode ms/micro-batch |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for st in evaluation.stages:
        m = st.memory
        lines.append(
            f"| {st.index} | {st.layers[0]}–{st.layers[1]} | {fmt(m.weights_bytes / GB)} | "
            f"{fmt(m.kv_cache_bytes / GB)} | "
            f"{fmt(m.activation_bytes / GB)} | {fmt(m.runtime_reserve_bytes / GB)} | {fmt(m.total_bytes / GB)} | "
            f"{fmt(st.prefill_s * 1e3)} | {fmt(st.decode_s * 1e3)} |"
        )
    lines += ["", "## Figures", "", "| metric | computed | claimed |", "|---|---:|---:|"]
    computed = evaluation.metrics()
    for key, (label, unit, scale) in METRIC_LABELS.items():
        claim = plan.claimed.get(key)
        claim_text = fmt(claim * scale) if isinstance(claim, (int, float)) else ""
        name = f"{label} [{unit}]" if unit else label
        lines.append(f"| {name} | {fmt(computed[key] * scale)} | {claim_text} |")
    binding = evaluation.binding
    lines += ["", "## Constraints", "", "| constraint | value | limit | slack | ok |", "|---|---:|---:|---:|---|"]
    for check in evaluation.slo:
        name = f"**{check.name}** (binding)" if binding is not None and check.name == binding.name else check.name
        lines.append(
            f"| {name} | {fmt(check.value)} {check.unit} | {check.sense} {fmt(check.limit)} {check.unit} | "
            f"{check.slack:+.1%} | {'yes' if check.ok else '**VIOLATED**'} |"
        )
    for message in evaluation.rule_messages:
        lines.append(f"\n**Engine rule broken:** {message}")
    if evaluation.uniform_routing and problem.model.moe is not None:
        lines += ["", "Routing: no statistics given; uniform, independent top-k routing assumed."]
    if problem.model.assumptions:
        lines += ["", "## Model assumptions", ""] + [f"- {a}" for a in problem.model.assumptions]
    if pictures:
        lines += ["", "## Pictures", ""]
        for caption, path in pictures:
            lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _solver_line(problem: Problem, solver: dict[str, Any], document: dict[str, Any]) -> str:
    """Backend, the primary term by name with its unit, bound, gap and (when kept) the wall time."""
    primary = (document.get("objective") or {}).get("primary")
    label = term_label(primary, objective_phase(problem)) if primary else None
    unit = f" {label.unit}" if label is not None and label.unit and label.unit != label.label else ""
    name = f"{label.label} " if label is not None else ""

    def number(value: Any) -> str:
        return "—" if value is None else f"{fmt(value)}{unit}"

    gap = solver.get("gap")
    wall = (document.get("timings") or {}).get("solve_wall_s")
    wall_text = f", wall {fmt(wall, 3)} s" if wall is not None else ""
    return (
        f"**Solver:** {solver.get('backend')} — objective {name}{number(solver.get('objective'))}, "
        f"bound {number(solver.get('bound'))}, gap {'—' if gap is None else f'{gap:.2%}'}{wall_text}"
    )
