"""TensorRT-LLM disaggregated serving: context (prefill) and generation (decode) ``trtllm-serve``
workers, each with its pool's LLM API options plus ``cache_transceiver_config``, and
``trtllm-serve disaggregated -c disagg_config.yaml`` in front of them, whose
``context_servers``/``generation_servers`` sections carry each pool's degrees, instance count
and worker URLs.

A worker over several nodes is one MPI job of ``tp x pp`` ranks started through
``trtllm-llmapi-launch`` (as TensorRT-LLM's Slurm example does); its line is written for its head
host and its hosts are listed, since the job launcher (srun, mpirun) is the site's.
"""

from __future__ import annotations

import yaml

from placer.export import trtllm
from placer.export.common import MODEL_PLACEHOLDER, capability_findings
from placer.export.disagg import PHASES, DisaggExport, DisaggInput, Launch, summary_notes

CONFIG_FILE = "disagg_config.yaml"
SECTIONS = {"prefill": "context_servers", "decode": "generation_servers"}
#: KV transfer backend; TensorRT-LLM's README: DEFAULT (i.e. NIXL), UCX, NIXL
TRANSCEIVER_BACKEND = "DEFAULT"
WORKER_PORT = 8001
SERVER_PORT = 8000

README = "NVIDIA/TensorRT-LLM examples/disaggregated/README.md"
GEN_YAML = "NVIDIA/TensorRT-LLM examples/disaggregated/slurm/gen_yaml.py"
START_WORKER = "NVIDIA/TensorRT-LLM examples/disaggregated/slurm/benchmark/start_worker.sh"

SOURCES = {
    "trtllm-serve disaggregated -c": README,
    "hostname": f"{README}; {GEN_YAML}",
    "port": f"{README}; {GEN_YAML}",
    "backend": f"{README}; {GEN_YAML}",
    "context_servers": f"{README}; {GEN_YAML}",
    "generation_servers": f"{README}; {GEN_YAML}",
    "num_instances": f"{README}; {GEN_YAML}",
    "urls": f"{README}; {GEN_YAML}",
    "moe_expert_parallel_size (per server section)": GEN_YAML,
    "enable_attention_dp (per server section)": GEN_YAML,
    "cache_transceiver_config": f"{README} (backend, max_tokens_in_buffer); {GEN_YAML}",
    "disable_overlap_scheduler": f"{README} (context servers: overlap scheduler not supported)",
    "--host": README,
    "--port": README,
    "--backend": f"{README} (--backend pytorch)",
    "trtllm-llmapi-launch": f"{START_WORKER} (multi-node workers under srun)",
    "CUDA_VISIBLE_DEVICES": f"{README} (one GPU per local worker)",
}


def worker_options(data: DisaggInput, phase: str, warnings: list[str]) -> dict[str, object]:
    """The pool's LLM API options (as an aggregated export writes them) plus the KV transfer."""
    config = trtllm.options(data.pool_input(phase), warnings)
    if phase == "prefill":
        config["disable_overlap_scheduler"] = True
    config["cache_transceiver_config"] = {
        "backend": TRANSCEIVER_BACKEND,
        "max_tokens_in_buffer": data.problem.workload.prompt_tokens.max,
    }
    return config


def export_disaggregated(data: DisaggInput) -> DisaggExport:
    launches: list[Launch] = []
    router = Launch("router", 0, data.router_host(), ["trtllm-serve", "disaggregated", "-c", CONFIG_FILE])
    result = DisaggExport("trtllm", launches, router, notes=summary_notes(data))
    gpn = data.gpus_per_node
    document: dict[str, object] = {"hostname": data.router_host(), "port": SERVER_PORT, "backend": "pytorch"}
    for phase in PHASES:
        pool = data.pool_input(phase)
        warnings, unchecked = capability_findings("trtllm", pool)
        options = worker_options(data, phase, warnings)
        result.warnings += [f"{phase} pool: {w}" for w in warnings]
        result.notes += [f"{phase} pool: {n}" for n in unchecked]
        options_file = f"{phase}/{trtllm.CONFIG_FILE}"
        result.files[options_file] = yaml.safe_dump(options, sort_keys=False)
        urls = []
        for inst in data.instances(phase):
            host = data.host(inst.head)
            port = WORKER_PORT + inst.slot
            urls.append(f"{host}:{port}")
            argv = ["trtllm-serve", MODEL_PLACEHOLDER, "--host", host, "--port", str(port), "--backend", "pytorch"]
            argv += ["--extra_llm_api_options", options_file]
            env = {} if inst.whole_nodes(gpn) else {"CUDA_VISIBLE_DEVICES": inst.local_gpus(0)}
            if len(inst.nodes) > 1:
                argv = ["trtllm-llmapi-launch", *argv]
                ranks = sum(inst.ranks_on_node)
                hosts = ", ".join(
                    f"{data.host(n)} ({c} ranks)" for n, c in zip(inst.nodes, inst.ranks_on_node, strict=True)
                )
                result.notes.append(
                    f"{phase} instance {inst.index} spans {len(inst.nodes)} nodes: start its line as one MPI job of "
                    f"{ranks} ranks (one per GPU) over {hosts}, e.g. with srun as TensorRT-LLM's Slurm example does."
                )
            launches.append(Launch(phase, inst.index, host, argv, env, 0))
        section = {k: v for k, v in options.items() if k != "moe_config"}
        section = {"num_instances": len(urls), **section, "urls": urls}
        document[SECTIONS[phase]] = section
    result.files[CONFIG_FILE] = yaml.safe_dump(document, sort_keys=False)
    result.notes.append(
        f"KV transfer: cache_transceiver_config backend {TRANSCEIVER_BACKEND} (NIXL, per TensorRT-LLM's README; "
        f"UCX or NIXL can be named instead), buffer {data.problem.workload.prompt_tokens.max} tokens = the "
        "workload's longest prompt."
    )
    written = {w for launch in [*launches, router] for w in [*launch.argv, *launch.env]}
    written |= set(document) | {"trtllm-serve disaggregated -c"}
    for phase in PHASES:
        written |= set(document[SECTIONS[phase]])  # type: ignore[arg-type]
    if any("moe_config:" in text for name, text in result.files.items() if name.endswith(trtllm.CONFIG_FILE)):
        written.add("moe_config.load_balancer")
    sources = dict(trtllm.SOURCES) | SOURCES
    result.sources = {k: v for k, v in sources.items() if k.split(" (")[0] in written}
    return result
