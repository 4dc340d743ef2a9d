"""`placer evaluate` refuses physically impossible plans (exit 2, the field named) and still
evaluates the shipped and solver-written plans with unchanged figures.

Each impossible plan is the shipped EP64 reference plan (128 GPUs on the 16-node cluster of
``instances/ep64-128gpu.json``) with one field broken.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from placer import api
from placer.cli import app
from placer.costmodel.rules import ENGINE_RULES
from placer.evaluator import evaluate
from placer.formulation.data import config_rules

ROOT = Path(__file__).resolve().parents[1]
EP64 = ROOT / "instances" / "ep64-128gpu.json"
EP64_PLAN = ROOT / "plans" / "seed002-ep64-tp2.json"
MOE10B = ROOT / "instances" / "moe10b.json"
MOE10B_PLAN = ROOT / "plans" / "seed000-tp2-ep4-pp4.json"
EXPERTS = 64  # moe10b-e64
LAYERS = 16  # all MoE


def _default_nodes() -> list[int]:
    return [rank // 8 for rank in range(128)]


def _one_expert_per_rank() -> list[list[int]]:
    return [[e] for e in range(EXPERTS)]


def _maps(layers: list[int], gpus: list[list[Any]] | None = None) -> list[dict[str, Any]]:
    return [{"layer": layer, "gpus": gpus if gpus is not None else _one_expert_per_rank()} for layer in layers]


def _with_rank(gpus: list[list[Any]], rank: int, experts: list[Any]) -> list[list[Any]]:
    out = copy.deepcopy(gpus)
    out[rank] = experts
    return out


def _first_layer_broken(gpus: list[list[Any]]) -> list[dict[str, Any]]:
    """A full expert map whose layer 0 has ``gpus`` and the others are fine."""
    return _maps([0], gpus) + _maps(list(range(1, LAYERS)))


IMPOSSIBLE = [
    # (case, fields replaced in the plan, field named, words of the reason)
    ("all-ranks-on-one-node", {"rank_to_node": [0] * 128}, "rank_to_node[8]", ("node 0 is full", "8 GPUs")),
    (
        "node-beyond-cluster",
        {"rank_to_node": _default_nodes()[:17] + [99] + _default_nodes()[18:]},
        "rank_to_node[17]",
        ("node 99 does not exist", "16 nodes"),
    ),
    ("negative-node", {"rank_to_node": [-1] + _default_nodes()[1:]}, "rank_to_node[0]", ("node -1",)),
    ("nodes-too-few", {"nodes": 1}, "nodes", ("says 1", "occupy 16")),
    ("nodes-too-many", {"nodes": 400}, "nodes", ("says 400", "occupy 16")),
    (
        "map-layer-beyond-model",
        {"expert_map": _maps([*range(LAYERS), 99])},
        "expert_map[16].layer",
        ("layer 99 does not exist", "0..15"),
    ),
    (
        "map-layer-twice",
        {"expert_map": _maps([*range(LAYERS), 3])},
        "expert_map[16].layer",
        ("layer 3 is mapped twice", "expert_map[3]"),
    ),
    ("map-layers-missing", {"expert_map": _maps([0, 1])}, "expert_map", ("MoE layers 2, 3", "have no map")),
    (
        "fractional-expert-id",
        {"expert_map": _first_layer_broken(_with_rank(_one_expert_per_rank(), 5, [5.5]))},
        "expert_map[0].gpus[5][0]",
        ("integer",),
    ),
    (
        "float-expert-id",
        {"expert_map": _first_layer_broken(_with_rank(_one_expert_per_rank(), 5, [5.0]))},
        "expert_map[0].gpus[5][0]",
        ("integer",),
    ),
    (
        "expert-id-out-of-range",
        {"expert_map": _first_layer_broken(_with_rank(_one_expert_per_rank(), 63, [64]))},
        "expert_map[0].gpus[63]",
        ("expert 64", "out of range 0..63"),
    ),
    (
        "negative-expert-id",
        {"expert_map": _first_layer_broken(_with_rank(_one_expert_per_rank(), 2, [-1]))},
        "expert_map[0].gpus[2]",
        ("expert -1", "out of range"),
    ),
    (
        "expert-missing",
        {"expert_map": _first_layer_broken(_with_rank(_one_expert_per_rank(), 63, [0]))},
        "expert_map[0].gpus",
        ("[63]", "no slot"),
    ),
    (
        "expert-twice-on-one-gpu",
        {"expert_map": _first_layer_broken(_with_rank(_one_expert_per_rank(), 0, [0, 0]))},
        "expert_map[0].gpus[0]",
        ("appears twice",),
    ),
    (
        "ep-ranks-count",
        {"expert_map": _first_layer_broken([[e, e + 1] for e in range(0, EXPERTS, 2)])},
        "expert_map[0].gpus",
        ("32 EP ranks", "ep = 64"),
    ),
    ("layers-short", {"stages": [{"layers": [0, 14]}]}, "stages[0].layers", ("ends at layer 14", "0..15")),
]


def _write_plan(tmp_path: Path, base: Path, changes: dict[str, Any]) -> Path:
    plan = json.loads(base.read_text())
    plan.update(changes)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


@pytest.mark.parametrize(("case", "changes", "field", "words"), IMPOSSIBLE, ids=[c[0] for c in IMPOSSIBLE])
def test_impossible_plan_exits_2_naming_the_field(
    tmp_path: Path, case: str, changes: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    plan = _write_plan(tmp_path, EP64_PLAN, changes)
    result = CliRunner().invoke(app, ["evaluate", str(EP64), str(plan), "--json"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{field}: " in result.output, result.output
    for word in words:
        assert word in result.output, result.output
    assert '"metrics"' not in result.output  # nothing evaluated, nothing printed


def test_unbounded_cluster_accepts_any_node_numbers_but_not_a_full_node(tmp_path: Path) -> None:
    # moe10b has no node count: node 103 exists, but a node still has 8 GPUs.
    spread = [100 + rank // 8 for rank in range(32)]
    ok = CliRunner().invoke(
        app, ["evaluate", str(MOE10B), str(_write_plan(tmp_path, MOE10B_PLAN, {"rank_to_node": spread}))]
    )
    assert ok.exit_code == 0, ok.output
    crowded = [0] * 9 + [1 + rank // 8 for rank in range(9, 32)]
    bad = CliRunner().invoke(
        app, ["evaluate", str(MOE10B), str(_write_plan(tmp_path, MOE10B_PLAN, {"rank_to_node": crowded}))]
    )
    assert bad.exit_code == 2, bad.output
    assert "rank_to_node[8]: node 0 is full" in bad.output, bad.output


def test_stages_misaligned_to_nodes_evaluate_infeasible_under_r5(tmp_path: Path) -> None:
    # Legal but outside the engine rules: stage 0 on node 0, stages 1 and 2 each split 4 + 4 over
    # nodes 1 and 2, stage 3 on node 3. It runs the evaluator (exit 0) and is reported infeasible.
    layout = [0] * 8 + [1] * 4 + [2] * 4 + [1] * 4 + [2] * 4 + [3] * 8
    plan = _write_plan(tmp_path, MOE10B_PLAN, {"rank_to_node": layout})
    result = CliRunner().invoke(app, ["evaluate", str(MOE10B), str(plan), "--json"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)["evaluation"]
    assert evaluation["feasible"] is False
    assert evaluation["rules"]["stages_aligned_to_domains"] is False
    assert [m for m in evaluation["rule_violations"] if "NVLink domains" in m], evaluation["rule_violations"]


def test_formulation_and_evaluator_read_one_rule_definition() -> None:
    # Every rule the evaluator reports for a plan is a rule the formulation keys, with the same verdict.
    problem = api.load_problem(EP64)
    plan = api.load_plan(EP64_PLAN)
    evaluation = evaluate(problem, plan)
    formulation = config_rules(problem, plan.parallelism)
    names = {rule.key: rule.name for rule in ENGINE_RULES}
    assert {names[key]: ok for key, ok in formulation.items()} == {c.name: c.ok for c in evaluation.rules}
    assert "R5_stages_aligned_to_domains" in formulation and "R1_tp_divides_heads" in formulation


# Figures of the shipped plans: those of commit b775ba0 (before the plan checks and the shared rules)
# until f738c07 stopped charging the FP8 activation-quantisation passes to BF16 GEMMs (both seeds run
# BF16 weights: TTFT and TPOT fall, throughput rises; memory, traffic and imbalance unchanged).
SHIPPED = [
    (
        EP64,
        EP64_PLAN,
        {
            "ttft_s": 0.5860440048028445,
            "tpot_ms": 1.400410711111111,
            "prefill_tokens_per_ms_per_gpu": 55.91388996637502,
            "decode_tokens_per_ms_per_gpu": 5.712609834048367,
            "memory_bytes_per_gpu_max": 3648107520.0,
            "cross_node_bytes_per_token": 3759.9609375,
            "cross_node_bytes_per_token_plain": 7680.0,
            "load_imbalance_max": 5.71875,
        },
    ),
    (
        MOE10B,
        MOE10B_PLAN,
        {
            "ttft_s": 0.16478445529600003,
            "tpot_ms": 1.3014765787305942,
            "prefill_tokens_per_ms_per_gpu": 446.67704134892904,
            "decode_tokens_per_ms_per_gpu": 3.073432181085758,
            "memory_bytes_per_gpu_max": 3581445120.0,
            "cross_node_bytes_per_token": 0.0,
            "cross_node_bytes_per_token_plain": 0.0,
            "load_imbalance_max": 1.0,
        },
    ),
]


@pytest.mark.parametrize(("instance", "plan", "figures"), SHIPPED, ids=["ep64-128gpu", "moe10b"])
def test_shipped_plans_evaluate_with_unchanged_figures(instance: Path, plan: Path, figures: dict[str, float]) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(instance), str(plan), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["evaluation"]["feasible"] is True
    assert document["metrics"] == pytest.approx(figures, rel=1e-12, abs=1e-12)
    assert document["nodes"] == json.loads(plan.read_text())["nodes"]


def _is_plan(path: Path) -> bool:
    document = json.loads(path.read_text())
    return isinstance(document, dict) and document.get("schema_version") == "placer.plan/1"


SOLVER_WRITTEN = sorted(p for p in (ROOT / "results").glob("*/*.json") if _is_plan(p))


@pytest.mark.parametrize("path", SOLVER_WRITTEN, ids=[f"{p.parent.name}/{p.stem}" for p in SOLVER_WRITTEN])
def test_written_plans_pass_the_checks_with_their_figures(path: Path) -> None:
    # results/ holds plans written by `placer solve` / `placer place` (expert maps, rank_to_node,
    # nodes, hardware other than the instance's): each passes and re-evaluates to its stored figures.
    from placer.serving import evaluate_serving  # the serving figures for serving kinds, burst unchanged

    source = api.export_input(path)  # reshapes to the plan's hardware and runs the plan checks
    evaluation = evaluate_serving(source.problem, source.plan)
    assert evaluation.feasible
    stored = json.loads(path.read_text())
    assert evaluation.nodes == stored["nodes"]
    for key, value in stored.get("metrics", {}).items():
        assert evaluation.metrics()[key] == pytest.approx(value, rel=1e-9), key


def test_a_plan_for_other_hardware_is_evaluated_with_a_note(tmp_path):
    """Evaluating a plan on another instance's hardware is allowed (hardware comparisons do it)
    but said, since the figures are the instance's."""
    import json

    from typer.testing import CliRunner

    from placer.cli import app

    plan = json.loads((ROOT / "plans" / "seed000-tp2-ep4-pp4.json").read_text())
    plan["hardware"] = "b200"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan))
    outcome = CliRunner().invoke(app, ["evaluate", str(ROOT / "instances" / "moe10b.json"), str(path), "--json"])
    assert outcome.exit_code == 0, outcome.output
    notes = json.loads(outcome.stdout)["evaluation"]["notes"]
    assert any("'b200'" in note for note in notes)
