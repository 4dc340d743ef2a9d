"""Size limits on inputs: what placer refuses up front because it would exhaust memory or time.

Every limit sits well above the largest real deployment it bounds (the figure beside each says
which), so no genuine model, cluster or workload meets one; what does is a typo or a fuzzed
file (``num_experts: 1e6`` asked for gigabytes, 100,000 layers or 65,536 experts with top-1,024
ran for minutes, ``slo.ttft_s: 1e30`` overflowed the solver's integer scaling). A refusal names
the field and the limit's name here.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

#: Transformer layers per model. Largest real: Llama-3.1-405B (126), DeepSeek-V3 (61).
MAX_LAYERS = 1024

#: Hidden size. Largest real: Llama-3.1-405B (16,384), DeepSeek-V3 (7,168).
MAX_HIDDEN_SIZE = 131_072

#: Dense or expert FFN intermediate size. Largest real: Llama-3.1-405B (53,248).
MAX_FFN_SIZE = 1_048_576

#: Attention heads (query or KV). Largest real: Llama-3.1-405B and DeepSeek-V3 (128).
MAX_HEADS = 4096

#: Per-head and latent dimensions (head_dim, LoRA ranks). Largest real: DeepSeek-V3 q_lora_rank 1,536.
MAX_HEAD_DIM = 65_536

#: Vocabulary size. Largest real: Gemma (262,144).
MAX_VOCAB = 16_777_216

#: Routed experts per MoE layer. Largest real: Kimi-K2 (384), DeepSeek-V3 (256); 4,096 leaves
#: room for fine-grained designs while keeping the per-layer [experts x experts] arrays small.
MAX_EXPERTS = 4096

#: Experts a token selects. Largest real: Kimi-K2 and DeepSeek-V3 (8), Qwen3 (8), DBRX (4).
MAX_TOP_K = 64

#: Shared experts. Largest real: Qwen1.5-MoE (4 fused), DeepSeek-V2 (2).
MAX_SHARED_EXPERTS = 256

#: GPUs in one cluster, plan or budget. Largest published MoE inference fleets run a few
#: thousand; 65,536 keeps rank lists and per-GPU arrays in the megabytes.
MAX_GPUS = 65_536

#: GPUs per node or per NVLink domain. Largest real: GB200 NVL72 (72), NVL576 announced (576).
MAX_GPUS_PER_NODE = 1024

#: Sequences in flight at once. Real decode batches reach tens of thousands across a cluster.
MAX_BATCH_SIZE = 1_048_576

#: Tokens of one prompt, output or context. Largest real context: Llama-4-Scout (10M).
MAX_TOKENS = 16_777_216

#: Tokens a sequence runs per decode step (1 + speculative drafts). Real: 2-8.
MAX_TOKENS_PER_STEP = 256

#: Pipeline micro-batches. Real: a few times pp (at most 64 stages).
MAX_MICRO_BATCHES = 65_536

#: Seconds for a time SLO (time to first token): one day. Real SLOs are seconds to minutes.
MAX_SECONDS = 86_400.0

#: Milliseconds for a per-token SLO (TPOT): one hour. Real SLOs are tens of milliseconds.
MAX_MILLISECONDS = 3_600_000.0

#: Microseconds for a latency or overhead figure: one second. Real figures are 1-20 us.
MAX_MICROSECONDS = 1_000_000.0

#: Tokens per millisecond per GPU in a throughput SLO. Real figures are below 100.
MAX_TOKENS_PER_MS_PER_GPU = 1_000_000.0

#: Dense TFLOPS per precision. Largest real: B200 fp4 (9,000 dense).
MAX_TFLOPS = 1_000_000.0

#: GPU memory, 10^9 bytes. Largest real: MI355X (288), B300 (288).
MAX_HBM_GB = 1_000_000.0

#: Memory or link bandwidth, 10^9 bytes/s (HBM given in TB/s is bounded by the same figure / 1000).
MAX_BANDWIDTH_GB_PER_S = 1_000_000.0

#: A dimensionless ratio (oversubscription, imbalance, buffers per token). Real: 1-16.
MAX_RATIO = 10_000.0

#: Price per GPU hour, USD. Real: 1-10.
MAX_PRICE_USD = 1_000_000.0

#: Declared parameter counts. Largest real: Kimi-K2 (1.04e12).
MAX_PARAMS = 1e15

#: Synthetic routing seed: numpy's generators take any non-negative integer, but a seed is
#: also written into reports and plans, where JSON readers keep 64 bits at most.
MAX_SEED = 2**63 - 1

#: Synthetic routing: tokens drawn per MoE layer. Shipped instances draw 2,048-4,096.
MAX_SYNTHETIC_TOKENS = 65_536

#: Synthetic routing: Zipf exponent of expert popularity. Measured skews are 0-2.
MAX_ZIPF_EXPONENT = 16.0

#: Synthetic routing: scores drawn in all (tokens x experts x MoE layers); each costs about
#: 8 bytes in the per-layer array and tens of nanoseconds. DeepSeek-V3's shipped draw is
#: 58 x 4,096 x 256 = 6.1e7; 2^28 = 2.7e8 is 4.4 times that (seconds, a few hundred MB per layer at most).
MAX_SYNTHETIC_SCORES = 2**28

#: Routing files: routed (token, expert) selections read in all layers. A day of SGLang
#: recording is summarised as counts; top-k traces beyond 2^28 ids (2 GiB of int64) are refused.
MAX_TRACE_SELECTIONS = 2**28

#: Routing statistics: MoE layers x experts^2. The cost model keeps per-layer expert-pair
#: figures (co-activation, reach) whose work grows with the square of the expert count;
#: Kimi-K2 (60 x 384^2 = 8.8e6) and DeepSeek-V3 (58 x 256^2 = 3.8e6) sit far below 2^26 = 6.7e7,
#: which costs about 6 s of evaluation on one core (64 layers x 1,024 experts measured).
MAX_ROUTING_PAIRS = 2**26

#: Plans: ep x ep x experts, the cells of the cost model's per-layer serving-weight array
#: (which EP rank serves each expert for each source rank). Kimi-K2 at ep = 384 needs 5.7e7;
#: 2^26 = 6.7e7 cells are 0.5 GB as float64. ep = experts = 4,096 asked for 64 GiB.
MAX_TRAFFIC_CELLS = 2**26

#: Routing files: largest ``.npz`` or JSON file read, bytes.
MAX_ROUTING_FILE_BYTES = 2 * 1024**3


class AtMost:
    """``Annotated`` marker: the value may not exceed the named limit of this module.

    A plain ``Field(le=...)`` would say only "less than or equal to 1024"; this names the limit
    (``100000 is above MAX_LAYERS = 1024``) so the user can find why it exists, and still puts
    ``maximum`` in the JSON Schema."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value: float = globals()[name]

    def _check(self, value: Any) -> Any:
        if value is not None and value > self.value:
            limit = f"{self.value:,}" if isinstance(self.value, int) else f"{self.value:g}"
            shown = f"{value:,}" if isinstance(value, int) else f"{value:g}"
            raise ValueError(f"{shown} is above the limit {self.name} = {limit} (placer/schema/limits.py)")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        result = handler(schema)
        result["maximum"] = self.value
        return result
