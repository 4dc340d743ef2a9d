"""What each serving engine can run: one table read by the search, the evaluator and the exports.

Every row is one (engine, capability) pair: whether the engine supports it, whether placer checked
that against the engine's own documentation or source (``verified``), and where (``source``, with
what that page or file states, in placer's words). The search (rule R7 in
``placer.costmodel.rules``) drops a configuration that uses a capability its engine lacks; the
evaluator reports the same rule on a plan; an export warns about the same rows and names the
unverified ones in its notes. A row that could not be verified is marked so and allows the
configuration (an unchecked claim should not shrink the search), which the export then says.

Capabilities are about placer's degrees ``(pp, tp, dp_attn, ep, tp_moe, replicas)`` of one replica
(``tp * dp_attn == ep * tp_moe``, the stage width), the plan's layers per stage and the workload's
tokens per decode step. ``engine = "any"`` consults no row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from placer.schema import Parallelism

#: Engines an instance may name; ``any`` restricts nothing.
ENGINE_CHOICES = ("any", "vllm", "sglang", "trtllm")

VLLM_DP = "https://docs.vllm.ai/en/latest/serving/data_parallel_deployment/"
VLLM_EP = "https://docs.vllm.ai/en/latest/serving/expert_parallel_deployment/"
VLLM_PP = "vllm-project/vllm vllm/envs.py VLLM_PP_LAYER_PARTITION, read by get_pp_indices in vllm/distributed/utils.py"
SGLANG_STATE = "sgl-project/sglang python/sglang/srt/distributed/parallel_state.py (initialize_model_parallel)"
SGLANG_ARGS = "https://docs.sglang.io/cookbook/base/reference/server_arguments"
SGLANG_PP = (
    "sgl-project/sglang SGLANG_PP_LAYER_PARTITION, read by get_pp_indices in python/sglang/srt/distributed/utils.py"
)
TRTLLM_PARALLEL = "https://nvidia.github.io/TensorRT-LLM/features/parallel-strategy.html"
TRTLLM_MAPPING = "NVIDIA/TensorRT-LLM tensorrt_llm/mapping.py (class Mapping)"


@dataclass(frozen=True)
class Usage:
    """What a deployment asks of an engine."""

    par: Parallelism
    is_moe: bool
    stage_layers: tuple[int, ...] | None = None  # layers per stage; None while the partition is open
    decode_tokens_per_step: int = 1


@dataclass(frozen=True)
class Capability:
    """One thing a deployment may need from an engine, and how to tell that it does."""

    name: str
    description: str
    used: Callable[[Usage], bool]
    detail: Callable[[Usage], str]  # the plan's own figures, for messages


def _even_split(layers: int, stages: int) -> tuple[int, ...]:
    """Layers per stage when an engine splits them itself: the first ``layers % stages`` stages
    take one layer more (``torch.tensor_split``, as TensorRT-LLM's ``Mapping.pp_layers`` does)."""
    base, extra = divmod(layers, stages)
    return tuple(base + (1 if s < extra else 0) for s in range(stages))


def _custom_stages(x: Usage) -> bool:
    if x.stage_layers is None or x.par.pp <= 1:
        return False
    return tuple(x.stage_layers) != _even_split(sum(x.stage_layers), len(x.stage_layers))


CAPABILITIES: tuple[Capability, ...] = (
    Capability(
        "attention_dp",
        "attention data parallelism (dp_attn > 1)",
        lambda x: x.par.dp_attn > 1,
        lambda x: f"attention dp {x.par.dp_attn}",
    ),
    Capability(
        "attention_tp_with_dp",
        "attention TP combined with attention DP (tp > 1 and dp_attn > 1)",
        lambda x: x.par.tp > 1 and x.par.dp_attn > 1,
        lambda x: f"attention tp {x.par.tp} x dp {x.par.dp_attn}",
    ),
    Capability(
        "expert_parallel",
        "expert parallelism (ep > 1)",
        lambda x: x.is_moe and x.par.ep > 1,
        lambda x: f"ep {x.par.ep}",
    ),
    Capability(
        "moe_tp_with_ep",
        "MoE tensor parallelism together with expert parallelism (tp_moe > 1 and ep > 1)",
        lambda x: x.is_moe and x.par.ep > 1 and x.par.tp_moe > 1,
        lambda x: f"MoE TP = {x.par.tp_moe} with EP = {x.par.ep}",
    ),
    Capability(
        "pipeline_parallel",
        "pipeline parallelism (pp > 1)",
        lambda x: x.par.pp > 1,
        lambda x: f"pp {x.par.pp}",
    ),
    Capability(
        "uneven_pipeline_stages",
        "layers per pipeline stage chosen by the plan (other than the engine's own near-even split)",
        _custom_stages,
        lambda x: "uneven pipeline partition " + ",".join(str(n) for n in x.stage_layers or ()),
    ),
    Capability(
        "pp_with_ep",
        "pipeline parallelism together with expert parallelism (pp > 1 and ep > 1)",
        lambda x: x.is_moe and x.par.pp > 1 and x.par.ep > 1,
        lambda x: f"pp {x.par.pp} with ep {x.par.ep}",
    ),
    Capability(
        "replicas",
        "independent replicas behind a load balancer (replicas > 1)",
        lambda x: x.par.replicas > 1,
        lambda x: f"{x.par.replicas} replicas",
    ),
    Capability(
        "speculative_decoding",
        "speculative decoding / multi-token prediction (decode_tokens_per_step > 1)",
        lambda x: x.decode_tokens_per_step > 1,
        lambda x: f"{x.decode_tokens_per_step} tokens per decode step",
    ),
)

CAPABILITY_BY_NAME = {c.name: c for c in CAPABILITIES}


@dataclass(frozen=True)
class Row:
    """One (engine, capability) fact with its source."""

    engine: str
    capability: str
    supported: bool
    verified: bool
    source: str  # where it was checked, and what that page or file states

    @property
    def description(self) -> str:
        return CAPABILITY_BY_NAME[self.capability].description


_UNCHECKED = "not checked against the engine's documentation or source in this table; allowed"

ROWS: tuple[Row, ...] = (
    # --- vLLM
    Row("vllm", "attention_dp", True, True, f"{VLLM_DP}: --data-parallel-size runs DP ranks of attention"),
    Row(
        "vllm",
        "attention_tp_with_dp",
        True,
        True,
        f"{VLLM_DP}: each DP rank owns --tensor-parallel-size workers, so attention TP and DP combine",
    ),
    Row("vllm", "expert_parallel", True, True, f"{VLLM_EP}: --enable-expert-parallel; EP size = TP x DP"),
    Row(
        "vllm",
        "moe_tp_with_ep",
        False,
        True,
        f"{VLLM_DP} and {VLLM_EP}: MoE layers form either one TP group of DP x TP GPUs (no EP) or, with "
        "--enable-expert-parallel, one EP group of DP x TP GPUs with MoE TP 1; no option splits them in between",
    ),
    Row("vllm", "pipeline_parallel", True, True, f"{VLLM_PP}; --pipeline-parallel-size in vllm/engine/arg_utils.py"),
    Row("vllm", "uneven_pipeline_stages", True, True, f"{VLLM_PP}: comma-separated layers per stage"),
    Row("vllm", "pp_with_ep", True, False, _UNCHECKED),
    Row("vllm", "replicas", True, True, "one independent server per replica behind a load balancer"),
    Row("vllm", "speculative_decoding", True, False, _UNCHECKED),
    # --- SGLang
    Row("sglang", "attention_dp", True, True, f"{SGLANG_ARGS}: --enable-dp-attention with --dp-size"),
    Row(
        "sglang",
        "attention_tp_with_dp",
        True,
        True,
        f"{SGLANG_STATE}: attention TP size = tp_size / attention DP size, so --dp-size below --tp-size keeps "
        "attention TP > 1",
    ),
    Row("sglang", "expert_parallel", True, True, f"{SGLANG_ARGS}: --ep-size"),
    Row(
        "sglang",
        "moe_tp_with_ep",
        True,
        True,
        f"{SGLANG_STATE}: MoE TP size = tp_size / ep_size (/ MoE DP size), so --ep-size below --tp-size shards "
        "each expert",
    ),
    Row("sglang", "pipeline_parallel", True, True, f"{SGLANG_ARGS}: --pp-size"),
    Row("sglang", "uneven_pipeline_stages", True, True, f"{SGLANG_PP}: layers per stage"),
    Row("sglang", "pp_with_ep", True, False, _UNCHECKED),
    Row("sglang", "replicas", True, True, "one independent server per replica behind a load balancer"),
    Row("sglang", "speculative_decoding", True, False, _UNCHECKED),
    # --- TensorRT-LLM
    Row(
        "trtllm",
        "attention_dp",
        True,
        True,
        f"{TRTLLM_PARALLEL}: enable_attention_dp runs attention data-parallel over tensor_parallel_size GPUs",
    ),
    Row(
        "trtllm",
        "attention_tp_with_dp",
        False,
        True,
        f"{TRTLLM_PARALLEL}: attention is either tensor-parallel over all tensor_parallel_size GPUs or, with "
        "enable_attention_dp, data-parallel over them with attention TP 1; no size in between",
    ),
    Row("trtllm", "expert_parallel", True, True, f"{TRTLLM_PARALLEL}: moe_expert_parallel_size"),
    Row(
        "trtllm",
        "moe_tp_with_ep",
        True,
        True,
        f"{TRTLLM_MAPPING}: moe_tp_size x moe_ep_size must equal tp_size, both may exceed 1",
    ),
    Row("trtllm", "pipeline_parallel", True, True, f"{TRTLLM_PARALLEL}: pipeline_parallel_size"),
    Row(
        "trtllm",
        "uneven_pipeline_stages",
        False,
        True,
        f"{TRTLLM_MAPPING}: pp_layers splits the layers with torch.tensor_split (the first layers % pp stages "
        "take one more); no option found to set layers per stage",
    ),
    Row(
        "trtllm",
        "pp_with_ep",
        True,
        True,
        f"{TRTLLM_MAPPING}: its docstring lays out moe_tp 2 x moe_ep 4 with pp_size 2 on 16 GPUs",
    ),
    Row("trtllm", "replicas", True, True, "one independent server per replica behind a load balancer"),
    Row("trtllm", "speculative_decoding", True, False, _UNCHECKED),
)

_TABLE = {(r.engine, r.capability): r for r in ROWS}


def row(engine: str, capability: str) -> Row:
    """The table's row; every named engine has one for every capability."""
    return _TABLE[(engine, capability)]


@dataclass(frozen=True)
class Finding:
    """A capability the deployment uses, with the engine's row."""

    row: Row
    detail: str

    def message(self) -> str:
        status = "cannot run" if not self.row.supported else "unverified"
        return f"{self.row.engine} {status}: {self.detail} needs {self.row.description} (source: {self.row.source})"


def _findings(engine: str, usage: Usage) -> list[Finding]:
    if engine == "any":
        return []
    return [Finding(row(engine, c.name), c.detail(usage)) for c in CAPABILITIES if c.used(usage)]


def unsupported(engine: str, usage: Usage) -> list[Finding]:
    """Capabilities the deployment uses and the engine lacks (empty for ``any``)."""
    return [f for f in _findings(engine, usage) if not f.row.supported]


def unverified(engine: str, usage: Usage) -> list[Finding]:
    """Capabilities the deployment uses whose row placer could not verify (allowed, but said)."""
    return [f for f in _findings(engine, usage) if f.row.supported and not f.row.verified]


def fixed_stage_starts(engine: str, num_layers: int, pp: int) -> tuple[int, ...] | None:
    """First layer of each stage where ``engine`` splits the layers itself (no uneven stages), so
    the search must use that split; ``None`` where the plan may choose (or with one stage)."""
    if pp <= 1 or engine == "any" or row(engine, "uneven_pipeline_stages").supported:
        return None
    starts, first = [], 0
    for size in _even_split(num_layers, pp):
        starts.append(first)
        first += size
    return tuple(starts)


def engine_can_run(engine: str, usage: Usage) -> bool:
    return not unsupported(engine, usage)


def table_markdown(engines: Sequence[str] = ENGINE_CHOICES[1:]) -> str:
    """The table as Markdown (for docs and notes)."""
    lines = ["| engine | capability | supported | verified | source |", "|---|---|---|---|---|"]
    for engine in engines:
        for c in CAPABILITIES:
            r = row(engine, c.name)
            lines.append(
                f"| {engine} | {c.name} | {'yes' if r.supported else 'no'} | {'yes' if r.verified else 'no'} "
                f"| {r.source} |"
            )
    return "\n".join(lines)
