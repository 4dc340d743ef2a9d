"""Reports of a disaggregated (prefill/decode) plan: the plan JSON with its figures, the terminal
tables and the Markdown report.

Every figure is the evaluator's (:func:`placer.serving_disagg.evaluate_disaggregated`): each pool
as priced on its own GPUs (memory, rules) and at the steady state of the whole (latency, load,
KV), and the whole deployment (TTFT, TPOT, throughput, rate, the KV transfer between the pools).
Kept apart from the aggregated reports so that their output does not move by a byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from placer.evaluator import Check, Evaluation, StageReport
from placer.problem import Problem
from placer.report.text import fmt, warnings_panel
from placer.schema import SolverInfo
from placer.serving_disagg import DisaggEvaluation

GB = 1e9
PHASES = ("prefill", "decode")
#: The pool checks are named ``<phase>.<check>``; these whole-plan rules belong to no pool.
_NODE_RULES = ("prefill_nodes", "decode_nodes")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _clean(value: Any) -> Any:
    """JSON-ready: infinities (an unstable load) as null, recursively."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _check_dict(check: Check) -> dict[str, Any]:
    return _clean(check.to_dict())


def _fullest(evaluation: Evaluation) -> StageReport:
    return max(evaluation.stages, key=lambda st: st.memory.total_bytes)


def pool_checks(evaluation: DisaggEvaluation, phase: str) -> list[Check]:
    """The rule and memory checks of one pool (``<phase>.<name>``) and its node check."""
    own = [c for c in evaluation.rules if c.name.startswith(f"{phase}.")]
    return own + [c for c in evaluation.rules if c.name == f"{phase}_nodes"]


def whole_rules(evaluation: DisaggEvaluation) -> list[Check]:
    """The rule checks of no single pool (shared nodes, the cluster's node count)."""
    return [c for c in evaluation.rules if not c.name.startswith(("prefill.", "decode.")) and c.name not in _NODE_RULES]


def pool_figures(evaluation: DisaggEvaluation, phase: str) -> dict[str, Any]:
    """One pool: degrees, GPUs, nodes, memory per GPU with its breakdown (per stage), the pool's
    load at the steady state, its throughput per pool GPU and its checks."""
    plan = evaluation.plan
    pool = plan.pool(phase)
    pool_eval: Evaluation = getattr(evaluation, phase)
    point = evaluation.point
    nodes = evaluation.nodes_prefill if phase == "prefill" else evaluation.nodes_decode
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
        }
        for st in pool_eval.stages
    ]
    figures: dict[str, Any] = {
        "label": pool.parallelism.label,
        "parallelism": pool.parallelism.model_dump(),
        "gpus": pool.gpus,
        "nodes": list(nodes),
        "memory_bytes_per_gpu_max": pool_eval.memory_bytes_per_gpu_max,
        "stages": stages,
    }
    if phase == "prefill":
        tokens_per_s = evaluation.prefill_tokens_per_ms_per_gpu * 1e3 * evaluation.gpus  # prompt tokens/s
        figures.update(
            {
                "replicas": point.prefill_replicas,
                "latency_s": point.prefill_latency_s,
                "wait_s": point.prefill_wait_s,
                "utilisation": point.prefill_utilisation,
                "capacity_rps": point.prefill_capacity_rps,
                "prompt_tokens_per_s_per_pool_gpu": tokens_per_s / pool.gpus,
            }
        )
    else:
        tokens_per_s = point.output_tokens_per_s
        figures.update(
            {
                "replicas": point.decode_replicas,
                "step_ms": point.decode_step_s * 1e3,
                "batch_per_replica": point.decode_batch,
                "utilisation": point.decode_utilisation,
                "capacity_rps": point.decode_capacity_rps,
                "kv_tokens_used_per_replica": point.kv_tokens_used,
                "kv_capacity_tokens_per_replica": point.kv_capacity_tokens,
                "admission_limit": point.admission_limit,
                "output_tokens_per_s_per_pool_gpu": tokens_per_s / pool.gpus,
            }
        )
    figures["checks"] = {c.name: _check_dict(c) for c in pool_checks(evaluation, phase)}
    figures["rule_violations"] = list(pool_eval.rule_messages)
    return _clean(figures)


def whole_figures(evaluation: DisaggEvaluation) -> dict[str, Any]:
    """The deployment as one: latency with percentiles, throughput, load and the KV transfer."""
    point = evaluation.point
    transfer = point.transfer
    return _clean(
        {
            "gpus": evaluation.gpus,
            "nodes": evaluation.nodes,
            "kind": point.kind,
            "stable": point.stable,
            "reason": point.reason,
            "ttft_s": point.ttft_s,
            "ttft_percentiles_s": dict(point.ttft_percentiles_s),
            "tpot_ms": point.tpot_s * 1e3,
            "output_tokens_per_s": point.output_tokens_per_s,
            "output_tokens_per_s_per_gpu": point.output_tokens_per_s_per_gpu,
            "rate_rps": point.rate_rps,
            "concurrency": point.concurrency,
            "outside_wait_s": point.outside_wait_s,
            "cross_node_bytes_per_token": evaluation.cross_node_bytes_per_token,
            "kv_transfer": {
                "path": transfer.path.kind,
                "bytes_per_request": transfer.bytes_per_request,
                "lanes": transfer.lanes,
                "link_bytes_per_s": transfer.path.bytes_per_s,
                "link_utilisation": transfer.link_utilisation,
                "alone_ms": transfer.alone_s * 1e3,
                "mean_ms": transfer.mean_s * 1e3,
            },
        }
    )


def disagg_evaluation_dict(evaluation: DisaggEvaluation) -> dict[str, Any]:
    """Metrics, per-pool and whole figures, every SLO check with slack and every rule, JSON-ready."""
    binding = evaluation.binding
    return {
        "metrics": _clean(evaluation.metrics()),
        "slo": {c.name: _check_dict(c) for c in evaluation.slo},
        "mode": "disaggregated",
        "pools": {phase: pool_figures(evaluation, phase) for phase in PHASES},
        "whole": whole_figures(evaluation),
        "rules": {c.name: _check_dict(c) for c in evaluation.rules},
        "rule_violations": list(evaluation.rule_messages),
        "binding_constraint": binding.name if binding else None,
        "feasible": evaluation.feasible,
        "notes": list(evaluation.notes),
        "serving": _clean(evaluation.point.to_dict()),
    }


def disagg_plan_with_figures(
    evaluation: DisaggEvaluation, status: str | None = None, solver: SolverInfo | None = None
) -> dict[str, Any]:
    """The ``placer.plan/2`` document: the decisions as written (loadable back by ``placer
    evaluate``), then every figure under the output-only keys the schema ignores on input."""
    output_only = {"metrics", "slo", "status", "solver", "evaluation", "objective", "search", "timings"}
    data = evaluation.plan.model_dump(mode="json", exclude=output_only, exclude_none=True)
    figures = disagg_evaluation_dict(evaluation)
    data["metrics"] = figures["metrics"]
    data["slo"] = figures["slo"]
    data["evaluation"] = {k: v for k, v in figures.items() if k not in ("metrics", "slo")}
    if status is not None:
        data["status"] = status
    if solver is not None:
        data["solver"] = solver.model_dump(mode="json")
    return data


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞"
    return fmt(float(value), digits)


def _or_inf(value: float | None) -> float:
    """A figure read back from JSON-ready figures: null stands for infinite."""
    return math.inf if value is None else value


def _pct(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "∞"


def _nodes_text(nodes: Sequence[int]) -> str:
    nodes = sorted(nodes)
    if len(nodes) > 1 and nodes == list(range(nodes[0], nodes[-1] + 1)):
        return f"{nodes[0]}–{nodes[-1]}"
    return ", ".join(str(n) for n in nodes)


def pool_rows(evaluation: DisaggEvaluation) -> list[tuple[str, str, str]]:
    """``(figure [unit], prefill, decode)`` rows, shared by the terminal and Markdown tables."""
    figs = {phase: pool_figures(evaluation, phase) for phase in PHASES}
    mems = {phase: _fullest(getattr(evaluation, phase)).memory for phase in PHASES}
    p, d = figs["prefill"], figs["decode"]

    def both(label: str, getter: Any) -> tuple[str, str, str]:
        return (label, getter("prefill"), getter("decode"))

    rows = [
        both("degrees", lambda ph: figs[ph]["label"]),
        both("GPUs", lambda ph: str(figs[ph]["gpus"])),
        both("nodes", lambda ph: _nodes_text(figs[ph]["nodes"])),
        both("weights per GPU [GB]", lambda ph: _fmt(mems[ph].weights_bytes / GB)),
        both("KV cache per GPU, one request per rank [GB]", lambda ph: _fmt(mems[ph].kv_cache_bytes / GB)),
        both("activations per GPU [GB]", lambda ph: _fmt(mems[ph].activation_bytes / GB)),
        both("runtime reserve per GPU [GB]", lambda ph: _fmt(mems[ph].runtime_reserve_bytes / GB)),
        both("memory, fullest GPU [GB]", lambda ph: _fmt(mems[ph].total_bytes / GB)),
        ("prefill latency of one prompt [ms]", _fmt(p["latency_s"] * 1e3 if p["latency_s"] else None), "—"),
        ("queueing before prefill, mean [ms]", _fmt(p["wait_s"] * 1e3 if p["wait_s"] is not None else None), "—"),
        ("decode step [ms]", "—", _fmt(d["step_ms"])),
        ("decode batch per replica [sequences]", "—", _fmt(d["batch_per_replica"])),
        both("utilisation", lambda ph: _pct(_or_inf(figs[ph]["utilisation"]))),
        both("capacity [requests/s]", lambda ph: _fmt(figs[ph]["capacity_rps"])),
        ("KV cache in use per replica [tokens]", "—", _fmt(d["kv_tokens_used_per_replica"])),
        ("KV cache capacity per replica [tokens]", "—", _fmt(d["kv_capacity_tokens_per_replica"])),
        ("throughput per pool GPU [tokens/s]", _fmt(p["prompt_tokens_per_s_per_pool_gpu"]) + " prompt",
         _fmt(d["output_tokens_per_s_per_pool_gpu"]) + " output"),
    ]  # fmt: skip
    if d.get("admission_limit"):
        rows.append(("decode batch capped by", "—", str(d["admission_limit"])))
    return rows


def whole_rows(evaluation: DisaggEvaluation) -> list[tuple[str, str]]:
    """``(figure [unit], value)`` rows of the whole deployment."""
    whole = whole_figures(evaluation)
    kv = whole["kv_transfer"]
    rows = [("TTFT, mean [s]", _fmt(whole["ttft_s"]))]
    rows += [(f"TTFT, {name} [s]", _fmt(value)) for name, value in whole["ttft_percentiles_s"].items()]
    rows += [
        ("TPOT [ms]", _fmt(whole["tpot_ms"])),
        ("output throughput [tokens/s/GPU]", _fmt(whole["output_tokens_per_s_per_gpu"])),
        ("output throughput [tokens/s]", _fmt(whole["output_tokens_per_s"])),
        ("requests served [requests/s]", _fmt(whole["rate_rps"])),
        ("requests in flight", _fmt(whole["concurrency"])),
        ("waiting for admission, mean [s]", _fmt(whole["outside_wait_s"])),
        ("KV transfer path", "NVLink (inside a node)" if kv["path"] == "nvlink" else "scale-out (across nodes)"),
        ("KV transfer per request [MB]", _fmt(kv["bytes_per_request"] / 1e6)),
        ("KV transfer lanes per request", str(kv["lanes"])),
        ("KV link utilisation", _pct(_or_inf(kv["link_utilisation"]))),
        ("KV transfer time, alone [ms]", _fmt(kv["alone_ms"])),
        ("KV transfer time, mean under load [ms]", _fmt(kv["mean_ms"])),
        ("cross-node bytes per token served [B/token]", _fmt(whole["cross_node_bytes_per_token"])),
    ]
    return rows


def check_rows(evaluation: DisaggEvaluation) -> list[tuple[str, Check, bool]]:
    """Every check in report order: the SLOs of the whole, then each pool's, then the shared
    rules; ``True`` marks the binding one."""
    binding = evaluation.binding
    checks = [
        *evaluation.slo,
        *pool_checks(evaluation, "prefill"),
        *pool_checks(evaluation, "decode"),
        *whole_rules(evaluation),
    ]
    group = {c.name: "whole" for c in evaluation.slo}
    for phase in PHASES:
        group.update({c.name: phase for c in pool_checks(evaluation, phase)})
    return [(group.get(c.name, "whole"), c, binding is not None and c.name == binding.name) for c in checks]


def _header(problem: Problem, evaluation: DisaggEvaluation) -> str:
    plan = evaluation.plan
    kv = evaluation.point.transfer.path.kind
    xpyd = f"{plan.prefill.parallelism.replicas}P{plan.decode.parallelism.replicas}D"
    return (
        f"{evaluation.gpus} GPUs on {evaluation.nodes} node(s) of {problem.fabric.gpus_per_node} "
        f"{problem.hardware.name} | disaggregated {xpyd}:"
        f" prefill {plan.prefill.label} on node(s) {_nodes_text(evaluation.nodes_prefill)}, decode "
        f"{plan.decode.label} on node(s) {_nodes_text(evaluation.nodes_decode)}; KV path "
        f"{'NVLink' if kv == 'nvlink' else 'scale-out'}"
    )


def print_disagg_evaluation(console: Console, problem: Problem, evaluation: DisaggEvaluation, title: str) -> None:
    """Per pool, the whole, and every check with its slack (binding highlighted)."""
    from placer.costmodel.params import declared_param_warnings

    warnings_panel(console, [*declared_param_warnings(problem.model), *evaluation.notes])
    console.print(f"[bold]{escape(title)}[/]: {escape(_header(problem, evaluation))}", highlight=False)
    pools = Table(title="pools (memory: fullest GPU of each pool)", title_justify="left")
    pools.add_column("figure")
    pools.add_column("prefill pool", justify="right")
    pools.add_column("decode pool", justify="right")
    for label, pre, dec in pool_rows(evaluation):
        pools.add_row(escape(label), escape(pre), escape(dec))
    console.print(pools)
    whole = Table(title=f"whole deployment ({evaluation.point.kind}, analytic steady state)", title_justify="left")
    whole.add_column("figure")
    whole.add_column("value", justify="right")
    for label, value in whole_rows(evaluation):
        whole.add_row(escape(label), escape(value))
    console.print(whole)
    if not evaluation.point.stable:
        console.print(f"[bold red]unstable:[/] {escape(str(evaluation.point.reason))}")
    checks = Table(title="constraints", title_justify="left")
    for column in ("constraint", "of", "value", "limit", "slack", "ok"):
        checks.add_column(column, justify="left" if column in ("constraint", "of") else "right")
    for group, check, binding in check_rows(evaluation):
        ok = "[green]yes[/]" if check.ok else "[bold red]VIOLATED[/]"
        checks.add_row(
            f"{check.name}{' (binding)' if binding else ''}",
            group,
            f"{_fmt(check.value)} {check.unit}",
            f"{check.sense} {_fmt(check.limit)} {check.unit}",
            f"{check.slack:+.1%}" if math.isfinite(check.slack) else "—",
            ok,
            style="bold yellow" if binding else "",
        )
    console.print(checks)
    for message in evaluation.rule_messages:
        console.print(f"[bold red]engine rule broken:[/] {escape(message)}")


def disagg_markdown(
    problem: Problem,
    evaluation: DisaggEvaluation,
    document: dict[str, Any],
    lead: Sequence[str],
    pictures: Sequence[tuple[str, str]] = (),
) -> str:
    """The Markdown report; ``lead`` is the aggregated report's opening (title, status, solver,
    objective), shared so that both kinds read alike."""
    lines = [*lead, "## Decisions", "", _header(problem, evaluation), ""]
    lines += ["## Pools", "", "| figure | prefill pool | decode pool |", "|---|---:|---:|"]
    lines += [f"| {label} | {pre} | {dec} |" for label, pre, dec in pool_rows(evaluation)]
    lines += ["", "## Whole deployment", "", "| figure | value |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in whole_rows(evaluation)]
    if not evaluation.point.stable:
        lines += ["", f"**Unstable:** {evaluation.point.reason}"]
    lines += [
        "",
        "## Constraints",
        "",
        "| constraint | of | value | limit | slack | ok |",
        "|---|---|---:|---:|---:|---|",
    ]
    for group, check, binding in check_rows(evaluation):
        name = f"**{check.name}** (binding)" if binding else check.name
        slack = f"{check.slack:+.1%}" if math.isfinite(check.slack) else "—"
        lines.append(
            f"| {name} | {group} | {_fmt(check.value)} {check.unit} | {check.sense} {_fmt(check.limit)} {check.unit} "
            f"| {slack} | {'yes' if check.ok else '**VIOLATED**'} |"
        )
    for message in evaluation.rule_messages:
        lines.append(f"\n**Engine rule broken:** {message}")
    if evaluation.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in evaluation.notes]
    if problem.model.assumptions:
        lines += ["", "## Model assumptions", ""] + [f"- {a}" for a in problem.model.assumptions]
    if pictures:
        lines += ["", "## Pictures", ""]
        for caption, path in pictures:
            lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
