"""Why an instance has no plan: each constraint alone, its best reachable value, and the relaxation.

Each SLO is relaxed against memory and the engine rules only, with stages assumed perfectly
balanced (the largest stage is at least the mean). The figures are therefore *bounds*: no plan
does better, so an SLO beyond its bound cannot be met, whatever else is relaxed.
"""

from __future__ import annotations

from dataclasses import dataclass

from placer.catalogue.engines import CAPABILITY_BY_NAME, Usage, row, unsupported
from placer.costmodel.phase import Phase
from placer.costmodel.rules import rule_outcomes
from placer.costmodel.tables import default_expert_maps, layer_costs, stage_pattern
from placer.formulation.data import Config, FormulationData, iter_parallelisms
from placer.topology import default_layout

#: Operation -> (what it is, verb agreeing with it): "GEMMs and weight reads take", "the router takes".
OP_CAUSES: dict[str, tuple[str, str]] = {
    "attn_core": ("attention over the context (in decode: reading the KV cache)", "takes"),
    "attn_proj": ("attention projection weights", "take"),
    "routed_experts": ("routed-expert GEMMs and weight reads", "take"),
    "dense_ffn": ("the dense FFN", "takes"),
    "shared_experts": ("shared experts", "take"),
    "router": ("the router", "takes"),
}


def _num(value: float) -> str:
    """Three significant figures, never in scientific notation (3,250 not 3.25e+03)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


@dataclass(frozen=True)
class Reach:
    """Best value of one figure over all configurations, and where it is reached."""

    value: float
    config: Config | None


def _mean_stage(config: Config, counts: tuple[int, ...], phase: Phase) -> float:
    body = sum(n * t for n, t in zip(counts, config.layer_s[phase], strict=True))
    extras = config.embed_s[phase] + config.head_s[phase]
    return (body + extras) / config.par.pp


def _memory_ok(data: FormulationData, config: Config) -> bool:
    counts = data.class_counts
    total = sum(n * b for n, b in zip(counts, config.layer_bytes, strict=True)) + config.embed_bytes + config.head_bytes
    return config.admissible and total / config.par.pp + config.fixed_bytes <= data.usable_bytes


def _dominant_op(data: FormulationData, config: Config, phase: str) -> str:
    """The operation that takes most of one MoE (or dense) layer's time in ``phase``."""
    problem = data.problem
    par = config.par
    costs = layer_costs(
        problem, par, stage_pattern(default_layout(par, problem.fabric), 0, 0), default_expert_maps(problem, par)
    )
    detail = (costs.prefill_detail if phase == "prefill" else costs.decode_detail)[-1]
    op, seconds = max(zip(detail.ops, detail.op_times_s, strict=True), key=lambda pair: pair[1])
    share = seconds / detail.time_s if detail.time_s else 0.0
    hw = problem.hardware
    eff = hw.efficiency
    compute_s = op.flops / (
        hw.peak_flops_per_s("bf16") * (eff.attention_mfu if op.kind == "attention" else eff.gemm_mfu)
    )
    memory_s = op.hbm_bytes / (hw.hbm_bytes_per_s * eff.hbm_bandwidth_utilisation)
    if memory_s >= compute_s:
        effective_tb_per_s = hw.hbm_bandwidth_tb_per_s * eff.hbm_bandwidth_utilisation
        limit = f"memory-bound at {effective_tb_per_s:.3g} TB/s effective HBM bandwidth"
    else:
        limit = "compute-bound"
    comm_share = detail.comm_s / detail.time_s if detail.time_s else 0.0
    cause, verb = OP_CAUSES.get(op.name, (op.name, "takes"))
    text = f"{cause} {verb} {share:.0%} of a layer's {phase} time, {limit}"
    if comm_share > share:
        text = f"communication takes {comm_share:.0%} of a layer's {phase} time"
    return text


#: Degree tuples the engine explanation looks at, at most (it checks rules only, no costing).
ENGINE_EXPLAIN_LIMIT = 20_000


def engine_lines(data: FormulationData) -> list[str]:
    """(R7) Which capabilities the instance's engine lacks that configurations passing (R1)-(R6)
    would need, with how many each excludes and the capability table's source."""
    problem = data.problem
    if problem.engine == "any":
        return []
    excluded: dict[str, int] = {}
    others = 0
    is_moe = problem.model.moe is not None
    tokens = problem.workload.decode_tokens_per_step
    for index, par in enumerate(iter_parallelisms(problem, data.gpu_cap)):
        if index >= ENGINE_EXPLAIN_LIMIT:
            break
        layout = default_layout(par, problem.fabric)
        if not all(rule_outcomes(problem.model, problem.fabric, par, layout).values()):
            continue
        lacking = unsupported(problem.engine, Usage(par, is_moe, None, tokens))
        if not lacking:
            others += 1
        for finding in lacking:
            excluded[finding.row.capability] = excluded.get(finding.row.capability, 0) + 1
    lines = []
    for name, count in sorted(excluded.items(), key=lambda item: -item[1]):
        r = row(problem.engine, name)
        lines.append(
            f"engine {problem.engine} cannot run {CAPABILITY_BY_NAME[name].description}: it excludes {count} "
            f"configuration(s) that pass rules R1-R6, {others} remain (source: {r.source}); "
            'set engine to "any" or another engine to search them'
        )
    return lines


def explain_infeasible(data: FormulationData) -> list[str]:
    """Lines naming each constraint that cannot be met, its best reachable value and the relaxation."""
    problem = data.problem
    slo, workload = problem.slo, problem.workload
    counts = data.class_counts
    lines: list[str] = engine_lines(data)
    fits = [c for c in data.configs if _memory_ok(data, c)]
    if not data.configs or not fits:
        lines.append(
            f"memory: no configuration of at most {data.gpu_cap} GPUs ({data.gpu_cap_reason}) holds the model, its KV "
            f"cache for {workload.batch_size} sequences of {workload.max_context_tokens:,} tokens and the "
            "workspace within "
            f"{data.usable_bytes / 1e9:.1f} GB per GPU; allow more GPUs or shorten the context"
        )
        return lines
    if slo.min_decode_tokens_per_ms_per_gpu is not None:
        best = max(
            fits,
            key=lambda c: (
                data.decode_tokens
                / (c.gpus * max(c.micro["decode"] * _mean_stage(c, counts, "decode"), c.total_s("decode", counts)))
            ),
        )
        value = (
            data.decode_tokens
            / (
                best.gpus
                * max(best.micro["decode"] * _mean_stage(best, counts, "decode"), best.total_s("decode", counts))
            )
            / 1e3
        )
        if value < slo.min_decode_tokens_per_ms_per_gpu:
            lines.append(
                f"decode throughput cannot exceed {_num(value)} tokens/ms/GPU at {workload.decode_context:,} "
                "tokens of context "
                f"(best of {len(fits)} configurations that fit in memory, reached with {best.gpus} GPU(s)): "
                f"{_dominant_op(data, best, 'decode')}. Relax min_decode_tokens_per_ms_per_gpu to {_num(value)} "
                "or less "
                f"(asked {slo.min_decode_tokens_per_ms_per_gpu:g}), or shorten the context"
            )
    if slo.min_prefill_tokens_per_ms_per_gpu is not None:
        best = max(
            fits, key=lambda c: data.prefill_tokens / (c.gpus * c.micro["prefill"] * _mean_stage(c, counts, "prefill"))
        )
        value = data.prefill_tokens / (best.gpus * best.micro["prefill"] * _mean_stage(best, counts, "prefill")) / 1e3
        if value < slo.min_prefill_tokens_per_ms_per_gpu:
            lines.append(
                f"prefill throughput cannot exceed {_num(value)} tokens/ms/GPU at "
                f"{workload.prompt_tokens.max:,}-token prompts "
                f"(reached with {best.gpus} GPU(s)): {_dominant_op(data, best, 'prefill')}. Relax "
                f"min_prefill_tokens_per_ms_per_gpu to {_num(value)} or less"
            )
    if slo.ttft_s is not None:
        best = min(
            fits,
            key=lambda c: c.total_s("prefill", counts) + (c.micro["prefill"] - 1) * _mean_stage(c, counts, "prefill"),
        )
        value = best.total_s("prefill", counts) + (best.micro["prefill"] - 1) * _mean_stage(best, counts, "prefill")
        if value > slo.ttft_s:
            lines.append(
                f"TTFT cannot go below {_num(value)} s for {workload.batch_size} prompts of "
                f"{workload.prompt_tokens.max:,} tokens "
                f"with at most {data.gpu_cap} GPUs (reached with {best.gpus}): {_dominant_op(data, best, 'prefill')}. "
                f"Relax ttft_s to {_num(value)} s or more, or allow more GPUs"
            )
    if slo.tpot_ms is not None:
        best = min(
            fits, key=lambda c: max(c.micro["decode"] * _mean_stage(c, counts, "decode"), c.total_s("decode", counts))
        )
        step_s = max(best.micro["decode"] * _mean_stage(best, counts, "decode"), best.total_s("decode", counts))
        value = step_s / workload.output_tokens_per_step * 1e3
        if value > slo.tpot_ms:
            lines.append(
                f"TPOT cannot go below {_num(value)} ms at {workload.decode_context:,} tokens of context (reached with "
                f"{best.gpus} GPUs): {_dominant_op(data, best, 'decode')}. Relax tpot_ms to {_num(value)} or more"
            )
    if not lines:
        lines.append(
            "every SLO can be met on its own, but not all together within memory and the engine rules with at most "
            f"{data.gpu_cap} GPUs ({data.gpu_cap_reason}); relax the tightest SLO or allow more GPUs"
        )
    return lines
