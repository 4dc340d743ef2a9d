"""Micro-instances (1-8 GPUs), one per constraint, each with its optimum derived by hand.

Every instance runs on the same synthetic GPU (below) so the arithmetic in the comments can be
followed with a pencil: 100 TFLOPS BF16 at 50 % MFU (50 TFLOPS effective), 10 GB of HBM at
1 TB/s, 0.5 GB runtime reserve, 4 GPUs per node, 2 nodes. Usable memory per GPU is
10 GB x (1 - 0.05 margin) = 9.5 GB, of which 0.5 GB is the reserve, so weights, KV cache and
workspace must fit in 9.0 GB. All weights are BF16 (2 bytes per parameter).

For each instance all three backends (CP-SAT, MILP, exhaustive) must return the same status and
the same lexicographic objective, and the hand-derived optimum (GPU count, and the degrees where
the derivation fixes them).
"""

from __future__ import annotations

import math

from placer.evaluator import evaluate
from placer.problem import Problem, build_problem
from placer.result import SolveStatus
from placer.schema import Instance, Plan
from placer.solve import solve

MICRO_GPU = {
    "name": "micro-gpu",
    "description": "synthetic GPU with round figures for hand-derived optima",
    "dense_tflops": {"bf16": 100},
    "hbm_capacity_gb": 10,
    "hbm_bandwidth_tb_per_s": 1.0,
    "runtime_reserve_gb": 0.5,
    "efficiency": {
        "gemm_mfu": 0.5,
        "attention_mfu": 0.5,
        "hbm_bandwidth_utilisation": 1.0,
        "scaleup_bandwidth_utilisation": 1.0,
        "scaleout_bandwidth_utilisation": 1.0,
    },
    "scaleup_bandwidth_gb_per_s": 100,
    "scaleup_latency_us": 1.0,
    "scaleout_bandwidth_gb_per_s": 10,
    "scaleout_latency_us": 2.0,
    "gpus_per_node": 4,
    "nvlink_domain_gpus": 4,
    "sources": {"all": "synthetic test GPU: round figures chosen for hand arithmetic"},
}
SHORT = {"batch_size": 4, "prompt_tokens": {"min": 128, "max": 512}, "output_tokens": 64}
LONG = {"batch_size": 8, "prompt_tokens": {"min": 128, "max": 2048}, "output_tokens": 64}
MIN_GPUS = {"primary": "min_gpus", "throughput_phase": "prefill"}


def micro(model: dict, workload: dict, slo: dict, gpus_per_node: int = 4, nodes: int = 2, objective=None) -> Problem:
    hardware = dict(MICRO_GPU, gpus_per_node=gpus_per_node, nvlink_domain_gpus=gpus_per_node)
    return build_problem(
        Instance.model_validate(
            {
                "name": model["name"],
                "model": model,
                "hardware": hardware,
                "cluster": {"gpus_per_node": gpus_per_node, "num_nodes": nodes},
                "workload": workload,
                "slo": slo,
                "objective": objective or MIN_GPUS,
            }
        )
    )


def one_gpu_plan(model: dict) -> Plan:
    """Every layer on one GPU, all degrees 1: the reference the hand derivations start from."""
    return Plan.model_validate(
        {
            "name": "one-gpu",
            "gpus": 1,
            "parallelism": {"pp": 1, "tp": 1, "dp_attn": 1, "ep": 1, "tp_moe": 1},
            "stages": [{"layers": [0, model["num_layers"] - 1]}],
        }
    )


def solve_all(problem: Problem):
    """Solve with every backend; assert they agree; return the exhaustive result."""
    reference = solve(problem, backend="exhaustive")
    for backend in ("cpsat", "milp"):
        result = solve(problem, backend=backend, workers=1, seed=0)
        assert result.status == reference.status, backend
        for term, value in reference.terms.items():
            assert math.isclose(result.terms[term], value, rel_tol=1e-6, abs_tol=1e-9), (backend, term)
        if result.plan is not None:
            assert result.plan.gpus == reference.plan.gpus, backend
            assert result.evaluation is not None and result.evaluation.feasible, backend
    return reference


# (M) Memory decides the GPU count.
# Two MoE layers, hidden 1024, 8 heads, 4 experts of FFN 368,640 (up + down, not gated):
# one expert holds 2 x 1024 x 368,640 = 755.0M parameters = 1.510 GB, so one layer's experts are
# 6.04 GB and the two layers' 12.08 GB; attention (4 x 1024^2 per layer) and a 1,000-token
# vocabulary add 0.02 GB. 12.1 GB > 9.0 GB: one GPU cannot hold the model. Two GPUs can (one
# layer per stage, or half the experts per GPU): 6.05 GB each plus a small KV cache and workspace.
# Optimum: 2 GPUs.
MEMORY_MODEL = {
    "name": "micro-memory",
    "num_layers": 2,
    "hidden_size": 1024,
    "attention": {"kind": "mha", "num_heads": 8},
    "moe": {"num_experts": 4, "top_k": 1, "expert_ffn_size": 368_640, "gated": False},
    "vocab_size": 1000,
}


def test_memory_sets_the_gpu_count():
    result = solve_all(micro(MEMORY_MODEL, SHORT, {}))
    assert result.status == SolveStatus.OPTIMAL
    assert result.plan.gpus == 2


# (B) The GPU budget: the same model with slo.max_gpus = 1 has no plan (12.1 GB > 9.0 GB), and the
# explanation names memory and the budget that caps it.
def test_gpu_budget_below_memory_need_is_infeasible():
    result = solve_all(micro(MEMORY_MODEL, SHORT, {"max_gpus": 1}))
    assert result.status == SolveStatus.INFEASIBLE
    assert any("memory" in line and "slo.max_gpus" in line for line in result.explanation)


# (R1) TP must divide the attention heads.
# One dense layer (so no pipeline split), 3 heads of 1024 (hidden 3072), FFN 8192, and a
# 1,200,000-token untied vocabulary: embedding + LM head are 2 x 1.2M x 3072 = 7.37G parameters =
# 14.75 GB, the layer 0.18 GB. Only TP shards these weights (vocab-parallel embedding and head,
# column/row-parallel layer); attention DP and replicas copy them. One GPU: 14.8 GB > 9.0 GB.
# TP = 2 does not divide 3 heads. TP = 3: 4.9 GB per GPU. Optimum: 3 GPUs, tp = 3.
HEADS_MODEL = {
    "name": "micro-heads",
    "num_layers": 1,
    "hidden_size": 3072,
    "attention": {"kind": "mha", "num_heads": 3, "head_dim": 1024},
    "ffn_size": 8192,
    "ffn_gated": False,
    "vocab_size": 1_200_000,
}


def test_tp_must_divide_the_heads():
    result = solve_all(micro(HEADS_MODEL, SHORT, {}))
    assert result.status == SolveStatus.OPTIMAL
    assert result.plan.gpus == 3
    assert result.plan.parallelism.tp == 3


# (R3) A TP group stays inside a node.
# One dense layer, 8 heads of 1024 (hidden 8192), FFN 16,384, vocabulary 1,530,000: embedding +
# head are 2 x 1.53M x 8192 = 25.07G parameters = 50.1 GB, the layer 1.1 GB; 51.2 GB in all.
# TP = 4 leaves 12.8 GB per GPU > 9.0 GB, so TP = 8 is needed (6.4 GB per GPU). With 4 GPUs per
# node a TP group of 8 would span two nodes: no plan. With 8 GPUs per node: 8 GPUs, tp = 8.
TP_NODE_MODEL = {
    "name": "micro-tp-node",
    "num_layers": 1,
    "hidden_size": 8192,
    "attention": {"kind": "mha", "num_heads": 8, "head_dim": 1024},
    "ffn_size": 16_384,
    "ffn_gated": False,
    "vocab_size": 1_530_000,
}


def test_tp_group_may_not_span_nodes():
    result = solve_all(micro(TP_NODE_MODEL, SHORT, {}, gpus_per_node=4, nodes=2))
    assert result.status == SolveStatus.INFEASIBLE
    wide = solve_all(micro(TP_NODE_MODEL, SHORT, {}, gpus_per_node=8, nodes=1))
    assert wide.status == SolveStatus.OPTIMAL
    assert wide.plan.gpus == 8
    assert wide.plan.parallelism.tp == 8


# (R4) EP cannot exceed the experts; MoE TP must divide the expert FFN.
# One MoE layer, hidden 8192, 2 experts of FFN 305,152: one expert is 2 x 8192 x 305,152 = 5.0G
# parameters = 10.0 GB, more than a GPU. The experts' 20.0 GB must be split ep x tp_moe >= 3 ways
# (20.0 / 2 = 10.0 > 9.0). EP is at most 2 (two experts); 305,152 = 2^8 x 1,192 is not divisible
# by 3, so tp_moe = 3 is out and the smallest split is ep x tp_moe = 4 (5.0 GB per GPU + 0.5 GB
# of replicated attention). Optimum: 4 GPUs with ep * tp_moe = 4 and ep <= 2.
EP_MODEL = {
    "name": "micro-ep",
    "num_layers": 1,
    "hidden_size": 8192,
    "attention": {"kind": "mha", "num_heads": 64},
    "moe": {"num_experts": 2, "top_k": 1, "expert_ffn_size": 305_152, "gated": False},
    "vocab_size": 1000,
}


def test_ep_is_limited_by_the_experts():
    result = solve_all(micro(EP_MODEL, SHORT, {}))
    assert result.status == SolveStatus.OPTIMAL
    assert result.plan.gpus == 4
    par = result.plan.parallelism
    assert par.ep <= 2 and par.ep * par.tp_moe == 4


# (F5) TTFT decides the GPU count.
# Four MoE layers, hidden 2048, 16 heads, 8 experts of FFN 4096 (not gated), top-2; 8 sequences
# of 2,048 prompt tokens. Per token and layer: attention projections 4 x 2048^2 = 16.8M
# parameters, two experts 2 x 2 x 2048 x 4096 = 33.6M: 50.3M, x 4 layers = 201M, so
# 2 x 201M x 2048 = 825 GFLOP per sequence; attention scores and values add
# 4 x 2048^2 x 2048 x 4 layers / 2 (causal) = 69 GFLOP. ~894 GFLOP / 50 TFLOPS = 17.9 ms per
# sequence (the evaluator's 19.0 ms adds the LM head, router and memory-bound small ops).
# The whole batch is 8 x 19.0 = 152 ms of GPU work. TTFT <= 65 ms: any 2 GPUs need at least
# 152 / 2 = 76 ms > 65 ms. Three replicas of one GPU take ceil(8 / 3) = 3 sequences each:
# 3 x 19.0 = 57 ms <= 65 ms. Optimum: 3 GPUs.
TTFT_MODEL = {
    "name": "micro-ttft",
    "num_layers": 4,
    "hidden_size": 2048,
    "attention": {"kind": "mha", "num_heads": 16},
    "moe": {"num_experts": 8, "top_k": 2, "expert_ffn_size": 4096, "gated": False},
    "vocab_size": 32000,
}


def test_ttft_sets_the_gpu_count():
    problem = micro(TTFT_MODEL, LONG, {"ttft_s": 0.065})
    one_gpu = one_gpu_plan(TTFT_MODEL)
    whole_batch_s = evaluate(problem, one_gpu).ttft_s
    assert 0.894e12 * 8 / 50e12 <= whole_batch_s <= 0.160  # the hand FLOPs bound and the 152 ms figure
    assert whole_batch_s / 2 > 0.065  # two GPUs cannot make it
    result = solve_all(problem)
    assert result.status == SolveStatus.OPTIMAL
    assert result.plan.gpus == 3
    assert result.evaluation.ttft_s <= 0.065


# (F8) A decode-throughput floor no GPU count can meet.
# Same model, 2,048 + 64 = 2,112 tokens of context. KV cache per token: 2 (K, V) x 2048 x 2 bytes
# x 4 layers = 32 KiB; each decoded token reads its sequence's whole cache, 2,112 x 32 KiB =
# 69.2 MB. At 1 TB/s a GPU can serve at most 1e12 / 69.2e6 = 14.4 tokens/ms whatever the
# parallelism (splitting the cache over more GPUs divides the reads and the tokens alike), before
# counting weights. A floor of 20 tokens/ms/GPU is infeasible; the explanation must give the best
# reachable figure, which can only be lower than 14.4.
def test_decode_floor_above_the_kv_bandwidth_bound_is_infeasible():
    problem = micro(
        TTFT_MODEL,
        LONG,
        {"min_decode_tokens_per_ms_per_gpu": 20.0},
        objective={"primary": "min_gpus", "throughput_phase": "decode"},
    )
    result = solve_all(problem)
    assert result.status == SolveStatus.INFEASIBLE
    line = next(line for line in result.explanation if line.startswith("decode throughput"))
    best = float(line.split("cannot exceed ")[1].split(" ")[0])
    assert best < 1e12 / (2112 * 32 * 1024) / 1e3


def test_decode_floor_within_reach_needs_one_gpu():
    # The same instance with a floor of 1 token/ms/GPU, far below both bounds: one GPU meets it.
    problem = micro(
        TTFT_MODEL,
        LONG,
        {"min_decode_tokens_per_ms_per_gpu": 1.0},
        objective={"primary": "min_gpus", "throughput_phase": "decode"},
    )
    result = solve_all(problem)
    assert result.status == SolveStatus.OPTIMAL
    assert result.plan.gpus == 1


# (D1) Multi-token prediction: each decode step verifies 2 tokens per sequence against one read of
# its cache and emits 1 + 0.8 = 1.8 tokens. Memory-bound decode of this model at 1 GPU reads the
# weights once per step plus 8 x 69.2 MB of cache; the draft adds GEMM work on 16 instead of 8
# tokens (still memory-bound), so the step hardly slows while it emits 1.8x the tokens: TPOT per
# token falls by nearly 1.8x, and the solver's TPOT bound (step time <= TPOT x 1.8) must agree with
# the evaluator on every backend.
def test_mtp_divides_the_step_over_accepted_tokens():
    plain = micro(TTFT_MODEL, LONG, {}, objective={"primary": "min_gpus", "throughput_phase": "decode"})
    mtp_workload = dict(LONG, decode_tokens_per_step=2, draft_acceptance=0.8)
    mtp = micro(TTFT_MODEL, mtp_workload, {}, objective={"primary": "min_gpus", "throughput_phase": "decode"})
    one_gpu = one_gpu_plan(TTFT_MODEL)
    base, drafted = evaluate(plain, one_gpu), evaluate(mtp, one_gpu)
    step_ratio = drafted.tpot_s * 1.8 / base.tpot_s  # step time with drafts / without
    assert 1.0 <= step_ratio < 1.15
    assert drafted.decode_tokens_per_ms_per_gpu > 1.5 * base.decode_tokens_per_ms_per_gpu
    # KV memory is the same: drafts do not add resident sequences
    assert max(s.memory.kv_cache_bytes for s in drafted.stages) == max(s.memory.kv_cache_bytes for s in base.stages)
    # a TPOT the plain step cannot meet but the drafted one can
    tpot_ms = (base.tpot_s + drafted.tpot_s) / 2 * 1e3
    assert solve_all(micro(TTFT_MODEL, LONG, {"tpot_ms": tpot_ms, "max_gpus": 1})).status == SolveStatus.INFEASIBLE
    result = solve_all(micro(TTFT_MODEL, mtp_workload, {"tpot_ms": tpot_ms, "max_gpus": 1}))
    assert result.status == SolveStatus.OPTIMAL
    assert result.evaluation.tpot_s * 1e3 <= tpot_ms
