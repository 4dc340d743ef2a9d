"""Fidelity benchmark: every published point predicted, accuracy bounds, memory facts and margin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.evaluator import evaluate
from placer.fidelity import DATA_FILE, build_case, load_points, run_fidelity
from placer.loading import load_hardware

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "calibration.json"


@pytest.fixture(scope="module")
def report():
    return run_fidelity()


def test_every_point_is_predicted(report):
    data = json.loads(DATA_FILE.read_text())
    assert len(report.rows) == len(data["points"])
    assert all(r.predicted > 0 for r in report.rows)


@pytest.mark.skipif(not SHARED.exists(), reason="shared reference file not in this checkout")
def test_points_copy_the_shared_reference():
    shared = {b["id"]: b for b in json.loads(SHARED.read_text())["benchmarks"]}
    points = load_points()["points"]
    assert {p["id"] for p in points} == set(shared)  # no published point left out
    for p in points:
        assert p["published"]["source"] == shared[p["id"]]["source"]
        assert p["setting"]["measured"] in list(shared[p["id"]]["metric"].values()) or p["id"] == "ds_day6_prefill"


def test_no_controlled_point_off_by_2x(report):
    # Issue 6: none beyond 2x (the median target is the next-but-one test).
    assert report.summary()["max_ratio"] <= 2.0


def test_same_profile_for_every_point_of_a_gpu(report):
    # No per-point tuning: one catalogue profile per GPU type.
    assert set(report.hardware) == {r.hardware for r in report.rows}
    for name, profile in report.hardware.items():
        assert profile == load_hardware(name)


def _fact(report, label):
    return next(m for m in report.memory if m.label == label)


def test_memory_facts_that_fit(report):
    assert _fact(report, "sglang_prefill_fit_8k_no_tbo").agrees
    assert _fact(report, "sglang_prefill_fit_16k_tbo").agrees


@pytest.mark.xfail(
    strict=True,
    reason="known gap: the workspace model does not yet reproduce SGLang's OOM at 16,384 tokens without TBO",
)
def test_memory_fact_oom_without_tbo(report):
    assert _fact(report, "sglang_prefill_oom_16k_no_tbo").agrees


def test_two_batch_overlap_halves_the_workspace():
    data = load_points()
    hw = load_hardware("h100-sxm")
    base = {
        "gpus": 32,
        "ep": 32,
        "physical_experts": 288,
        "tokens_per_gpu": 16384,
        "prompt_tokens": 4096,
        "phase": "prefill",
    }
    act = {}
    for tbo in (False, True):
        problem, plan = build_case(dict(base, two_batch_overlap=tbo), hw, data["model"], data["precision"])
        act[tbo] = evaluate(problem, plan).stages[0].memory.activation_bytes
    logits = 4 * 129280 * 4  # 4 sequences' last-token logits, fp32, kept in both
    assert act[True] - logits == pytest.approx((act[False] - logits) / 2, rel=1e-6)


def test_a_plan_that_fits_leaves_the_stated_margin(report):
    # The memory check keeps memory_margin_fraction (5%) of HBM free on top of the runtime reserve.
    for row in report.rows + tuple(report.memory):
        hbm_gb = report.hardware["h100-sxm" if "sglang" in row.label else "h800"].hbm_capacity_gb
        limit = row.memory_limit_gb if hasattr(row, "memory_limit_gb") else row.limit_gb
        assert limit == pytest.approx(hbm_gb * 0.95)
    fits = [r for r in report.rows if r.memory_gb <= r.memory_limit_gb]
    assert fits and all(r.memory_gb <= 0.95 * 80 for r in fits)


def test_one_imbalance_factor_reproduces_sglangs_ablation(report):
    # The factor is solved on the ratio default/perfect of one published setting; it must give that
    # ratio back, and the same factor must be used for every SGLang point.
    data = load_points()
    ablation = data["expert_distribution_ablation"]
    point = next(p for p in data["points"] if p["label"] == ablation["point"])
    setting = dict(point["setting"], label=point["label"])
    hardware = report.hardware[setting["hardware"]]
    from placer.evaluator import evaluate
    from placer.fidelity import predicted_per_node

    skewed, even = (
        predicted_per_node(
            setting, evaluate(*build_case(setting, hardware, data["model"], data["precision"], imbalance=f))
        )
        for f in (report.sglang_imbalance, 1.0)
    )
    published = ablation["default_tokens_per_s_per_node"] / ablation["perfect_tokens_per_s_per_node"]
    assert skewed / even == pytest.approx(published, rel=2e-3)
    assert 1.0 < report.sglang_imbalance < 2.0
    assert {r.imbalance for r in report.rows if r.label.startswith("sglang_")} == {report.sglang_imbalance}
    assert {r.imbalance for r in report.rows if r.label.startswith("ds_")} == {1.0}


def test_controlled_points_meet_the_accuracy_target(report):
    summary = report.summary()
    assert summary["median_abs_error"] < 0.25
    assert summary["max_ratio"] <= 2.0


def test_disaggregated_deployments_are_priced_as_their_pools():
    """The points measured on a disaggregated deployment are the pools of one placer.plan/2 plan,
    and pricing them so moves no figure: each pool is the plan the point alone would be."""
    from placer.fidelity import build_case, load_points, run_fidelity
    from placer.loading import load_hardware
    from placer.schema import DisaggregatedPlan

    report = run_fidelity()
    assert set(report.deployments) == {"sglang-overall-12node", "deepseek-day6"}
    day6 = report.deployments["deepseek-day6"]
    assert isinstance(day6, DisaggregatedPlan)
    assert (day6.prefill.gpus, day6.decode.gpus, day6.gpus) == (32, 144, 176)
    assert not set(day6.prefill.nodes) & set(day6.decode.nodes)
    assert DisaggregatedPlan.model_validate_json(day6.model_dump_json()) == day6
    data = load_points()
    by_label = {p["label"]: p for p in data["points"]}
    for row in report.rows:
        if row.deployment is None:
            continue
        point = by_label[row.label]
        setting = dict(point["setting"], label=point["label"])
        problem, plan = build_case(
            setting, load_hardware(setting["hardware"]), data["model"], data["precision"], imbalance=row.imbalance
        )
        from placer.evaluator import evaluate
        from placer.fidelity import predicted_per_node

        assert row.predicted == predicted_per_node(setting, evaluate(problem, plan)), row.label
