"""vLLM (``vllm serve``): TP, PP, attention DP and expert parallelism.

vLLM folds the MoE layers over the whole ``tp x dp`` group: as experts with
``--enable-expert-parallel`` (so MoE TP is 1), else as tensor-parallel shards (MoE TP = tp x dp).
"""

from __future__ import annotations

from placer.export.common import (
    MODEL_PLACEHOLDER,
    EngineExport,
    ExportInput,
    capability_findings,
    common_notes,
    has_custom_expert_map,
    redundant_slots,
)

EP_DOCS = "https://docs.vllm.ai/en/latest/serving/expert_parallel_deployment/"
SERVING_DOCS = "https://www.mintlify.com/vllm-project/vllm/serving/distributed-serving"

#: flag -> where its name was checked
SOURCES = {
    "--tensor-parallel-size": f"{EP_DOCS} ; vllm/engine/arg_utils.py",
    "--pipeline-parallel-size": f"{SERVING_DOCS} ; vllm/engine/arg_utils.py",
    "--data-parallel-size": EP_DOCS,
    "--enable-expert-parallel": f"{EP_DOCS} (EP size = TP x DP)",
    "VLLM_PP_LAYER_PARTITION": "vllm/envs.py, read by get_pp_indices in vllm/distributed/utils.py "
    "(layers per stage, comma-separated)",
}


def export(data: ExportInput) -> EngineExport:
    result = server(data)
    if data.nodes_per_replica() > 1:
        result.notes.append(
            "The replica spans several nodes: start vLLM's multi-node setup (Ray cluster, or the data-parallel "
            "address/rank options) on the hosts in hostfile order; those per-node options are not generated here."
        )
    return result


def server(data: ExportInput) -> EngineExport:
    """One server's arguments for the plan's degrees (the same on every node of a replica)."""
    par = data.plan.parallelism
    argv = [
        "vllm",
        "serve",
        MODEL_PLACEHOLDER,
        "--tensor-parallel-size",
        str(par.tp),
        "--pipeline-parallel-size",
        str(par.pp),
    ]
    # MoE TP with EP (vLLM's EP spans the whole tp x dp group with MoE TP 1): the capability table
    warnings, unchecked = capability_findings("vllm", data)
    result = EngineExport("vllm", argv, warnings=warnings, notes=common_notes(data) + unchecked)
    if par.dp_attn > 1:
        argv += ["--data-parallel-size", str(par.dp_attn)]
    if data.is_moe and par.ep > 1:
        argv.append("--enable-expert-parallel")
    if par.pp > 1:
        result.env["VLLM_PP_LAYER_PARTITION"] = ",".join(str(n) for n in data.layers_per_stage)
    if data.is_moe and has_custom_expert_map(data):
        result.warnings.append(
            "custom expert map: vLLM loads no static expert placement file; it places experts contiguously "
            "(or rebalances online with EPLB), so the plan's map is not applied"
        )
    if data.is_moe and redundant_slots(data):
        result.warnings.append(
            "redundant expert copies: vLLM adds them only through online EPLB, not from a static map"
        )
    result.sources = {k: v for k, v in SOURCES.items() if k in argv or k in result.env}
    return result
