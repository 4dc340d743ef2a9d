"""Readable terminal output (rich): units on every figure, the binding constraint highlighted."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from placer.costmodel.layers import attention_flops_per_context_token, kv_bytes_per_token
from placer.costmodel.params import count_params, declared_param_warnings, weight_bytes
from placer.evaluator import Evaluation
from placer.problem import Problem
from placer.report.objective import describe_terms, objective_phase, term_label, term_text
from placer.report.text import fmt, warnings_panel
from placer.result import Result
from placer.schema import HardwareProfile, ModelSpec
from placer.schema.model import WEIGHT_COMPONENTS
from placer.serving_disagg import DisaggEvaluation

GB = 1e9

#: Metric key -> (label, unit, scale applied to the stored value)
METRIC_LABELS: dict[str, tuple[str, str, float]] = {
    "ttft_s": ("TTFT", "s", 1.0),
    "tpot_ms": ("TPOT", "ms", 1.0),
    "prefill_tokens_per_ms_per_gpu": ("prefill throughput", "tokens/ms/GPU", 1.0),
    "decode_tokens_per_ms_per_gpu": ("decode throughput", "tokens/ms/GPU", 1.0),
    "memory_bytes_per_gpu_max": ("memory, fullest GPU", "GB", 1e-9),
    "cross_node_bytes_per_token": ("cross-node all-to-all, node-dedup", "B/token/MoE layer", 1.0),
    "cross_node_bytes_per_token_plain": ("cross-node all-to-all, plain", "B/token/MoE layer", 1.0),
    "load_imbalance_max": ("expert load, max/mean", "", 1.0),
}


def print_evaluation(console: Console, problem: Problem, evaluation: Evaluation | DisaggEvaluation, title: str) -> None:
    """Degrees, stages with memory, metrics (claimed beside computed) and every constraint; a
    disaggregated plan per pool and for the whole (:mod:`placer.report.disagg`)."""
    if isinstance(evaluation, DisaggEvaluation):
        from placer.report.disagg import print_disagg_evaluation

        print_disagg_evaluation(console, problem, evaluation, title)
        return
    plan = evaluation.plan
    par = plan.parallelism
    warnings_panel(console, [*declared_param_warnings(problem.model), *evaluation.notes])
    console.print(
        f"[bold]{title}[/]: {evaluation.gpus} GPUs on {evaluation.nodes} node(s) of {problem.fabric.gpus_per_node} "
        f"{problem.hardware.name} | pp {par.pp} · tp {par.tp} · dp_attn {par.dp_attn} · ep {par.ep} · "
        f"tp_moe {par.tp_moe} · replicas {par.replicas}"
    )
    stages = Table(title="stages (fullest GPU of each)", title_justify="left")
    for column in (
        "stage",
        "layers",
        "weights GB",
        "KV cache GB",
        "activations GB",
        "reserve GB",
        "total GB",
        "prefill ms/µb",
        "decode ms/µb",
    ):
        stages.add_column(column, justify="right")
    for st in evaluation.stages:
        mem = st.memory
        stages.add_row(
            str(st.index),
            f"{st.layers[0]}–{st.layers[1]}",
            fmt(mem.weights_bytes / GB),
            fmt(mem.kv_cache_bytes / GB),
            fmt(mem.activation_bytes / GB),
            fmt(mem.runtime_reserve_bytes / GB),
            fmt(mem.total_bytes / GB),
            fmt(st.prefill_s * 1e3),
            fmt(st.decode_s * 1e3),
        )
    console.print(stages)

    metrics = Table(title="figures", title_justify="left")
    metrics.add_column("metric")
    metrics.add_column("computed", justify="right")
    has_claims = bool(plan.claimed)
    if has_claims:
        metrics.add_column("claimed", justify="right")
        metrics.add_column("claimed / computed", justify="right")
    computed = evaluation.metrics()
    for key, (label, unit, scale) in METRIC_LABELS.items():
        row = [escape(f"{label} [{unit}]") if unit else label, fmt(computed[key] * scale)]
        if has_claims:
            claim = plan.claimed.get(key)
            if isinstance(claim, (int, float)):
                ratio = claim / computed[key] if computed[key] else float("inf")
                row += [fmt(claim * scale), f"{ratio:.3g}x"]
            else:
                row += ["", ""]
        metrics.add_row(*row)
    console.print(metrics)
    if evaluation.serving is not None:
        print_serving(console, evaluation.serving.to_dict())  # type: ignore[attr-defined]
    if isinstance(plan.claimed.get("note"), str):
        console.print(f"[dim]claims: {plan.claimed['note']}[/]")
    print_checks(console, evaluation)
    if evaluation.uniform_routing and problem.model.moe is not None:
        console.print("[dim]routing: no statistics given; uniform, independent top-k routing assumed.[/]")


#: Serving-point key -> (label, unit); the figures of ``placer.serving.ServingPoint.to_dict``.
SERVING_LABELS: dict[str, tuple[str, str]] = {
    "concurrency_per_replica": ("requests in flight per replica", ""),
    "decode_batch_per_replica": ("decode batch per replica", "sequences"),
    "prefill_tokens_per_step": ("prefill tokens per step", "tokens"),
    "step_ms": ("engine step", "ms"),
    "ttft_s": ("TTFT, mean", "s"),
    "ttft_p50_s": ("TTFT, p50", "s"),
    "ttft_p90_s": ("TTFT, p90", "s"),
    "ttft_p99_s": ("TTFT, p99", "s"),
    "tpot_ms": ("TPOT", "ms"),
    "output_tokens_per_s_per_gpu": ("output throughput", "tokens/s/GPU"),
    "output_tokens_per_s_per_replica": ("output throughput", "tokens/s/replica"),
    "requests_per_s": ("requests served", "requests/s"),
    "wait_s": ("queueing before prefill, mean", "s"),
    "kv_tokens_used": ("KV cache in use per replica", "tokens"),
    "kv_capacity_tokens": ("KV cache capacity per replica", "tokens"),
    "utilisation": ("utilisation", ""),
    "prefill_utilisation": ("prefill budget in use", ""),
}


def print_serving(console: Console, point: dict[str, object]) -> None:
    """The analytic steady state of a serving workload (docs/cost-model.md, Q1-Q9)."""
    table = Table(title=f"serving steady state ({point['kind']}, analytic)", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, (label, unit) in SERVING_LABELS.items():
        value = point.get(key)
        if isinstance(value, (int, float)):
            table.add_row(escape(f"{label} [{unit}]") if unit else label, fmt(float(value)))
    if point.get("admission_limit"):
        table.add_row("decode batch capped by", str(point["admission_limit"]))
    console.print(table)
    if not point.get("stable"):
        console.print(f"[bold red]unstable:[/] {escape(str(point.get('reason')))}")


def print_checks(console: Console, evaluation: Evaluation) -> None:
    table = Table(title="constraints", title_justify="left")
    for column in ("constraint", "value", "limit", "slack", "ok"):
        table.add_column(column, justify="right" if column != "constraint" else "left")
    binding = evaluation.binding
    for check in evaluation.slo:
        style = "bold yellow" if binding is not None and check.name == binding.name else ""
        ok = "[green]yes[/]" if check.ok else "[bold red]VIOLATED[/]"
        table.add_row(
            f"{check.name}{' (binding)' if style else ''}",
            f"{fmt(check.value)} {check.unit}",
            f"{check.sense} {fmt(check.limit)} {check.unit}",
            f"{check.slack:+.1%}",
            ok,
            style=style,
        )
    console.print(table)
    for message in evaluation.rule_messages:
        console.print(f"[bold red]engine rule broken:[/] {message}")


def print_model(console: Console, model: ModelSpec) -> None:
    """Parameter counts, per-layer weights, KV bytes per token and FLOPs per token."""
    counts = count_params(model)
    warnings_panel(console, declared_param_warnings(model, counts))
    console.print(f"[bold]{model.name}[/] {model.description}")
    summary = Table(show_header=False)
    summary.add_column("")
    summary.add_column("", justify="right")
    summary.add_row("total parameters", f"{counts.total / 1e9:.4g}B")
    summary.add_row("active parameters per token", f"{counts.active / 1e9:.4g}B")
    summary.add_row("  convention", "embedding table and LM head counted in full")
    summary.add_row("active, excluding the input embedding", f"{counts.active_excluding_embedding / 1e9:.4g}B")
    summary.add_row("weights", f"{weight_bytes(model, counts) / GB:.4g} GB ({model.precision.weights})")
    if model.precision.mixed:
        parts = ", ".join(f"{c} {model.precision.of(c)}" for c in WEIGHT_COMPONENTS)
        summary.add_row("  per component", parts)
    summary.add_row("KV cache per token", f"{kv_bytes_per_token(model):,.0f} B ({model.precision.kv_cache})")
    att = model.attention
    if att.layer_types is not None:
        kinds = {k: att.layer_types.count(k) for k in ("full", "sliding", "chunked") if k in att.layer_types}
        spans = {"sliding": f" (window {att.sliding_window})", "chunked": f" (chunk {att.attention_chunk_size})"}
        summary.add_row("attention layers", ", ".join(f"{n} {k}{spans.get(k, '')}" for k, n in kinds.items()))
    if att.sinks:
        summary.add_row("attention sinks", "yes (one logit per head; no KV, negligible work)")
    summary.add_row(
        "linear FLOPs per token", f"{2 * counts.active_excluding_embedding / 1e9:.4g} GFLOP (+ attention, see below)"
    )
    summary.add_row(
        "attention FLOPs per token per context token", f"{attention_flops_per_context_token(model):,.0f} FLOP"
    )
    console.print(summary)
    layers = Table(title="per-layer weights (parameters)", title_justify="left")
    for column in ("layers", "kind", "attention", "dense FFN", "router", "routed experts", "shared experts", "total"):
        layers.add_column(column, justify="right")
    for first, last, lp in _layer_groups(counts.layers):
        kind = "MoE" if lp.num_routed_experts else "dense"
        layers.add_row(
            f"{first}–{last}",
            kind,
            fmt(lp.attention),
            fmt(lp.dense_ffn),
            fmt(lp.router),
            f"{lp.num_routed_experts} x {fmt(lp.routed_expert)}" if lp.num_routed_experts else "0",
            fmt(lp.shared_experts),
            fmt(lp.total),
        )
    console.print(layers)
    for assumption in model.assumptions:
        console.print(f"[dim]assumption: {assumption}[/]")


def _layer_groups(layers):  # type: ignore[no-untyped-def]
    groups = []
    start = 0
    for i in range(1, len(layers) + 1):
        if i == len(layers) or layers[i] != layers[start]:
            groups.append((start, i - 1, layers[start]))
            start = i
    return groups


def print_hardware(console: Console, profiles: Iterable[HardwareProfile]) -> None:
    table = Table(title="hardware catalogue (dense FLOPS; bandwidth per GPU per direction)", title_justify="left")
    for column in (
        "id",
        "BF16 TFLOPS",
        "FP8 TFLOPS",
        "HBM GB",
        "HBM TB/s",
        "GEMM MFU",
        "HBM util",
        "NVLink GB/s",
        "scale-out GB/s",
        "GPUs/node",
        "$/GPU-h",
    ):
        table.add_column(column, justify="right" if column != "id" else "left")
    for hw in profiles:
        tflops = hw.dense_tflops
        table.add_row(
            hw.name,
            fmt(tflops.get("bf16", tflops.get("fp16", 0))),
            fmt(tflops["fp8"]) if "fp8" in tflops else "—",
            fmt(hw.hbm_capacity_gb),
            fmt(hw.hbm_bandwidth_tb_per_s),
            f"{hw.efficiency.gemm_mfu:.2f}",
            f"{hw.efficiency.hbm_bandwidth_utilisation:.2f}",
            fmt(hw.scaleup_bandwidth_gb_per_s),
            fmt(hw.scaleout_bandwidth_gb_per_s),
            str(hw.gpus_per_node),
            f"{hw.price_per_gpu_hour_usd:.2f}" if hw.price_per_gpu_hour_usd else "—",
        )
    console.print(table)


def print_result(console: Console, problem: Problem, result: Result) -> None:
    """A solve: status, objective, bound, gap and time, then the plan's figures or the explanation."""
    from placer.result import SolveStatus

    status = result.status
    colour = {"optimal": "green", "feasible": "yellow"}.get(status.value, "red")
    gap = f"{result.gap:.2%}" if result.gap is not None else "—"
    search = result.search
    phase = objective_phase(problem)
    label = term_label(result.objective_term, phase) if result.objective_term else None
    unit = f" {label.unit}" if label is not None and label.unit and label.unit != label.label else ""

    def with_unit(value: float | None) -> str:
        return "—" if value is None else f"{fmt(value)}{unit}"

    console.print(
        f"[bold {colour}]{status.value.upper()}[/] ({result.backend}, {result.wall_s:.2f} s) | objective "
        f"{escape(label.label) if label else '—'} = {escape(with_unit(result.objective))}, bound "
        f"{escape(with_unit(result.bound))}, gap {gap} | "
        f"{search.configurations_in_model} configurations of degrees in the model, "
        f"at most {search.gpu_cap} GPUs ({search.gpu_cap_reason})"
    )
    if result.interrupted:
        console.print(
            "[bold yellow]interrupted (Ctrl-C)[/]: the best plan found before the interrupt, with its gap; "
            "not proven optimal"
        )
    if status == SolveStatus.INFEASIBLE:
        console.print(
            Panel("\n".join(f"• {line}" for line in result.explanation), title="no plan exists", border_style="red")
        )
        return
    if result.evaluation is None:
        console.print("[red]no plan found within the time limit[/]")
        return
    if status == SolveStatus.NO_PLAN:  # a plan was placed but breaks a constraint: not a solution
        console.print(Panel("\n".join(f"• {line}" for line in result.explanation), title="no plan", border_style="red"))
        print_evaluation(console, problem, result.evaluation, "last placed plan (breaks a constraint; not a solution)")
        return
    if result.terms:
        described = describe_terms(dict(result.terms), phase, result.evaluation)
        console.print(
            "objective terms (lexicographic): " + "; ".join(term_text(entry, fmt) for entry in described),
            highlight=False,
            markup=False,
        )
    title = "proven-optimal plan" if status == SolveStatus.OPTIMAL else "best plan found (not proven optimal)"
    print_evaluation(console, problem, result.evaluation, title)
    placement = result.placement
    if placement is not None:
        from placer.costmodel.dispatch import copy_bytes_per_token
        from placer.report.placement import print_placement

        print_placement(console, placement, copy_bytes_per_token(problem))


def degrees_text(row: dict) -> str:
    """A comparison row's degrees ``pp·tp·dp_attn·ep·tp_moe·replicas``; a disaggregated row
    ``P <prefill pool's> + D <decode pool's>``."""

    def dots(p: dict) -> str:
        return f"{p['pp']}·{p['tp']}·{p['dp_attn']}·{p['ep']}·{p['tp_moe']}·{p['replicas']}"

    if row.get("mode") == "disaggregated":
        return f"P {dots(row['prefill']['parallelism'])} + D {dots(row['decode']['parallelism'])}"
    return dots(row["parallelism"])


def _opt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else fmt(value, digits)


def print_comparison(console: Console, document: dict) -> None:
    """One row per hardware: size, degrees, latency, throughput by phase, headroom, traffic, the
    binding constraint (highlighted), cost when the profile has a price, status and gap; the
    reason of every hardware without a plan in a panel below."""
    table = Table(
        title=f"{document['instance']} across hardware (instance hardware: {document['instance_hardware']})",
        title_justify="left",
    )
    columns = (
        "hardware", "GPUs\n(nodes)", "pp·tp·dp·\nep·tpm·R", "TTFT\ns", "TPOT\nms", "tokens/ms/GPU\nprefill | decode",
        "headroom\nGB", "x-node B/\ntoken/layer", "binding\n(slack)", "$/M out\ntokens", "status\n(gap)",
    )  # fmt: skip
    for column in columns:
        left = column.split("\n")[0] in ("hardware", "binding", "status", "pp·tp·dp·")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    reasons = []
    for row in document["rows"]:
        status = row["status"]
        colour = {"optimal": "green", "feasible": "yellow"}.get(status, "red")
        gap = f" ({row['gap']:.1%})" if row.get("gap") else ""
        name = row["hardware"] + (f"\n{row['solved_as']}" if row.get("solved_as") else "")  # kind: split comparison
        if "gpus" not in row:
            table.add_row(name, *["—"] * 9, f"[{colour}]{status}[/]")
            reasons.append(f"{row.get('name', row['hardware'])}: {row.get('reason', '')}")
            continue
        degrees = degrees_text(row)
        binding = row.get("binding_constraint")
        binding_text = f"[bold yellow]{binding}[/] ({row['binding_slack']:+.0%})" if binding else "—"
        cost = _opt(row.get("usd_per_million_output_tokens"), 3)
        table.add_row(
            name, f"{row['gpus']} ({row['nodes']})", degrees, fmt(row["ttft_s"]), fmt(row["tpot_ms"]),
            f"{fmt(row['prefill_tokens_per_ms_per_gpu'])} | {fmt(row['decode_tokens_per_ms_per_gpu'])}",
            fmt(row["memory_headroom_gb"]), fmt(row["cross_node_bytes_per_token"]), binding_text, cost,
            f"[{colour}]{status}[/]{gap}",
        )  # fmt: skip
    console.print(table)
    if reasons:
        console.print(Panel("\n".join(f"• {r}" for r in reasons), title="no plan", border_style="red"))
    console.print(
        "[dim]degrees pp·tp·dp_attn·ep·tp_moe·replicas; throughput per GPU by phase; headroom = usable HBM less the "
        "fullest GPU; x-node = all-to-all bytes per token per MoE layer leaving the node (dedup); $/M tokens = "
        "GPU-hour price over decode throughput (— without a price; prompt-token cost in the Markdown).[/]"
    )
    if any(row.get("mode") == "disaggregated" for row in document["rows"]):
        console.print(
            "[dim]P … + D …: disaggregated, the prefill pool's and the decode pool's degrees; GPUs, throughput per "
            "GPU and headroom (fullest GPU of either pool) count both pools.[/]"
        )
    if document.get("kinds"):
        print_kinds(console, document["kinds"])
    sweep = document.get("sweep")
    if sweep:
        print_sweep(console, sweep)


def print_kinds(console: Console, kinds: list) -> None:
    """Per hardware of a split comparison: the better kind of plan and by how much, in throughput per GPU."""
    lines = []
    for item in kinds:
        a, d = item["aggregated"], item["disaggregated"]
        ratio = item["throughput_per_gpu_ratio"]
        figures = (
            f"disaggregated {_opt(d['decode_tokens_per_ms_per_gpu'])} vs aggregated "
            f"{_opt(a['decode_tokens_per_ms_per_gpu'])} output tokens/ms/GPU"
            + (f" ({ratio:.3f}x)" if ratio is not None else "")
            + f", {d['gpus'] or d['status']} vs {a['gpus'] or a['status']} GPUs"
        )
        lines.append(f"{item['hardware']}: {figures}; better: {item['better'] or 'neither'}")
    console.print(Panel("\n".join(lines), title="disaggregated against aggregated (same SLOs)", border_style="blue"))


def print_sweep(console: Console, sweep: dict) -> None:
    """GPUs needed per SLO value (rows) and hardware (columns)."""
    key = sweep["slo"]
    hardware = list(dict.fromkeys(r["hardware"] for r in sweep["rows"]))
    values = sorted({r["slo_overrides"][key] for r in sweep["rows"]})
    table = Table(title=f"GPUs needed against {key}", title_justify="left")
    table.add_column(key, justify="right")
    for hw in hardware:
        table.add_column(hw, justify="right")
    for value in values:
        cells = []
        for hw in hardware:
            row = next(r for r in sweep["rows"] if r["hardware"] == hw and r["slo_overrides"][key] == value)
            cells.append(str(row["gpus"]) if "gpus" in row else f"[red]{row['status']}[/]")
        table.add_row(fmt(value), *cells)
    console.print(table)


def print_export(console: Console, export) -> None:  # type: ignore[no-untyped-def]
    """An engine export: the command, then every part of the plan the engine cannot express."""
    warnings_panel(console, export.warnings)
    console.print(Panel(export.command_line(), title=f"{export.engine} launch", border_style="green"))
    for note in export.notes:
        console.print(f"[dim]• {note}[/]")
