"""TensorRT-LLM (``trtllm-serve`` with a YAML of LLM API options).

TensorRT-LLM's attention is either tensor-parallel over ``tensor_parallel_size`` GPUs or, with
``enable_attention_dp``, data-parallel over them; the MoE block splits the same GPUs into
``moe_expert_parallel_size x moe_tensor_parallel_size``. A custom placement goes into
``moe_config.load_balancer.initial_global_assignments`` (MoE layer -> expert of each slot),
with ``layer_updates_per_iter: 0`` so it stays static.
"""

from __future__ import annotations

import yaml

from placer.export.common import (
    MODEL_PLACEHOLDER,
    EngineExport,
    ExportInput,
    capability_findings,
    common_notes,
    equal_slots_per_rank,
    expert_slots,
    has_custom_expert_map,
    redundant_slots,
)

CONFIG_FILE = "extra_llm_api_options.yaml"
PARALLEL_DOCS = "https://nvidia.github.io/TensorRT-LLM/features/parallel-strategy.html"

SOURCES = {
    "tensor_parallel_size": PARALLEL_DOCS,
    "pipeline_parallel_size": f"{PARALLEL_DOCS}; tensorrt_llm/llmapi/llm_args.py",
    "moe_expert_parallel_size": PARALLEL_DOCS,
    "moe_tensor_parallel_size": f"{PARALLEL_DOCS} (moe_tp x moe_ep must equal tensor_parallel_size)",
    "enable_attention_dp": PARALLEL_DOCS,
    "moe_config.load_balancer": "NVIDIA/TensorRT-LLM MoeLoadBalancerConfig(num_slots, initial_global_assignments) "
    "in tests/integration/defs/accuracy/test_llm_api_pytorch.py; layer_updates_per_iter",
    "--extra_llm_api_options": "trtllm-serve option for the YAML file (https://nvidia.github.io/TensorRT-LLM/ "
    "commands/trtllm-serve)",
}


def options(data: ExportInput, warnings: list[str]) -> dict[str, object]:
    par = data.plan.parallelism
    config: dict[str, object] = {
        "tensor_parallel_size": par.stage_width,
        "pipeline_parallel_size": par.pp,
        "enable_attention_dp": par.dp_attn > 1,
    }
    if data.is_moe:
        config["moe_expert_parallel_size"] = par.ep
        config["moe_tensor_parallel_size"] = par.tp_moe
        redundant = redundant_slots(data)
        if has_custom_expert_map(data) or redundant:
            if redundant is None or not equal_slots_per_rank(data):
                warnings.append("expert map not exported: TensorRT-LLM needs equal slots per EP rank and per layer")
            else:
                slots = expert_slots(data)
                config["moe_config"] = {
                    "load_balancer": {
                        "num_slots": data.problem.model.moe.num_experts + redundant,  # type: ignore[union-attr]
                        "layer_updates_per_iter": 0,
                        "initial_global_assignments": {
                            layer: [e for rank in ranks for e in rank] for layer, ranks in slots.items()
                        },
                    }
                }
    return config


def export(data: ExportInput) -> EngineExport:
    # attention tp x dp and a partition other than TensorRT-LLM's own split: the capability table
    warnings, unchecked = capability_findings("trtllm", data)
    config = options(data, warnings)
    argv = ["trtllm-serve", MODEL_PLACEHOLDER, "--extra_llm_api_options", CONFIG_FILE]
    result = EngineExport("trtllm", argv, warnings=warnings, notes=common_notes(data) + unchecked)
    result.files[CONFIG_FILE] = yaml.safe_dump(config, sort_keys=False)
    used = set(config) | {"--extra_llm_api_options"}
    if "moe_config" in config:
        used.add("moe_config.load_balancer")
    result.sources = {k: v for k, v in SOURCES.items() if k in used}
    return result
