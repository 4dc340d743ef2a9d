"""The broad calibration set and its fidelity check (issue 14).

The data file is checked for what the issue asks of it (size, spread, a source on every value);
the factor model and its fit are checked on hand-made points whose answer is known; one small
slice of the real set runs end to end (base figures from the serving model, fit, leave one
family out).
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from placer.catalogue.engine_profiles import engine_factors
from placer.costmodel.layers import kernel_launches
from placer.data.measurements import DATA_FILE, load_measurements, parse_measurement
from placer.errors import InputError
from placer.fidelity_broad import (
    KNEE_GRID,
    MIN_PREFILL_POINTS,
    OVERHEAD_GRID_US,
    SCALE_GRID,
    TRTLLM_BENCH_MAX_BATCH,
    Base,
    Factors,
    FittedFactors,
    base_figures,
    build,
    corrected,
    engine_profiles_document,
    fit_group,
    model_spec,
    prefill_points,
    re_expressed,
    render_markdown,
    request_points,
    run,
)
from placer.loading import load_hardware
from placer.schema import ModelSpec
from placer.serving import StepTimer


@pytest.fixture(scope="module")
def records() -> list:
    return load_measurements()


def test_the_set_spans_what_issue_14_asks(records: list) -> None:
    assert len(records) >= 60
    assert len({m.family for m in records}) >= 5
    assert {m.engine for m in records} == {"vllm", "sglang", "trtllm"}
    assert len({m.hardware for m in records}) >= 4
    for m in records:
        assert m.source and m.engine_version and m.stated, m.id
    # every value is traceable to one document: a repository at a commit or one fixed build page (a
    # buildkite build number), with a section or table named
    assert all(("@" in m.source or "/builds/" in m.source) and (", " in m.source) for m in records)


def test_every_record_names_its_assumptions_where_settings_are_unstated(records: list) -> None:
    assert all(m.assumptions for m in records)
    by_engine = Counter(m.engine for m in records)
    assert by_engine["trtllm"] >= 20 and by_engine["vllm"] >= 20 and by_engine["sglang"] >= 5


def test_bad_records_name_the_field() -> None:
    raw = json.loads(Path(DATA_FILE).read_text())["measurements"][0]
    bad = dict(raw, metric="tokens")
    with pytest.raises(InputError, match=r"m\[0\]\.metric"):
        parse_measurement(bad, "m[0]", "x.json")
    bad = dict(raw, precision={"experts": "fp3"})
    with pytest.raises(InputError, match=r"m\[0\]\.precision\.experts"):
        parse_measurement(bad, "m[0]", "x.json")
    bad = dict(raw, mode="concurrency")  # concurrency mode needs its concurrency
    with pytest.raises(InputError, match=r"m\[0\]\.concurrency"):
        parse_measurement(bad, "m[0]", "x.json")


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    data = json.loads(Path(DATA_FILE).read_text())
    data["measurements"] = [data["measurements"][0], copy.deepcopy(data["measurements"][0])]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="duplicate id"):
        load_measurements(path)


def _base(records: list, metric_class: str, value: float, step_s: float, prefill_s: float, batch: float) -> Base:
    m = next(r for r in records if r.metric_class == metric_class)
    return Base(m, 40, value, step_s, prefill_s, 2, batch, 10.0, True, None)


def test_factor_model_by_hand(records: list) -> None:
    thr = _base(records, "throughput", 1000.0, 0.05, 0.01, 100.0)
    tpot = _base(records, "tpot", 20.0, 0.02, 0.0, 4.0)
    ttft = _base(records, "ttft", 100.0, 0.02, 0.0, 4.0)
    assert corrected(thr, Factors()) == pytest.approx(1000.0)
    f = Factors(prefill_scale=2.0, decode_scale=1.5, decode_knee_batch=400.0, launch_overhead_us=100.0)
    # step: 1.5 x (1 + 100/400) x 0.04 + 2 x 0.01 + 40 kernels x 100 us = 0.075 + 0.02 + 0.004 = 0.099 s
    assert corrected(thr, f) == pytest.approx(1000.0 * 0.05 / 0.099)
    # TPOT: the decode part scales by 1.5 x (1 + 4/400), then + 4 ms of kernel overhead
    assert corrected(tpot, f) == pytest.approx(20.0 * 1.5 * 1.01 + 4.0)
    # TTFT (low-concurrency prompts): no prefill scale, two prefill steps of overhead, the floor
    g = Factors(prefill_scale=2.0, launch_overhead_us=100.0, ttft_floor_ms=50.0)
    assert corrected(ttft, g) == pytest.approx(100.0 + 2 * 4.0 + 50.0)
    # a request overhead of r ms at 10 requests/s costs 1 + 10 r / 1000 in throughput
    assert corrected(thr, Factors(request_overhead_ms=20.0)) == pytest.approx(1000.0 / 1.2)
    # a per-step fixed time adds to every step whatever the depth: 3 ms on a 50 ms step, on a TPOT,
    # and once per prefill step on a TTFT
    c = Factors(step_overhead_ms=3.0)
    assert corrected(thr, c) == pytest.approx(1000.0 * 0.05 / 0.053)
    assert corrected(tpot, c) == pytest.approx(23.0)
    assert corrected(ttft, c) == pytest.approx(106.0)


def test_fit_recovers_known_factors(records: list) -> None:
    truth = Factors(
        prefill_scale=float(SCALE_GRID[10]),
        decode_scale=float(SCALE_GRID[5]),  # 1.0: the small-batch points fix the fixed times at the roofline
        decode_knee_batch=KNEE_GRID[3],
        launch_overhead_us=float(OVERHEAD_GRID_US[4]),
    )
    # the small-batch shapes (decode batch <= 16) are pure decode: they fix the fixed times first
    shapes = [(0.05, 0.01, 100.0), (0.08, 0.0, 2000.0), (0.03, 0.0, 8.0), (0.2, 0.15, 600.0), (0.01, 0.0, 1.0)]
    bases = []
    for i, (step, pre, batch) in enumerate(shapes * 2):
        cls = "tpot" if i % 2 else "throughput"
        base = _base(records, cls, 100.0 + i, step, pre, batch)
        # the measured value is what the true factors predict
        m = base.measurement.__class__(**{**base.measurement.__dict__, "value": corrected(base, truth)})
        bases.append(Base(m, *[getattr(base, f) for f in list(Base.__dataclass_fields__)[1:]]))
    fitted = fit_group(bases, "test")
    for name in ("prefill_scale", "decode_scale", "decode_knee_batch", "launch_overhead_us"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name)), name
    for b in bases:
        assert corrected(b, fitted) == pytest.approx(b.measurement.value, rel=1e-9)


def test_small_groups_fall_back_to_the_engine_then_everything(records: list) -> None:
    m = records[0]
    own = Factors(decode_scale=2.0, points=2, scope="gpu+engine")
    engine = Factors(decode_scale=3.0, ttft_floor_ms=7.0, points=10, scope="engine")
    fitted = FittedFactors({(m.hardware, m.engine): own}, {m.engine: engine}, Factors(decode_scale=4.0, points=99))
    assert fitted.for_point(m).decode_scale == 3.0  # the group has too few points
    big = Factors(decode_scale=2.0, points=50, scope="gpu+engine")
    fitted = FittedFactors({(m.hardware, m.engine): big}, {m.engine: engine}, Factors(points=99))
    chosen = fitted.for_point(m)
    assert chosen.decode_scale == 2.0 and chosen.ttft_floor_ms == 7.0
    alone = FittedFactors({}, {}, Factors(decode_scale=4.0, points=99))
    assert alone.for_point(m).decode_scale == 4.0


def test_sliding_layers_and_mxfp4_experts_reach_the_serving_model(records: list) -> None:
    """gpt-oss-120b on one H200: sliding layers (128 tokens of KV) and MXFP4 experts (a quarter of
    the bf16 bytes) each leave the serving model room for more tokens in flight."""
    point = next(m for m in records if m.id == "trtllm-gpt-oss-120b-h200-1024-8192")
    hardware = load_hardware(point.hardware)
    real = model_spec(point.model, point.precision)

    def capacity(model: ModelSpec) -> int:
        return StepTimer(*build(point, model, hardware)).kv_capacity_tokens

    full = real.model_copy(update={"attention": real.attention.model_copy(update={"layer_types": None})})
    bf16 = real.model_copy(update={"precision": real.precision.model_copy(update={"experts": None})})
    assert capacity(real) > 1.9 * capacity(full)  # half the layers stop at 128 tokens
    assert capacity(bf16) == 0 or capacity(real) > capacity(bf16)
    (base,) = base_figures([point])
    assert base.fits and base.value > 0 and math.isfinite(base.value)


def test_shipped_engine_profiles_have_a_source_for_every_figure() -> None:
    for engine in ("vllm", "sglang", "trtllm"):
        pooled = engine_factors(engine, "no-such-gpu")
        assert pooled.gpu is None and "measurements.json" in pooled.source
        assert pooled.cost_parameters() == {
            "launch_overhead_us": pooled.launch_overhead_us,
            "step_overhead_us": pooled.step_overhead_ms * 1e3,
            "allreduce_algorithm": "custom",
        }
    own = engine_factors("trtllm", "h200")
    assert own.gpu == "h200" and "trtllm-deepseek-r1-h200-1024-1024" in own.source
    with pytest.raises(InputError, match="engine"):
        engine_factors("llama.cpp", "h100-sxm")


def test_leave_one_family_out_on_a_slice(records: list, tmp_path: Path) -> None:
    """Two families on one GPU and engine: each family's held-out prediction uses factors fitted on
    the other family only, so it differs from the in-sample one."""
    chosen = [m for m in records if m.hardware == "b200" and m.family in ("llama3", "qwen3")]
    report = run(chosen)
    assert len(report.rows) == len(chosen)
    assert any(abs(r.held_out - r.in_sample) > 1e-6 * r.measured for r in report.rows)
    text = render_markdown(report)
    assert "held-out" in text and "## Sources" in text and "NVIDIA/TensorRT-LLM@" in text
    # the fitted factors round-trip through the engine-profile loader, sources and all
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(engine_profiles_document(report)))
    fitted = report.factors.groups[("b200", "trtllm")]
    loaded = engine_factors("trtllm", "b200", path)
    assert loaded.decode_scale == pytest.approx(fitted.decode_scale, abs=1e-4)
    assert (
        loaded.launch_overhead_us == fitted.launch_overhead_us and loaded.decode_knee_batch == fitted.decode_knee_batch
    )


def test_engine_profile_is_opt_in_and_moves_figures_only_when_asked(tmp_path: Path) -> None:
    """``cost_parameters.engine_profile: fitted`` takes the fixed per-kernel and per-step times of the
    fitted profile for the instance's engine and GPU; the default leaves the evaluation unchanged."""
    from placer.evaluator import evaluate
    from placer.problem import build_problem
    from placer.schema import Instance

    point = next(m for m in load_measurements() if m.id == "vllm-qwen3-8b-h100-tp1-sharegpt-c1-tpot")
    model = model_spec(point.model, point.precision)
    problem, plan = build(point, model, load_hardware(point.hardware))
    raw = {
        "name": "opt-in",
        "model": model,
        "hardware": "h100-sxm",
        "cluster": {"gpus_per_node": 1, "num_nodes": 1},
        "workload": problem.workload.model_dump(mode="json", exclude_none=True),
    }
    plain = evaluate(build_problem(Instance.model_validate(raw)), plan)
    vllm = dict(raw, engine="vllm")
    same = evaluate(build_problem(Instance.model_validate(vllm)), plan)
    assert same.tpot_s == plain.tpot_s and same.ttft_s == plain.ttft_s  # engine alone moves nothing
    fitted_problem = build_problem(Instance.model_validate(dict(vllm, cost_parameters={"engine_profile": "fitted"})))
    profile = engine_factors("vllm", "h100-sxm")
    assert fitted_problem.params.launch_overhead_us == profile.launch_overhead_us
    assert fitted_problem.params.step_overhead_us == pytest.approx(profile.step_overhead_ms * 1e3)
    fitted = evaluate(fitted_problem, plan)
    launches = sum(kernel_launches(model, layer, 1) for layer in range(model.num_layers))
    fixed_s = launches * profile.launch_overhead_us * 1e-6 + profile.step_overhead_ms * 1e-3
    assert fixed_s > 0 and fitted.tpot_s > plain.tpot_s  # the fixed times reach the decode step
    # opting in without naming the engine is an input error naming the field
    with pytest.raises(InputError, match="engine_profile"):
        build_problem(Instance.model_validate(dict(raw, cost_parameters={"engine_profile": "fitted"})))
    with pytest.raises(Exception, match="engine_profile"):
        Instance.model_validate(dict(raw, cost_parameters={"engine_profile": "yes"}))


def test_step_overhead_adds_once_per_step(records: list) -> None:
    """``cost_parameters.step_overhead_us`` adds its time once per decode step (with the LM head)."""
    from placer.evaluator import evaluate

    point = next(m for m in records if m.id == "vllm-qwen3-8b-h100-tp1-sharegpt-c1-tpot")
    model = model_spec(point.model, point.precision)
    problem, plan = build(point, model, load_hardware(point.hardware))
    base = evaluate(problem, plan)
    slower = evaluate(problem.replace(params=problem.params.model_copy(update={"step_overhead_us": 1000.0})), plan)
    assert slower.tpot_s - base.tpot_s == pytest.approx(1e-3, rel=0.02)


def test_fixed_times_separate_per_kernel_from_per_step_with_two_depths(records: list) -> None:
    """Small-batch points of a 320- and an 800-kernel model (32 and 80 layers) identify both fixed
    times: 6 us per kernel and 1 ms per step, at the roofline kernel time; one depth pins down only
    their sum per step (docs/cost-model.md 10b.3)."""
    from placer.fidelity_broad import fixed_times

    truth = Factors(launch_overhead_us=6.0, step_overhead_ms=1.0)
    bases = []
    for launches in (320, 800):
        for i, (step, batch) in enumerate(((0.004, 1.0), (0.012, 8.0))):
            base = _base(records, "tpot", 5.0 + i, step, 0.0, batch)
            base = Base(base.measurement, launches, *[getattr(base, f) for f in list(Base.__dataclass_fields__)[2:]])
            m = base.measurement.__class__(**{**base.measurement.__dict__, "value": corrected(base, truth)})
            bases.append(Base(m, *[getattr(base, f) for f in list(Base.__dataclass_fields__)[1:]]))
    assert fixed_times(bases, None) == (6.0, 1.0)
    # one depth pins down the fixed time per step, K o + c (2.92 ms), not its split
    o, c = fixed_times([b for b in bases if b.launches == 320], None)
    assert 320 * o * 1e-3 + c == pytest.approx(320 * 6.0 * 1e-3 + 1.0)
    # without small-batch points the prior's figures are kept
    assert fixed_times([replace_batch(b, 500.0) for b in bases], Factors(launch_overhead_us=7.0)) == (7.0, 0.0)


def replace_batch(base: Base, batch: float) -> Base:
    from dataclasses import replace

    return replace(base, decode_batch=batch)


def test_mxfp4_experts_run_w4a8_on_blackwell_and_w4a16_at_the_measured_utilisation_elsewhere() -> None:
    """(O1a) MXFP4 GEMMs: FP8 peak on a GPU with FP4 tensor cores (MXFP4 x MXFP8), the 16-bit peak
    at 49% utilisation without them; NVFP4 keeps the FP4 peak; other formats are untouched."""
    from placer.costmodel.layers import (
        MXFP4_WEIGHT_ONLY_UTILISATION,
        Op,
        compute_precision,
        op_time_s,
        weight_only_mfu_scale,
    )

    b200, h100, a100 = (load_hardware(n) for n in ("b200", "h100-sxm", "a100-80gb-sxm"))
    assert compute_precision("mxfp4", b200) == "fp8" and compute_precision("nvfp4", b200) == "fp4"
    assert compute_precision("mxfp4", h100) == "bf16" and compute_precision("fp8_block", h100) == "fp8"
    assert weight_only_mfu_scale("mxfp4", b200, "prefill") == 1.0
    assert weight_only_mfu_scale("bf16", h100, "prefill") == 1.0
    for gpu in (h100, a100):
        scale = weight_only_mfu_scale("mxfp4", gpu, "prefill")
        assert gpu.efficiency.gemm_mfu * scale == pytest.approx(MXFP4_WEIGHT_ONLY_UTILISATION)
        # a compute-bound GEMM (no bytes) takes FLOPs / (BF16 peak x 0.49)
        flops = 1e15
        t = op_time_s(Op("x", flops, 0.0, "gemm", "prefill", mfu_scale=scale), gpu, "bf16")
        assert t == pytest.approx(flops / (gpu.dense_tflops["bf16"] * 1e12 * MXFP4_WEIGHT_ONLY_UTILISATION))


def test_prefill_scale_needs_prefill_heavy_points_else_the_prior(records: list) -> None:
    """A group with fewer than MIN_PREFILL_POINTS prefill-heavy throughput points keeps the prior's
    prefill scale, however far its points pull; with enough of them the fit sets its own."""
    prior = Factors(prefill_scale=1.0, points=50, scope="engine")
    heavy = _base(records, "throughput", 100.0, 0.1, 0.08, 50.0)  # 80% prefill
    light = _base(records, "throughput", 100.0, 0.1, 0.0, 50.0)

    def at(base: Base, value: float) -> Base:
        m = base.measurement.__class__(**{**base.measurement.__dict__, "value": value})
        return Base(m, *[getattr(base, f) for f in list(Base.__dataclass_fields__)[1:]])

    # measured at a quarter of the base: a prefill scale near 4 would explain the heavy points
    few = [at(heavy, 25.0), at(heavy, 25.0)] + [at(light, 100.0)] * 4
    assert prefill_points(few) == 2 < MIN_PREFILL_POINTS
    assert fit_group(few, "gpu+engine", prior).prefill_scale == 1.0
    many = [at(heavy, 25.0)] * MIN_PREFILL_POINTS + [at(light, 100.0)] * 4
    assert fit_group(many, "gpu+engine", prior).prefill_scale > 3.0


def test_fixed_length_offline_runs_are_phase_locked_closed_loops(records: list) -> None:
    """trtllm-bench's synthetic sets (one prompt and one output length, a stated number of requests
    queued at once) and bursts of one prompt length run as a closed loop of that many requests (the
    serving model's phase-locked regime), with trtllm-bench's batch cap per attention-DP rank;
    ShareGPT bursts keep the offline mode."""
    bench = next(r for r in records if "trtllm-bench" in r.engine_version and "dep" in r.parallelism)
    again = re_expressed(bench)
    assert (again.mode, again.concurrency) == ("concurrency", bench.stated["num_requests"])
    assert again.max_batch_size == TRTLLM_BENCH_MAX_BATCH * bench.parallelism["dep"]
    sharegpt = next(r for r in records if r.mode == "offline" and "ShareGPT" in r.stated.get("scenario", ""))
    assert re_expressed(sharegpt) == sharegpt  # lengths spread: the offline steady state
    burst = next(r for r in records if r.mode == "offline" and "random_input_len" in r.stated)
    again = re_expressed(burst)
    assert (again.mode, again.concurrency) == ("concurrency", burst.stated["num_prompts"])
    assert again.output_tokens == round(burst.output_tokens) and again.prompt_tokens == burst.prompt_tokens
    problem, _ = build(bench, model_spec(bench.model, bench.precision), load_hardware(bench.hardware))
    assert problem.workload.kind == "concurrency" and problem.workload.fixed_lengths


def test_request_overhead_needs_high_rate_points_else_the_prior(records: list) -> None:
    """Fewer than MIN_PREFILL_POINTS throughput points at REQUEST_RATE requests/s or more keep the
    prior's per-request overhead, however far one such point pulls."""
    prior = Factors(request_overhead_ms=2.0, points=50, scope="engine")
    m = next(r for r in records if r.metric_class == "throughput")
    busy = Base(m, 40, 100.0, 0.1, 0.0, 2, 50.0, 60.0, True, None)  # 60 requests/s
    calm = Base(m, 40, 100.0, 0.1, 0.0, 2, 50.0, 1.0, True, None)

    def at(base: Base, value: float) -> Base:
        moved = base.measurement.__class__(**{**base.measurement.__dict__, "value": value})
        return Base(moved, *[getattr(base, f) for f in list(Base.__dataclass_fields__)[1:]])

    few = [at(busy, 20.0)] + [at(calm, 100.0)] * 5
    assert request_points(few) == 1 < MIN_PREFILL_POINTS
    assert fit_group(few, "gpu+engine", prior).request_overhead_ms == 2.0
    many = [at(busy, 20.0)] * MIN_PREFILL_POINTS + [at(calm, 100.0)] * 5
    assert fit_group(many, "gpu+engine", prior).request_overhead_ms > 2.0


def test_kernel_launches_count_the_layer_kinds() -> None:
    """(O12) Kernels per layer: a dense GQA layer 9, Qwen3's q/k norms one more, an MoE layer four
    more than a dense one, shared experts three more, MLA five more than GQA, TP two all-reduces."""
    llama, qwen, deepseek, oss = (
        model_spec(name, {}) for name in ("llama-3-8b", "qwen3-8b", "deepseek-r1", "gpt-oss-120b")
    )
    assert kernel_launches(llama, 0, 1) == 9 and kernel_launches(llama, 0, 4) == 11
    assert kernel_launches(qwen, 0, 1) == 10
    assert kernel_launches(oss, 0, 1) == 13
    assert kernel_launches(deepseek, 0, 8) == 10 + 4 + 2  # a leading dense layer
    assert kernel_launches(deepseek, 10, 8) == 10 + 8 + 3 + 2


def test_custom_allreduce_is_one_shot_small_two_shot_large_and_ring_across_domains() -> None:
    """(C1a) The engines' all-reduce inside an NVLink domain: one-shot for small messages (2 alpha
    instead of the ring's 2 (p-1) alpha), two-shot for large ones (the ring's bandwidth term, 3
    alpha), never slower than the ring; across domains the ring."""
    from placer.costmodel.comm import allreduce_time_s
    from placer.schema import ClusterSpec
    from placer.topology import resolve_fabric

    fabric = resolve_fabric(load_hardware("h100-sxm"), ClusterSpec(gpus_per_node=8, num_nodes=2))
    bw, alpha = fabric.scaleup_bytes_per_s, fabric.scaleup_latency_s
    small, large = 16 * 1024.0, 64 * 2**20
    ring_small = allreduce_time_s(small, 8, fabric, False, "ring")
    assert ring_small == pytest.approx(2 * 7 / 8 * small / bw + 14 * alpha)
    assert allreduce_time_s(small, 8, fabric, False, "custom") == pytest.approx(7 * small / bw + 2 * alpha)
    assert allreduce_time_s(large, 8, fabric, False, "custom") == pytest.approx(2 * 7 / 8 * large / bw + 3 * alpha)
    for size in (small, large):
        assert allreduce_time_s(size, 8, fabric, False, "custom") <= allreduce_time_s(size, 8, fabric, False, "ring")
        assert allreduce_time_s(size, 8, fabric, True, "custom") == allreduce_time_s(size, 8, fabric, True, "ring")
