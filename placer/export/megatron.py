"""Megatron-Core (``megatron/training/arguments.py``): TP, PP, EP and expert TP, with uneven
first/last stages or a full pipeline layout string.

Megatron's data-parallel size is implied (world / (tp x pp) = replicas x dp_attn); its MoE
folding puts ``ep x expert_tp`` over the same ``tp x dp`` GPUs, as placer does.
"""

from __future__ import annotations

from placer.export.common import EngineExport, ExportInput, common_notes, has_custom_expert_map, redundant_slots

ARGUMENTS = "NVIDIA/Megatron-LM megatron/training/arguments.py"

SOURCES = {
    "--tensor-model-parallel-size": ARGUMENTS,
    "--pipeline-model-parallel-size": ARGUMENTS,
    "--expert-model-parallel-size": ARGUMENTS,
    "--expert-tensor-parallel-size": ARGUMENTS,
    "--decoder-first-pipeline-num-layers": f"{ARGUMENTS} (TransformerConfig.num_layers_in_first_pipeline_stage)",
    "--decoder-last-pipeline-num-layers": f"{ARGUMENTS} (TransformerConfig.num_layers_in_last_pipeline_stage)",
    "--pipeline-model-parallel-layout": f"{ARGUMENTS} (experimental; 'E' embedding, 't' layer, "
    "'|' stage, 'L' loss/head)",
}


def partition_arguments(layers: list[int]) -> list[str]:
    """Uneven first/last stage options when the middle stages are even, else a layout string."""
    if len(layers) == 1 or len(set(layers)) == 1:
        return []
    middle = layers[1:-1]
    if len(set(middle)) <= 1:
        args = []
        if not middle or layers[0] != middle[0]:
            args += ["--decoder-first-pipeline-num-layers", str(layers[0])]
        if not middle or layers[-1] != middle[0]:
            args += ["--decoder-last-pipeline-num-layers", str(layers[-1])]
        return args
    stages = [f"t*{n}" for n in layers]
    stages[0] = "E" + stages[0]
    stages[-1] = stages[-1] + "L"
    return ["--pipeline-model-parallel-layout", "|".join(stages)]


def export(data: ExportInput) -> EngineExport:
    par = data.plan.parallelism
    argv = [
        "--tensor-model-parallel-size", str(par.tp),
        "--pipeline-model-parallel-size", str(par.pp),
    ]  # fmt: skip
    if data.is_moe:
        argv += ["--expert-model-parallel-size", str(par.ep), "--expert-tensor-parallel-size", str(par.tp_moe)]
    argv += partition_arguments(data.layers_per_stage)
    result = EngineExport("megatron", argv, notes=common_notes(data))
    result.notes.append(
        f"These are Megatron-Core model-parallel arguments; append them to the launch of your Megatron script "
        f"(world size {data.plan.gpus}; data-parallel size follows as {par.replicas * par.dp_attn})."
    )
    if data.is_moe and (has_custom_expert_map(data) or redundant_slots(data)):
        result.warnings.append(
            "custom expert map / redundant experts: Megatron-Core assigns experts to EP ranks contiguously and has no "
            "option for a placement map, so the plan's map is not applied"
        )
    result.sources = {k: v for k, v in SOURCES.items() if k in argv}
    return result
