"""vLLM prefill/decode disaggregation: every instance a ``vllm serve`` with the pool's degrees and
``--kv-transfer-config`` naming the KV connector (NixlConnector; prefill ``kv_producer``, decode
``kv_consumer``), and the proxy that sends each request first to a prefill instance, then to a
decode instance.

What vLLM needs for this: the NIXL library on every host; ``VLLM_NIXL_SIDE_CHANNEL_HOST`` (the
host's address, when the pools sit on different machines) and ``VLLM_NIXL_SIDE_CHANNEL_PORT``
(the handshake port: each data-parallel rank on a node takes base + its local rank, so two
instances sharing a node get bases one node's GPUs apart); a proxy given every prefill and
decode instance's head host and HTTP port. An instance over several nodes with data-parallel
attention gets a line per node (``--data-parallel-size-local``, ``--data-parallel-start-rank``,
``--headless`` on all but the head); one whose tensor or pipeline group crosses nodes needs a Ray
cluster, which is not written.
"""

from __future__ import annotations

import json

from placer.export import vllm
from placer.export.common import common_notes
from placer.export.disagg import (
    PHASES,
    DisaggExport,
    DisaggInput,
    Launch,
    PoolInstance,
    pool_findings,
    summary_notes,
)

CONNECTOR = "NixlConnector"
ROLES = {"prefill": "kv_producer", "decode": "kv_consumer"}
HTTP_PORT = 8100
SIDE_CHANNEL_PORT = 5600  # vLLM's default
DP_RPC_PORT = 13345
PROXY = "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py"
PROXY_PORT = 8192

NIXL_DOCS = "vllm-project/vllm docs/features/nixl_connector_usage.md"
DP_DOCS = "vllm-project/vllm docs/serving/data_parallel_deployment.md (Internal Load Balancing, multi-node)"

SOURCES = {
    "--kv-transfer-config": f"{NIXL_DOCS} (JSON: kv_connector, kv_role)",
    "kv_connector": f"{NIXL_DOCS} (NixlConnector)",
    "kv_role": f"{NIXL_DOCS} (KV Role Options: kv_producer, kv_consumer, kv_both)",
    "VLLM_NIXL_SIDE_CHANNEL_HOST": f"{NIXL_DOCS} (Environment Variables)",
    "VLLM_NIXL_SIDE_CHANNEL_PORT": f"{NIXL_DOCS} (Environment Variables: base + dp rank per node)",
    "CUDA_VISIBLE_DEVICES": f"{NIXL_DOCS} (Basic Usage: one GPU per instance)",
    "--port": f"{NIXL_DOCS}",
    "--data-parallel-size-local": DP_DOCS,
    "--data-parallel-address": DP_DOCS,
    "--data-parallel-rpc-port": DP_DOCS,
    "--data-parallel-start-rank": DP_DOCS,
    "--headless": DP_DOCS,
    PROXY: f"{NIXL_DOCS} (Proxy Server; a test utility of vLLM's repository)",
    "--prefiller-hosts": f"{NIXL_DOCS} (Proxy for Multiple Instances)",
    "--prefiller-ports": f"{NIXL_DOCS} (Proxy for Multiple Instances)",
    "--decoder-hosts": f"{NIXL_DOCS} (Proxy for Multiple Instances)",
    "--decoder-ports": f"{NIXL_DOCS} (Proxy for Multiple Instances)",
}


def kv_transfer_config(phase: str) -> str:
    return json.dumps({"kv_connector": CONNECTOR, "kv_role": ROLES[phase]}, separators=(",", ":"))


def _per_node_dp(data: DisaggInput, inst: PoolInstance) -> bool:
    """Whether the instance's data-parallel ranks split over its nodes with every tensor group
    inside one node and no pipeline (then vLLM's per-node DP options express it)."""
    par = data.plan.pool(inst.phase).parallelism
    return par.pp == 1 and all(n % par.tp == 0 for n in inst.ranks_on_node)


def _lines(data: DisaggInput, inst: PoolInstance, argv: list[str], env: dict[str, str]) -> list[Launch]:
    par = data.plan.pool(inst.phase).parallelism
    gpn = data.gpus_per_node
    port = ["--port", str(HTTP_PORT + inst.slot)]
    launches = []
    multi = len(inst.nodes) > 1
    start = 0
    for k, node in enumerate(inst.nodes):
        if multi and not _per_node_dp(data, inst) and k > 0:
            break  # a Ray cluster starts the other nodes' workers (warned)
        line_env = dict(env)
        line_env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = data.host(node)
        line_env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(SIDE_CHANNEL_PORT + inst.slot * gpn)
        if not inst.whole_nodes(gpn):
            line_env["CUDA_VISIBLE_DEVICES"] = inst.local_gpus(k)
        line = argv + ["--kv-transfer-config", kv_transfer_config(inst.phase)]
        if multi and _per_node_dp(data, inst):
            local = inst.ranks_on_node[k] // par.tp
            line += ["--data-parallel-size-local", str(local)]
            line += ["--data-parallel-address", data.host(inst.head)]
            line += ["--data-parallel-rpc-port", str(DP_RPC_PORT + inst.slot)]
            if k > 0:
                line += ["--headless", "--data-parallel-start-rank", str(start)]
            start += local
        if k == 0:
            line += port
        launches.append(Launch(inst.phase, inst.index, data.host(node), line, line_env, k))
    return launches


def export_disaggregated(data: DisaggInput) -> DisaggExport:
    launches: list[Launch] = []
    result = DisaggExport("vllm", launches, Launch("router", 0, data.router_host(), []), notes=summary_notes(data))
    for phase in PHASES:
        pool = data.pool_input(phase)
        base = vllm.server(pool)
        pool_findings(phase, base.warnings, base.notes[len(common_notes(pool)) :], result)
        for inst in data.instances(phase):
            launches += _lines(data, inst, base.argv, base.env)
            if len(inst.nodes) > 1 and not _per_node_dp(data, inst):
                hosts = ", ".join(data.host(n) for n in inst.nodes)
                result.warnings.append(
                    f"{phase} instance {inst.index}: its tensor or pipeline group crosses nodes ({hosts}); vLLM runs "
                    "that over a Ray cluster, which this export does not set up: only the head line is written"
                )
    router = ["python", PROXY, "--port", str(PROXY_PORT)]
    for phase, flag in (("prefill", "--prefiller"), ("decode", "--decoder")):
        instances = data.instances(phase)
        router += [f"{flag}-hosts", *(data.host(inst.head) for inst in instances)]
        router += [f"{flag}-ports", *(str(HTTP_PORT + inst.slot) for inst in instances)]
    result.router.argv = router
    result.notes += [
        f"KV transfer: {CONNECTOR} (install the nixl package on every host; set UCX_NET_DEVICES to the RDMA "
        "devices if UCX picks the wrong ones). NixlConnector does not act on kv_role: the proxy decides which "
        "instance prefills and which decodes.",
        f"The proxy is {PROXY} from vLLM's source tree (a test utility, run from a vLLM checkout); it is given "
        "each instance's head host and HTTP port.",
    ]
    differ = {(p.tp, p.dp_attn, p.pp) for p in (data.plan.prefill.parallelism, data.plan.decode.parallelism)}
    if len(differ) > 1:
        result.notes.append(
            "The pools have different tp/dp/pp: NixlConnector's support for that depends on the model and vLLM "
            "version (see vLLM's NixlConnector compatibility matrix); placer did not check it."
        )
    words = {w for launch in [*launches, result.router] for w in [*launch.argv, *launch.env]}
    words |= {"kv_connector", "kv_role"}
    sources = dict(vllm.SOURCES) | SOURCES
    result.sources = {k: v for k, v in sources.items() if k in words}
    return result
