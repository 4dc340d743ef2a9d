"""Property: on random small instances CP-SAT and MILP reach the exhaustive optimum (status and
every lexicographic term), and the evaluator accepts every returned plan."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placer.problem import build_problem
from placer.result import SolveStatus
from placer.schema import Instance
from placer.solve import solve


@st.composite
def small_instances(draw):
    heads = draw(st.sampled_from([4, 8, 16]))
    experts = draw(st.sampled_from([4, 8, 16]))
    model = {
        "name": "random-moe",
        "num_layers": draw(st.integers(2, 6)),
        "hidden_size": draw(st.sampled_from([256, 512, 1024])),
        "attention": {"kind": "mha", "num_heads": heads},
        "moe": {
            "num_experts": experts,
            "top_k": draw(st.integers(1, 2)),
            "expert_ffn_size": draw(st.sampled_from([512, 1024, 2048])),
            "first_dense_layers": draw(st.integers(0, 1)),
        },
        "ffn_size": 2048,
        "vocab_size": 32000,
    }
    prompt = draw(st.sampled_from([1024, 4096, 16384]))
    slo = {"max_gpus": 8}
    if draw(st.booleans()):
        slo["ttft_s"] = draw(st.sampled_from([0.05, 0.2, 1.0]))
    if draw(st.booleans()):
        slo["tpot_ms"] = draw(st.sampled_from([2.0, 5.0, 20.0]))
    return Instance.model_validate(
        {
            "name": "random",
            "model": model,
            "hardware": "seed-400tf",
            "cluster": {"gpus_per_node": 4, "num_nodes": 2},
            "workload": {
                "batch_size": draw(st.sampled_from([8, 32, 128])),
                "prompt_tokens": {"min": 128, "max": prompt},
                "output_tokens": 256,
            },
            "slo": slo,
            "objective": {
                "primary": draw(st.sampled_from(["min_gpus", "max_throughput_per_gpu"])),
                "throughput_phase": draw(st.sampled_from(["prefill", "decode"])),
                "tie_breaks": draw(
                    st.sampled_from(
                        [
                            ["max_throughput_per_gpu", "min_cross_node_traffic"],
                            ["max_throughput_per_gpu", "min_ttft"],
                            ["min_ttft", "min_cross_node_traffic"],
                            ["min_cross_node_traffic", "min_ttft"],
                        ]
                    )
                ),
            },
        }
    )


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(small_instances())
def test_every_backend_matches_exhaustive(instance):
    problem = build_problem(instance)
    reference = solve(problem, backend="exhaustive")
    for backend in ("cpsat", "milp"):
        result = solve(problem, backend=backend, workers=1, seed=0)
        assert result.status == reference.status, backend
        if reference.status != SolveStatus.OPTIMAL:
            continue
        assert result.evaluation is not None and result.evaluation.feasible, backend
        for term, value in reference.terms.items():
            assert math.isclose(result.terms[term], value, rel_tol=1e-6, abs_tol=1e-9), (backend, term)
