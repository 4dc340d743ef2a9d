"""SGLang prefill/decode disaggregation: ``--disaggregation-mode prefill|decode`` servers, each
pool's degrees as an aggregated SGLang server has them, and ``sglang_router`` in PD mode.

Every instance of a pool is one SGLang server (``--nnodes`` nodes, a line per node with its
``--node-rank``); the prefill servers also run the bootstrap server the decode side connects to
(``--disaggregation-bootstrap-port``), which the router is told next to each prefill URL.
"""

from __future__ import annotations

from placer.export import sglang
from placer.export.disagg import (
    PHASES,
    DisaggExport,
    DisaggInput,
    Launch,
    PoolInstance,
    kv_path_of,
    pool_files,
    pool_findings,
    summary_notes,
)

#: KV transfer engine: SGLang's default (the other documented choice is ``nixl``)
TRANSFER_BACKEND = "mooncake"
HTTP_PORT = 30000
BOOTSTRAP_PORT = 8998  # SGLang's default bootstrap port
DIST_INIT_PORT = 5000
ROUTER_PORT = 8000

PD_DOCS = "sgl-project/sglang docs/advanced_features/pd_disaggregation.md"
SERVER_ARGS = "sgl-project/sglang docs/advanced_features/server_arguments.md (PD disaggregation table)"
ROUTER_DOCS = "sgl-project/sglang docs/advanced_features/router.md (Prefill/Decode Disaggregation)"

SOURCES = {
    "--disaggregation-mode": f"{PD_DOCS}; {SERVER_ARGS}",
    "--disaggregation-transfer-backend": f"{PD_DOCS} (mooncake, nixl); {SERVER_ARGS}",
    "--disaggregation-bootstrap-port": f"{SERVER_ARGS} (default 8998, prefill server only)",
    "--disaggregation-decode-tp": f"{SERVER_ARGS}; python/sglang/srt/server_args.py refuses it on a decode server",
    "--disaggregation-decode-dp": f"{SERVER_ARGS}; python/sglang/srt/server_args.py refuses it on a decode server",
    "--model-path": PD_DOCS,
    "--host": f"{PD_DOCS} (DeepSeek multi-node example)",
    "--port": f"{PD_DOCS}",
    "--base-gpu-id": f"{PD_DOCS} (Llama single-node example: decode on GPU 1)",
    "sglang_router.launch_router": f"{PD_DOCS}; {ROUTER_DOCS}",
    "--pd-disaggregation": ROUTER_DOCS,
    "--prefill": f"{ROUTER_DOCS} (URL then the prefill server's bootstrap port)",
    "--decode": ROUTER_DOCS,
}


def _node_args(data: DisaggInput, inst: PoolInstance, k: int) -> list[str]:
    """Where this line runs: host, ports (offset by the instance's slot), first GPU, node rank."""
    node = inst.nodes[k]
    args = ["--host", data.host(node), "--port", str(HTTP_PORT + inst.slot)]
    if inst.phase == "prefill":
        args += ["--disaggregation-bootstrap-port", str(BOOTSTRAP_PORT + inst.slot)]
    if inst.first_gpu[k]:
        args += ["--base-gpu-id", str(inst.first_gpu[k])]
    if len(inst.nodes) > 1:
        head = f"{data.host(inst.head)}:{DIST_INIT_PORT + inst.slot}"
        args += ["--nnodes", str(len(inst.nodes)), "--node-rank", str(k), "--dist-init-addr", head]
    return args


def _decode_shape_args(data: DisaggInput) -> list[str]:
    """On the prefill servers, the decode servers' tp and dp when they differ from the prefill's."""
    p, d = data.plan.prefill.parallelism, data.plan.decode.parallelism
    if (p.stage_width, p.dp_attn) == (d.stage_width, d.dp_attn):
        return []
    return ["--disaggregation-decode-tp", str(d.stage_width), "--disaggregation-decode-dp", str(d.dp_attn)]


def export_disaggregated(data: DisaggInput) -> DisaggExport:
    launches: list[Launch] = []
    result = DisaggExport("sglang", launches, Launch("router", 0, data.router_host(), []), notes=summary_notes(data))
    sources = dict(sglang.SOURCES) | SOURCES
    for phase in PHASES:
        pool = data.pool_input(phase)
        base = sglang.server(pool)
        pool_findings(phase, base.warnings, base.notes[len(sglang.common_notes(pool)) :], result)
        argv = pool_files(phase, base.files, base.argv, result)
        argv += ["--disaggregation-mode", phase, "--disaggregation-transfer-backend", TRANSFER_BACKEND]
        if phase == "prefill":
            argv += _decode_shape_args(data)
        for inst in data.instances(phase):
            for k, node in enumerate(inst.nodes):
                line = argv + _node_args(data, inst, k)
                launches.append(Launch(phase, inst.index, data.host(node), line, dict(base.env), k))
        if pool.plan.parallelism.pp > 1:
            result.warnings.append(
                f"{phase} pool: pp {pool.plan.parallelism.pp}: SGLang's server arguments also list "
                "--disaggregation-prefill-pp, whose use placer could not confirm from SGLang's documentation; it is "
                "not written here"
            )
    router = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
    for inst in data.instances("prefill"):
        url = f"http://{data.host(inst.head)}:{HTTP_PORT + inst.slot}"
        router += ["--prefill", url, str(BOOTSTRAP_PORT + inst.slot)]
    for inst in data.instances("decode"):
        router += ["--decode", f"http://{data.host(inst.head)}:{HTTP_PORT + inst.slot}"]
    router += ["--host", "0.0.0.0", "--port", str(ROUTER_PORT)]
    result.router.argv = router
    result.notes += [
        f"KV transfer over {TRANSFER_BACKEND} (SGLang's default; --disaggregation-transfer-backend nixl is the other "
        "documented engine); name the RDMA devices with --disaggregation-ib-device if detection picks the wrong ones.",
        "Each instance's HTTP port is its --port on its first host; the router is given each prefill URL with its "
        "bootstrap port, and each decode URL.",
    ]
    if kv_path_of(data).kind == "nvlink":
        result.notes.append(
            "The pools share one NVLink domain: SGLang's PD documentation gives SGLANG_MOONCAKE_CUSTOM_MEM_POOL=True "
            "and MC_FORCE_MNNVL=True for mooncake transfers over NVLink (recommended there for NVL72); not set here."
        )
    if _decode_shape_args(data):
        result.notes.append(
            "The pools differ in tp/dp: the prefill servers are told the decode servers' "
            "--disaggregation-decode-tp/--disaggregation-decode-dp."
        )
    words = {w for launch in [*launches, result.router] for w in [*launch.argv, *launch.env]}
    result.sources = {k: v for k, v in sources.items() if k in words}
    return result
