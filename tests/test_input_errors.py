"""Broken input files: each one fails with an InputError that names the field and the reason.

The corpus is ``tests/data/bad/``; every file there is one mistake a user could make in an
instance, a model file or a plan. The table below says which loader reads it, which field the
message must name and which words of the reason it must contain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from placer.api import evaluate_files, json_schema
from placer.errors import InputError
from placer.evaluator import check_plan_fits_model, evaluate
from placer.loading import _field_path, load_model, load_plan, validate
from placer.problem import Problem, load_problem
from placer.schema import Instance, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad"
GOOD_INSTANCE = ROOT / "instances" / "moe10b.json"
GOOD_PLAN = ROOT / "plans" / "seed000-tp2-ep4-pp4.json"

# (file under tests/data/bad, loader kind, field the message names, words of the reason)
CASES: list[tuple[str, str, str, tuple[str, ...]]] = [
    # -- instances: load_problem --------------------------------------------------------------
    ("instance-missing-workload.json", "instance", "workload", ("required field is missing",)),
    ("instance-batch-size-string.json", "instance", "workload.batch_size", ("valid integer", '"lots"')),
    ("instance-batch-size-negative.json", "instance", "workload.batch_size", ("greater than 0", "-3")),
    ("instance-output-tokens-zero.json", "instance", "workload.output_tokens", ("greater than 0", "got 0")),
    ("instance-prompt-min-above-max.json", "instance", "workload.prompt_tokens.min", ("20000", "larger than max")),
    ("instance-typo-worklaod.json", "instance", "worklaod", ("unknown field",)),
    ("instance-typo-batch-sise.json", "instance", "workload.batch_sise", ("unknown field",)),
    ("instance-unknown-hardware.json", "instance", "hardware", ("unknown hardware", "h1000", "seed-400tf")),
    ("instance-slo-ttft-negative.json", "instance", "slo.ttft_s", ("greater than 0", "-1.0")),
    # A syntax error has no field: the message names the file, the reason and the position.
    ("instance-invalid-json.json", "instance", "instance-invalid-json.json", ("not valid JSON", "line 8")),
    ("instance-schema-version.json", "instance", "schema_version", ("placer.instance/1", "placer.instance/2")),
    ("instance-model-topk-above-experts.json", "instance", "model.moe.top_k", ("32", "expert count 16")),
    ("instance-model-gqa-heads.json", "instance", "model.attention.num_heads", ("30", "not divisible", "8")),
    ("instance-model-mla-no-kv-lora-rank.json", "instance", "model.attention.kv_lora_rank", ("required for MLA",)),
    ("instance-tie-break-unknown.json", "instance", "objective.tie_breaks[1]", ("max_slo_slack", "min_ttft")),
    ("instance-memory-margin.json", "instance", "cost_parameters.memory_margin_fraction", ("less than 1", "1.5")),
    ("instance-routing-loads-rows.json", "instance", "routing.loads", ("3 rows", "16 MoE layers")),
    ("instance-routing-loads-negative.json", "instance", "routing.loads[0][3]", ("greater than or equal to 0", "-1.0")),
    ("instance-model-file-missing.json", "instance", "model", ("file not found", "no-such-model.json")),
    # -- model files: load_model --------------------------------------------------------------
    ("model-topk-above-experts.json", "model", "moe.top_k", ("32", "larger than the expert count 16")),
    ("model-hidden-size-negative.json", "model", "hidden_size", ("greater than 0", "-512")),
    ("model-mha-kv-heads.json", "model", "attention.num_kv_heads", ("MHA", "got 4")),
    ("model-groups-uneven.json", "model", "moe.num_groups", ("16 experts", "3 equal groups")),
    # -- plans: load_plan + check_plan_fits_model against instances/moe10b.json -----------------
    ("plan-gpus-mismatch.json", "plan", "gpus", ("30 does not equal", "= 32")),
    ("plan-width-mismatch.json", "plan", "parallelism", ("tp * dp_attn", "must equal ep * tp_moe")),
    ("plan-stages-skip.json", "plan", "stages[1].layers", ("starts at layer 5", "skips")),
    ("plan-stages-overlap.json", "plan", "stages[1].layers", ("starts at layer 4", "overlaps")),
    ("plan-stages-short.json", "plan", "stages[3].layers", ("ends at layer 14", "0..15")),
    ("plan-stage-count.json", "plan", "stages", ("3 stages", "pp = 4")),
    ("plan-expert-out-of-range.json", "plan", "expert_map[0].gpus[3]", ("expert 16", "out of range 0..15")),
    ("plan-expert-missing.json", "plan", "expert_map[0].gpus", ("[15]", "no slot")),
    ("plan-expert-twice-on-gpu.json", "plan", "expert_map[0].gpus[0]", ("appears twice",)),
    ("plan-pp-negative.json", "plan", "parallelism.pp", ("greater than 0", "-4")),
]


def _row(case: object) -> tuple:
    """The values of a table row, whether plain or wrapped in ``pytest.param``."""
    return tuple(case.values) if hasattr(case, "values") else tuple(case)  # type: ignore[arg-type,attr-defined]


CASE_FILES = [_row(case)[0] for case in CASES]


@pytest.fixture(scope="module")
def problem() -> Problem:
    return load_problem(GOOD_INSTANCE)


def _load(kind: str, path: Path, problem: Problem) -> None:
    if kind == "instance":
        load_problem(path)
    elif kind == "model":
        load_model(path)
    elif kind == "plan":
        check_plan_fits_model(problem, load_plan(path))
    else:
        raise AssertionError(f"unknown loader kind {kind!r}")


def _error(kind: str, name: str, problem: Problem) -> InputError:
    with pytest.raises(InputError) as info:
        _load(kind, BAD / name, problem)
    return info.value


def test_every_bad_file_is_in_the_table() -> None:
    on_disk = sorted(p.name for p in BAD.glob("*.json"))
    assert on_disk == sorted(CASE_FILES)


@pytest.mark.parametrize(("name", "kind", "field", "reason"), CASES, ids=CASE_FILES)
def test_bad_input_names_field_and_reason(
    name: str, kind: str, field: str, reason: tuple[str, ...], problem: Problem
) -> None:
    message = _error(kind, name, problem).message
    # The field stands in field position ("field: reason"), not merely somewhere in the text.
    assert f"{field}: " in message, f"field {field!r} not named in:\n{message}"
    line = next(ln for ln in message.splitlines() if f"{field}: " in ln)
    for word in reason:
        assert word in line, f"reason {word!r} missing from:\n{line}"


@pytest.mark.parametrize(("name", "kind"), [_row(case)[:2] for case in CASES], ids=CASE_FILES)
def test_message_is_one_line_per_problem_without_traceback(name: str, kind: str, problem: Problem) -> None:
    error = _error(kind, name, problem)
    message = error.message
    assert "Traceback" not in message
    assert error.problems, "an InputError must carry at least one problem"
    lines = message.splitlines()
    assert len(lines) == len(error.problems), message
    assert all(line.strip() for line in lines), message
    assert str(error) == message


def test_embedded_model_error_has_no_union_noise(problem: Problem) -> None:
    error = _error("instance", "instance-model-topk-above-experts.json", problem)
    assert [field for field, _ in error.problems] == ["model.moe.top_k"], error.message
    assert len(error.message.splitlines()) == 1, error.message
    assert "valid string" not in error.message


def test_embedded_hardware_error_has_no_union_noise(problem: Problem) -> None:
    data = json.loads(GOOD_INSTANCE.read_text())
    data["hardware"] = {**problem.hardware.model_dump(), "hbm_gbb": 80}
    with pytest.raises(InputError) as info:
        validate(Instance, data, "inline.json")
    assert [field for field, _ in info.value.problems] == ["hardware.hbm_gbb"], info.value.message
    assert "valid string" not in info.value.message


def test_routing_error_keeps_the_field_loads(problem: Problem) -> None:
    message = _error("instance", "instance-routing-loads-negative.json", problem).message
    assert "routing.loads[0][3]: " in message, message
    assert "routing[0][3]" not in message, message


def test_field_path_keeps_a_field_named_like_a_union_tag() -> None:
    # The tag of the branch ('loads') comes right after the union field, then the field 'loads'.
    loc = ("routing", "loads", "loads", 0, 3)
    assert _field_path(loc, Instance) == "routing.loads[0][3]"
    assert _field_path(loc) == "routing.loads[0][3]"  # without the schema: never two labels in a row


def test_unknown_hardware_names_the_instance_file(problem: Problem) -> None:
    error = _error("instance", "instance-unknown-hardware.json", problem)
    assert error.source is not None and "instance-unknown-hardware.json" in error.source
    assert "instance-unknown-hardware.json" in error.message, error.message


def test_missing_model_file_names_the_instance_file(problem: Problem) -> None:
    message = _error("instance", "instance-model-file-missing.json", problem).message
    assert message.startswith(str(BAD / "instance-model-file-missing.json")), message


def test_plan_errors_name_the_plan_file(problem: Problem) -> None:
    plan = BAD / "plan-stages-short.json"
    with pytest.raises(InputError) as info:
        check_plan_fits_model(problem, load_plan(plan), str(plan))
    assert info.value.source == str(plan)
    with pytest.raises(InputError) as info:
        evaluate_files(GOOD_INSTANCE, plan)
    assert "plan-stages-short.json" in info.value.message, info.value.message
    # The plain call without a source still works and still raises.
    with pytest.raises(InputError):
        evaluate(problem, load_plan(plan))


@pytest.mark.parametrize(
    ("name", "typo", "suggestion"),
    [
        ("instance-typo-worklaod.json", "worklaod", "workload"),
        ("instance-typo-batch-sise.json", "batch_sise", "batch_size"),
    ],
)
def test_unknown_field_suggests_the_spelling_without_the_value(
    name: str, typo: str, suggestion: str, problem: Problem
) -> None:
    message = _error("instance", name, problem).message
    line = next(ln for ln in message.splitlines() if f"{typo}: " in ln)
    assert f"did you mean {suggestion!r}?" in line, line
    assert "got" not in line and "{" not in line, line


def test_unknown_field_without_a_close_match_just_says_unknown() -> None:
    data = json.loads(GOOD_INSTANCE.read_text())
    data["zzz_qqq"] = {"a": 1}
    with pytest.raises(InputError) as info:
        validate(Instance, data)
    assert info.value.problems == [("zzz_qqq", "unknown field (check the spelling)")]


def test_named_model_and_hardware_still_load() -> None:
    data = json.loads(GOOD_INSTANCE.read_text())
    assert isinstance(data["model"], str) and isinstance(data["hardware"], str)
    problem = load_problem(GOOD_INSTANCE)
    assert problem.model.name and problem.hardware.name
    schema = json_schema("instance")
    assert {"model", "hardware"} <= set(schema["properties"])


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", str(BAD / "instance-batch-size-negative.json"), str(GOOD_PLAN)],
        ["solve", str(BAD / "instance-batch-size-negative.json")],
    ],
    ids=["evaluate", "solve"],
)
def test_cli_bad_instance_exits_2_naming_the_field(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "placer", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "workload.batch_size" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


# -- hardening (issue 10): JSON, booleans, limits, routing resolved once ---------------------------


def _instance_data() -> dict[str, object]:
    data = json.loads(GOOD_INSTANCE.read_text())
    data["model"] = str(ROOT / data["model"])
    data["reference_plan"] = str(ROOT / data["reference_plan"])
    return data


def _write_instance(folder: Path, data: dict[str, object], text: str | None = None) -> Path:
    path = folder / "instance.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


def test_duplicate_key_is_an_error_naming_it(tmp_path: Path) -> None:
    text = json.dumps(_instance_data()).replace('"batch_size": 128', '"batch_size": 128, "batch_size": 64')
    with pytest.raises(InputError) as info:
        load_problem(_write_instance(tmp_path, {}, text))
    assert ("workload.batch_size", "duplicate key: the object gives it more than once") in info.value.problems


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_by_path(tmp_path: Path, literal: str) -> None:
    text = json.dumps(_instance_data()).replace('"ttft_s": 10.0', f'"ttft_s": {literal}')
    with pytest.raises(InputError) as info:
        load_problem(_write_instance(tmp_path, {}, text))
    assert info.value.problems[0][0] == "slo.ttft_s"
    assert "finite" in info.value.problems[0][1]


def test_deep_nesting_is_refused_without_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(InputError, match="nested deeper than 64"):
        load_plan(path)


def test_booleans_are_not_numbers_and_flags_are_booleans() -> None:
    data = _instance_data()
    data["workload"] = {**data["workload"], "batch_size": True}  # type: ignore[dict-item]
    with pytest.raises(InputError) as info:
        validate(Instance, data)
    assert info.value.problems[0][0] == "workload.batch_size"
    assert "boolean" in info.value.problems[0][1]
    model = json.loads((ROOT / "models" / "moe10b.json").read_text())
    with pytest.raises(InputError, match="hidden_size: must be a number or text, not a boolean"):
        validate(ModelSpec, {**model, "hidden_size": True})
    with pytest.raises(InputError, match="tie_embeddings: must be true or false"):
        validate(ModelSpec, {**model, "tie_embeddings": "yes"})


@pytest.mark.parametrize(
    ("section", "key", "value", "limit"),
    [
        ("slo", "ttft_s", 1e30, "MAX_SECONDS"),
        ("slo", "tpot_ms", 1e308, "MAX_MILLISECONDS"),
        ("workload", "batch_size", 10**9, "MAX_BATCH_SIZE"),
        ("model", "num_layers", 100_000, "MAX_LAYERS"),
        ("model", "moe.num_experts", 65_536, "MAX_EXPERTS"),
        ("model", "moe.top_k", 1024, "MAX_TOP_K"),
    ],
)
def test_sizes_above_the_limits_are_refused_naming_the_limit(section: str, key: str, value: float, limit: str) -> None:
    data = _instance_data()
    if section == "model":
        data["model"] = json.loads((ROOT / "models" / "moe10b.json").read_text())
    target = data[section]
    *parents, leaf = key.split(".")
    for parent in parents:
        target = target[parent]  # type: ignore[index]
    target[leaf] = value  # type: ignore[index]
    with pytest.raises(InputError) as info:
        validate(Instance, data)
    field, reason = info.value.problems[0]
    assert field == f"{section}.{key}" and limit in reason, info.value.problems


def test_hardware_capacity_infinity_and_plan_replicas_refused() -> None:
    from placer.catalogue import hardware_catalogue
    from placer.schema import HardwareProfile, Plan

    profile = hardware_catalogue()["h100-sxm"].model_dump()
    with pytest.raises(InputError, match="hbm_capacity_gb"):
        validate(HardwareProfile, {**profile, "hbm_capacity_gb": float("inf")})
    plan = json.loads(GOOD_PLAN.read_text())
    plan["parallelism"]["replicas"] = 10**6
    plan["gpus"] = 32 * 10**6
    with pytest.raises(InputError, match="MAX_GPUS"):
        validate(Plan, plan)


def test_routing_path_is_relative_to_the_instance_and_resolved_once(tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    traces = {f"layer_{i}": np.argsort(rng.random((64, 16)), axis=1)[:, :2] for i in range(16)}
    folder = tmp_path / "case"
    folder.mkdir()
    np.savez(folder / "trace.npz", **traces)
    data = _instance_data()
    data["routing"] = {"kind": "file", "path": "trace.npz", "format": "npz_topk"}
    path = _write_instance(folder, data)
    monkeypatch.chdir(tmp_path)  # not the instance's folder
    problem = load_problem(path)
    assert problem.routing_stats is not None and not problem.routing_stats.uniform
    assert Path(problem.routing.path).is_absolute()  # type: ignore[union-attr]
    assert len(problem.routing_stats.layers) == 16
    # hardware changes keep the statistics; a routing change recomputes them
    from placer.catalogue import hardware_catalogue

    other = problem.replace(hardware=hardware_catalogue()["h100-sxm"])
    assert other.routing_stats is problem.routing_stats
    assert problem.replace(routing=None).routing_stats is None


@pytest.mark.parametrize(
    ("routing", "field", "words"),
    [
        ({"kind": "loads", "loads": [[0.0] * 16] * 16}, "routing.loads[0]", "carries no routing information"),
        ({"kind": "synthetic", "coactivation_clusters": 1000}, "routing.coactivation_clusters", "1000 clusters"),
        ({"kind": "synthetic", "tokens": 65_536, "seed": 1}, "routing.tokens", ""),
    ],
)
def test_routing_without_information_or_too_large_is_refused(routing: dict, field: str, words: str) -> None:
    data = _instance_data()
    data["routing"] = routing
    if routing.get("tokens") == 65_536:
        data["model"] = json.loads((ROOT / "models" / "moe10b.json").read_text())
        data["model"]["moe"]["num_experts"] = 1024  # type: ignore[index]
        data["model"]["moe"]["top_k"] = 2  # type: ignore[index]
        words = "MAX_SYNTHETIC_SCORES"
    from placer.problem import build_problem

    with pytest.raises(InputError) as info:
        build_problem(validate(Instance, data), ROOT / "instances", "instance.json")
    assert info.value.problems[0][0] == field and words in info.value.problems[0][1], info.value.problems


def test_reference_plan_of_garbage_bytes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ref.json").write_bytes(bytes(range(256)))
    data = _instance_data()
    data["reference_plan"] = "ref.json"
    with pytest.raises(InputError) as info:
        load_problem(_write_instance(tmp_path, data))
    assert "ref.json" in info.value.message


def test_kimi_k2_is_read_as_deepseek_v3_and_a_model_directory_loads(tmp_path: Path) -> None:
    config = json.loads((ROOT / "tests" / "data" / "hf" / "deepseek-v3" / "config.json").read_text())
    config.update(model_type="kimi_k2", n_routed_experts=384, num_attention_heads=64, vocab_size=163840)
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_model(tmp_path)  # the directory, not the file
    assert model.attention.kind == "mla" and model.moe is not None and model.moe.num_experts == 384
    assert "kimi_k2" in model.description


def test_hf_and_loading_do_not_import_each_other() -> None:
    hf_source = (ROOT / "placer" / "hf.py").read_text()
    assert "placer.loading" not in hf_source


def test_expert_pair_and_traffic_limits_refuse_before_allocating() -> None:
    from placer.problem import build_problem
    from placer.schema import Plan

    data = _instance_data()
    model = json.loads((ROOT / "models" / "moe10b.json").read_text())
    model["moe"]["num_experts"] = 4096
    data["model"] = model
    data["routing"] = {"kind": "synthetic", "tokens": 16}
    with pytest.raises(InputError, match="MAX_ROUTING_PAIRS"):
        build_problem(validate(Instance, data), ROOT / "instances")
    data["routing"] = None
    problem = build_problem(validate(Instance, data), ROOT / "instances")
    plan = {"gpus": 4096, "parallelism": {"dp_attn": 4096, "ep": 4096}, "stages": [{"layers": [0, 15]}]}
    with pytest.raises(InputError) as info:
        check_plan_fits_model(problem, validate(Plan, plan))
    assert info.value.problems[0][0] == "parallelism.ep" and "MAX_TRAFFIC_CELLS" in info.value.problems[0][1]
