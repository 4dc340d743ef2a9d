"""Engines as constraints (R7): the capability table, the search, the evaluator, explain and export agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.catalogue.engines import (
    CAPABILITIES,
    ENGINE_CHOICES,
    ROWS,
    Usage,
    engine_can_run,
    row,
    unsupported,
    unverified,
)
from placer.errors import InputError
from placer.evaluator import evaluate
from placer.explain import engine_lines
from placer.export import build_export
from placer.export.common import ExportInput
from placer.formulation.data import build_formulation, config_rules
from placer.problem import Problem, load_problem
from placer.schema import Parallelism, Plan, Stage
from placer.solve import solve

ROOT = Path(__file__).resolve().parents[1]
MIXTRAL = ROOT / "instances" / "mixtral-8x7b-h100.json"
ENGINES = ENGINE_CHOICES[1:]


def _problem(engine: str) -> Problem:
    return load_problem(MIXTRAL).replace(engine=engine)


def _even_stages(layers: int, pp: int) -> list[Stage]:
    base, extra = divmod(layers, pp)
    stages, first = [], 0
    for s in range(pp):
        size = base + (1 if s < extra else 0)
        stages.append(Stage(layers=(first, first + size - 1)))
        first += size
    return stages


#: A configuration that uses each capability (and as few others as possible), on a MoE model.
USES = {
    "attention_dp": Usage(Parallelism(tp=1, dp_attn=4, ep=1, tp_moe=4), True),
    "attention_tp_with_dp": Usage(Parallelism(tp=2, dp_attn=4, ep=1, tp_moe=8), True),
    "expert_parallel": Usage(Parallelism(tp=4, dp_attn=1, ep=4, tp_moe=1), True),
    "moe_tp_with_ep": Usage(Parallelism(tp=8, dp_attn=1, ep=4, tp_moe=2), True),
    "pipeline_parallel": Usage(Parallelism(pp=2, tp=4, dp_attn=1, ep=1, tp_moe=4), True, (16, 16)),
    "uneven_pipeline_stages": Usage(Parallelism(pp=2, tp=4, dp_attn=1, ep=1, tp_moe=4), True, (15, 17)),
    "pp_with_ep": Usage(Parallelism(pp=2, tp=4, dp_attn=1, ep=4, tp_moe=1), True, (16, 16)),
    "replicas": Usage(Parallelism(tp=4, dp_attn=1, ep=1, tp_moe=4, replicas=3), True),
    "speculative_decoding": Usage(Parallelism(tp=4, dp_attn=1, ep=1, tp_moe=4), True, None, 2),
}


def test_table_has_a_sourced_row_for_every_engine_and_capability() -> None:
    assert set(USES) == {c.name for c in CAPABILITIES}
    assert len(ROWS) == len(ENGINES) * len(CAPABILITIES)
    for engine in ENGINES:
        for capability in CAPABILITIES:
            r = row(engine, capability.name)
            assert r.source.strip()
            # an unverified row never forbids: an unchecked claim does not shrink the search
            assert r.verified or r.supported
    assert all(row(engine, "replicas").supported for engine in ENGINES)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("capability", sorted(USES))
def test_each_capability_blocks_exactly_what_it_should(engine: str, capability: str) -> None:
    usage = USES[capability]
    used = {c.name for c in CAPABILITIES if c.used(usage)}
    assert capability in used
    lacking = {f.row.capability for f in unsupported(engine, usage)}
    assert lacking == {name for name in used if not row(engine, name).supported}
    assert engine_can_run("any", usage) and not unsupported("any", usage) and not unverified("any", usage)


def test_what_each_engine_cannot_run() -> None:
    assert not engine_can_run("trtllm", USES["attention_tp_with_dp"])
    assert not engine_can_run("trtllm", USES["uneven_pipeline_stages"])
    assert engine_can_run("trtllm", USES["moe_tp_with_ep"]) and engine_can_run("trtllm", USES["pp_with_ep"])
    assert not engine_can_run("vllm", USES["moe_tp_with_ep"])
    assert engine_can_run("vllm", USES["attention_tp_with_dp"]) and engine_can_run(
        "vllm", USES["uneven_pipeline_stages"]
    )
    assert all(engine_can_run("sglang", usage) for usage in USES.values())
    # TensorRT-LLM's own split (first layers % pp stages one more) is not "uneven"; a dense model uses no EP
    assert engine_can_run("trtllm", Usage(Parallelism(pp=2, tp=4, dp_attn=1, ep=1, tp_moe=4), True, (17, 16)))
    assert engine_can_run("vllm", Usage(Parallelism(tp=8, dp_attn=1, ep=4, tp_moe=2), False))


def test_any_is_the_default_and_adds_no_rule() -> None:
    problem = load_problem(MIXTRAL)
    assert problem.engine == "any"
    par = Parallelism(tp=2, dp_attn=4, ep=8, tp_moe=1)
    assert not any(key.startswith("R7") for key in config_rules(problem, par))
    assert config_rules(_problem("trtllm"), par)["R7_engine_supports"] is False
    assert config_rules(_problem("vllm"), par)["R7_engine_supports"] is True


@pytest.mark.parametrize("engine", ENGINES)
def test_search_space_is_any_minus_what_the_engine_lacks(engine: str) -> None:
    everything = {c.par for c in build_formulation(_problem("any")).configs}
    admitted = {c.par for c in build_formulation(_problem(engine)).configs}
    expected = {p for p in everything if engine_can_run(engine, Usage(p, True))}
    assert admitted == expected
    if engine == "trtllm":
        assert not any(p.tp > 1 and p.dp_attn > 1 for p in admitted)
        assert len(admitted) < len(everything)


def test_trtllm_solve_does_not_return_attention_tp_with_dp() -> None:
    unrestricted = solve(_problem("any"), work_limit=1e6)
    assert unrestricted.plan is not None
    par = unrestricted.plan.parallelism
    assert par.tp > 1 and par.dp_attn > 1  # the pinned optimum: tp 2 x dp_attn 4
    result = solve(_problem("trtllm"), work_limit=1e6)
    assert result.plan is not None and result.evaluation is not None and result.evaluation.feasible
    par = result.plan.parallelism
    assert not (par.tp > 1 and par.dp_attn > 1)


def test_evaluator_reports_the_engine_rule_as_infeasible() -> None:
    plan = Plan(gpus=8, parallelism=Parallelism(tp=2, dp_attn=4, ep=8, tp_moe=1), stages=_even_stages(32, 1))
    assert evaluate(_problem("any"), plan).feasible
    evaluation = evaluate(_problem("trtllm"), plan)
    assert not evaluation.feasible
    assert [c.name for c in evaluation.rules if not c.ok] == ["engine_supports"]
    assert any("attention tp 2 x dp 4" in m for m in evaluation.rule_messages)
    # uneven stages are a plan property: TensorRT-LLM's own split passes, another one breaks R7
    split = Parallelism(pp=2, tp=4, dp_attn=1, ep=4, tp_moe=1)
    own = Plan(gpus=8, parallelism=split, stages=_even_stages(32, 2))
    other = Plan(gpus=8, parallelism=split, stages=[Stage(layers=(0, 14)), Stage(layers=(15, 31))])
    assert all(c.ok for c in evaluate(_problem("trtllm"), own).rules if c.name == "engine_supports")
    broken = evaluate(_problem("trtllm"), other)
    assert any("uneven pipeline partition 15,17" in m for m in broken.rule_messages)
    assert all(c.ok for c in evaluate(_problem("vllm"), other).rules if c.name == "engine_supports")


def test_explanation_names_the_binding_capability() -> None:
    lines = engine_lines(build_formulation(_problem("trtllm")))
    assert lines and "attention TP combined with attention DP" in lines[0] and "parallel-strategy" in lines[0]
    assert engine_lines(build_formulation(_problem("any"))) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_plan_the_search_admits_exports_without_a_capability_warning(engine: str) -> None:
    problem = _problem(engine)
    layers = problem.model.num_layers
    for config in build_formulation(problem).configs:
        par = config.par
        plan = Plan(gpus=par.gpus, parallelism=par, stages=_even_stages(layers, par.pp))
        export = build_export(engine, ExportInput(problem, plan))
        assert not [w for w in export.warnings if "cannot run" in w], (engine, par)
    # and one it does not admit is warned about
    if engine != "sglang":
        lacking = next(n for n in USES if not row(engine, n).supported and n != "uneven_pipeline_stages")
        par = USES[lacking].par
        plan = Plan(gpus=par.gpus, parallelism=par, stages=_even_stages(layers, par.pp))
        warnings = build_export(engine, ExportInput(problem, plan)).warnings
        assert any(f"{engine} cannot run" in w for w in warnings)


def test_unverified_rows_are_named_in_export_notes() -> None:
    problem = _problem("vllm")
    par = Parallelism(pp=2, tp=1, dp_attn=4, ep=4, tp_moe=1)
    plan = Plan(gpus=8, parallelism=par, stages=_even_stages(problem.model.num_layers, 2))
    export = build_export("vllm", ExportInput(problem, plan))
    assert any(
        "vllm unverified" in n and "pipeline parallelism together with expert parallelism" in n for n in export.notes
    )


def test_unknown_engine_is_an_input_error(tmp_path: Path) -> None:
    document = json.loads(MIXTRAL.read_text())
    document["engine"] = "tgi"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InputError) as info:
        load_problem(path)
    assert "engine" in str(info.value)


def test_an_engine_that_splits_layers_itself_gets_that_split_from_every_backend():
    """TensorRT-LLM splits the layers over pipeline stages itself (first stages one layer more):
    DeepSeek-V3's 61 layers over 3 stages are 21, 20, 20. With a memory-bound objective the
    optimum is a pipeline; both the exhaustive scan and CP-SAT must return the engine's split
    (without the engine the free split is 22, 20, 19), and the evaluator must accept it."""
    from placer.api import load_problem
    from placer.catalogue.engines import fixed_stage_starts
    from placer.schema import Objective, SLOs
    from placer.solve import solve

    base = load_problem(ROOT / "instances" / "deepseek-v3-h800.json")
    workload = base.workload.model_copy(update={"batch_size": 64})
    problem = base.replace(
        engine="trtllm",
        workload=workload,
        slo=SLOs(max_gpus=64),
        objective=Objective(primary="min_gpus", tie_breaks=["max_throughput_per_gpu"]),
    )
    assert fixed_stage_starts("trtllm", 61, 3) == (0, 21, 41)
    assert fixed_stage_starts("sglang", 61, 3) is None and fixed_stage_starts("trtllm", 61, 1) is None
    results = [solve(problem, backend=b, time_limit_s=None) for b in ("exhaustive", "cpsat")]
    for result in results:
        assert result.status.value == "optimal" and result.evaluation.feasible
        assert result.plan.gpus == 12 and result.plan.parallelism.pp == 3
        assert [s.layers for s in result.plan.stages] == [(0, 20), (21, 40), (41, 60)]
    assert results[0].terms == pytest.approx(results[1].terms, rel=1e-6)
