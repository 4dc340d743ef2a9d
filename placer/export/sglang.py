"""SGLang (``python -m sglang.launch_server``): one server per replica, ``--tp-size`` the stage
width, DP attention, EP with a static expert location file.

The expert location file is ``{"physical_to_logical_map": [[...], ...]}``: one row per model
layer (``num_hidden_layers``, dense layers included), each row ``num_experts + redundant`` long;
physical slot ``p`` lives on EP rank ``p // (row length / ep)``. Dense layers get the trivial
row ``p % num_experts`` (what SGLang's own ``init_trivial`` builds; the MoE code never reads it).
"""

from __future__ import annotations

import json

from placer.export.common import (
    MODEL_PLACEHOLDER,
    EngineExport,
    ExportInput,
    capability_findings,
    common_notes,
    equal_slots_per_rank,
    expert_slots,
    redundant_slots,
)

EXPERT_LOCATION_FILE = "expert_location.json"

SOURCES = {
    "--tp-size": "https://docs.sglang.io/cookbook/base/reference/server_arguments (also --tp, --tensor-parallel-size)",
    "--dp-size": "https://docs.sglang.io/cookbook/base/reference/server_arguments (also --dp)",
    "--enable-dp-attention": "https://docs.sglang.io/cookbook/base/reference/server_arguments",
    "--ep-size": "https://docs.sglang.io/cookbook/base/reference/server_arguments (also --ep)",
    "--pp-size": "sgl-project/sglang docs/advanced_features/server_arguments.md; python/sglang/srt/server_args.py",
    "--nnodes": "sgl-project/sglang ms_example/start_server.sh; python/sglang/srt/server_args.py",
    "--node-rank": "sgl-project/sglang ms_example/start_server.sh; python/sglang/srt/server_args.py",
    "--dist-init-addr": "sgl-project/sglang ms_example/start_server.sh; python/sglang/srt/server_args.py",
    "--ep-num-redundant-experts": "python/sglang/srt/eplb/expert_location.py "
    "(_init_common: num_physical = logical + ep_num_redundant_experts)",
    "--init-expert-location": "python/sglang/srt/eplb/expert_location.py (compute_initial_expert_location_metadata: "
    "JSON with physical_to_logical_map -> init_by_mapping)",
    "--ep-dispatch-algorithm": "python/sglang/srt/eplb/expert_location.py "
    "(static -> logical_to_rank_dispatch_physical_map)",
    "SGLANG_PP_LAYER_PARTITION": "SGLang uneven pipeline partition environment variable (layers per stage), "
    "read by get_pp_indices in python/sglang/srt/distributed/utils.py",
}


def expert_location(data: ExportInput) -> dict[str, list[list[int]]]:
    """The ``physical_to_logical_map`` document for the plan (requires equal slots per rank and
    the same redundancy in every MoE layer)."""
    model = data.problem.model
    moe = model.moe
    assert moe is not None
    slots = expert_slots(data)
    physical = moe.num_experts + (redundant_slots(data) or 0)
    rows = []
    for layer in range(model.num_layers):
        if layer in slots:
            rows.append([expert for rank in slots[layer] for expert in rank])
        else:
            rows.append([p % moe.num_experts for p in range(physical)])
    return {"physical_to_logical_map": rows}


def export(data: ExportInput) -> EngineExport:
    nodes = data.nodes_per_replica()
    node_args = []
    if nodes > 1:
        node_args = ["--nnodes", str(nodes), "--node-rank", "${NODE_RANK}", "--dist-init-addr", f"{data.host(0)}:5000"]
    result = server(data, node_args)
    if nodes > 1:
        result.notes.append(
            f"Run the command on each of the replica's {nodes} nodes with NODE_RANK = 0..{nodes - 1} in hostfile order."
        )
    result.sources = {k: v for k, v in SOURCES.items() if k in result.argv or k in result.env}
    return result


def server(data: ExportInput, node_args: list[str] | None = None) -> EngineExport:
    """One server's arguments for the plan's degrees, partition and expert map; ``node_args``
    (the multi-node options, which depend on the node a line runs on) go after the degrees."""
    par = data.plan.parallelism
    argv = [
        "python",
        "-m",
        "sglang.launch_server",
        "--model-path",
        MODEL_PLACEHOLDER,
        "--tp-size",
        str(par.stage_width),
    ]
    warnings, unchecked = capability_findings("sglang", data)
    result = EngineExport("sglang", argv, warnings=warnings, notes=common_notes(data) + unchecked)
    if par.dp_attn > 1:
        argv += ["--dp-size", str(par.dp_attn), "--enable-dp-attention"]
    if par.pp > 1:
        argv += ["--pp-size", str(par.pp)]
        result.env["SGLANG_PP_LAYER_PARTITION"] = ",".join(str(n) for n in data.layers_per_stage)
    argv += node_args or []
    if data.is_moe and par.ep > 1:
        argv += ["--ep-size", str(par.ep)]
        redundant = redundant_slots(data)
        if redundant is None or not equal_slots_per_rank(data):
            result.warnings.append(
                "expert map not exported: SGLang needs the same number of physical slots on every EP rank and the same "
                "redundancy in every layer; this plan's map has neither, so SGLang would place experts itself"
            )
        else:
            document = expert_location(data)
            row = len(document["physical_to_logical_map"][0])
            if row % par.ep:
                result.warnings.append(
                    f"expert map not exported: {row} physical slots do not divide over ep = {par.ep}"
                )
            else:
                result.files[EXPERT_LOCATION_FILE] = json.dumps(document) + "\n"
                argv += ["--init-expert-location", EXPERT_LOCATION_FILE]
                if redundant:
                    argv += ["--ep-num-redundant-experts", str(redundant), "--ep-dispatch-algorithm", "static"]
                if par.pp > 1:
                    result.notes.append(
                        f"{EXPERT_LOCATION_FILE} holds all {data.problem.model.num_layers} layers; each pipeline stage "
                        "uses the rows of its own layers."
                    )
    return result
