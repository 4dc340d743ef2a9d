"""The built-in hardware catalogue: every profile present, valid, sourced, dense and per direction."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from placer.catalogue import hardware_catalogue
from placer.schema.hardware import HardwareProfile

EXPECTED_IDS = {
    "h100-sxm",
    "h200",
    "h800",
    "h20",
    "a100-80gb-sxm",
    "b200",
    "gb200-nvl72",
    "mi300x",
    "l40s",
    "seed-400tf",
}


def _files() -> dict[str, dict]:
    folder = resources.files("placer.catalogue").joinpath("hardware")
    return {
        f.name[: -len(".json")]: json.loads(f.read_text(encoding="utf-8"))
        for f in folder.iterdir()
        if f.name.endswith(".json")
    }


@pytest.fixture(scope="module")
def catalogue() -> dict[str, HardwareProfile]:
    return hardware_catalogue()


def test_all_ids_present(catalogue):
    assert EXPECTED_IDS <= set(catalogue)


def test_ids_equal_file_stems(catalogue):
    files = _files()
    assert set(catalogue) == set(files)
    for stem, raw in files.items():
        assert raw["name"] == stem


def test_every_file_validates_and_states_schema_version():
    for stem, raw in _files().items():
        assert raw.get("schema_version") == "placer.hardware/1", stem
        profile = HardwareProfile.model_validate(raw)
        assert profile.name == stem


def test_catalogue_is_cached(catalogue):
    assert hardware_catalogue() is catalogue


def _numeric_fields(raw: dict) -> set[str]:
    return {k for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_every_numeric_figure_has_a_source():
    fields = set(HardwareProfile.model_fields)
    for stem, raw in _files().items():
        sources = raw["sources"]
        needed = _numeric_fields(raw) | {"dense_tflops", "efficiency"}
        missing = needed - set(sources)
        assert not missing, f"{stem}: no source for {sorted(missing)}"
        assert set(sources) <= fields, f"{stem}: sources name unknown fields {sorted(set(sources) - fields)}"
        assert all(isinstance(s, str) and s.strip() for s in sources.values()), stem


def test_every_numeric_field_is_set_explicitly():
    # Catalogue figures should not silently fall back to schema defaults.
    required = {
        "hbm_capacity_gb",
        "hbm_bandwidth_tb_per_s",
        "runtime_reserve_gb",
        "scaleup_bandwidth_gb_per_s",
        "scaleup_latency_us",
        "scaleout_bandwidth_gb_per_s",
        "scaleout_latency_us",
        "gpus_per_node",
        "nvlink_domain_gpus",
    }
    for stem, raw in _files().items():
        assert required <= set(raw), f"{stem}: missing {sorted(required - set(raw))}"
        assert set(raw["efficiency"]) == {
            "gemm_mfu",
            "gemm_mfu_decode",
            "attention_mfu",
            "attention_mfu_decode",
            "overlap_efficiency",
            "alltoall_sm_fraction",
            "hbm_bandwidth_utilisation",
            "scaleup_bandwidth_utilisation",
            "scaleout_bandwidth_utilisation",
        }, stem


def test_flops_are_dense(catalogue):
    h100 = catalogue["h100-sxm"].dense_tflops
    assert h100["bf16"] == pytest.approx(989, abs=1)  # not the 1979 sparse headline
    assert h100["fp8"] == pytest.approx(1979, abs=1)
    assert catalogue["h200"].dense_tflops["bf16"] == pytest.approx(989, abs=1)
    assert catalogue["h800"].dense_tflops["bf16"] == pytest.approx(989, abs=1)
    assert catalogue["h20"].dense_tflops["bf16"] == pytest.approx(148, abs=1)
    assert catalogue["a100-80gb-sxm"].dense_tflops["bf16"] == pytest.approx(312, abs=1)
    assert catalogue["b200"].dense_tflops["bf16"] == pytest.approx(2250, abs=1)
    assert catalogue["gb200-nvl72"].dense_tflops["bf16"] == pytest.approx(2500, abs=1)
    assert catalogue["mi300x"].dense_tflops["bf16"] == pytest.approx(1307.4, abs=1)
    assert catalogue["l40s"].dense_tflops["bf16"] == pytest.approx(362, abs=1)


def test_precision_coverage(catalogue):
    for name, hw in catalogue.items():
        t = hw.dense_tflops
        assert t["fp16"] == t["bf16"], name
        if "fp8" in t:
            assert t["fp8"] == pytest.approx(2 * t["bf16"], rel=0.025), name  # L40S: 733 vs 2 x 362.05
        if "fp4" in t:
            assert t["fp4"] == pytest.approx(2 * t["fp8"], rel=0.01), name
    assert "fp8" not in catalogue["a100-80gb-sxm"].dense_tflops
    fp4 = {name for name, hw in catalogue.items() if "fp4" in hw.dense_tflops}
    assert fp4 == {"b200", "gb200-nvl72"}


def test_seed_gpu(catalogue):
    seed = catalogue["seed-400tf"]
    assert seed.dense_tflops["fp16"] == 400
    assert seed.dense_tflops["bf16"] == 400
    assert seed.hbm_capacity_gb == 64
    assert seed.hbm_bandwidth_tb_per_s == 1.8
    assert seed.efficiency.gemm_mfu == 0.6
    assert seed.efficiency.attention_mfu == 0.6
    assert seed.efficiency.hbm_bandwidth_utilisation == 0.8
    assert seed.scaleup_bandwidth_gb_per_s == 300  # "NVLink 600GB/s" read as bidirectional
    assert seed.scaleout_bandwidth_gb_per_s == 25  # "InfiniBand 200GB/s" per node of 8 GPUs
    assert seed.gpus_per_node == 8
    assert seed.runtime_reserve_gb == 2
    assert seed.price_per_gpu_hour_usd is None
    assert all("shared/seeds/" in seed.sources[k] for k in ("dense_tflops", "hbm_capacity_gb", "efficiency"))


def test_bandwidths_are_per_direction(catalogue):
    expected_scaleup = {
        "h100-sxm": 450,
        "h200": 450,
        "h800": 200,
        "h20": 450,
        "a100-80gb-sxm": 300,
        "b200": 900,
        "gb200-nvl72": 900,
        "mi300x": 448,
        "l40s": 32,
        "seed-400tf": 300,
    }
    for name, gb_s in expected_scaleup.items():
        assert catalogue[name].scaleup_bandwidth_gb_per_s == gb_s, name
    assert catalogue["h100-sxm"].scaleout_bandwidth_gb_per_s == 50
    assert catalogue["a100-80gb-sxm"].scaleout_bandwidth_gb_per_s == 25
    assert catalogue["b200"].scaleout_bandwidth_gb_per_s == 100


def test_gb200_is_one_rack_domain(catalogue):
    gb = catalogue["gb200-nvl72"]
    assert gb.gpus_per_node == 72
    assert gb.nvlink_domain_gpus == 72


def test_sanity_ranges(catalogue):
    for name, hw in catalogue.items():
        assert 0 < hw.runtime_reserve_gb < 0.1 * hw.hbm_capacity_gb, name
        assert hw.scaleout_bandwidth_gb_per_s < hw.scaleup_bandwidth_gb_per_s, name
        assert hw.scaleup_latency_us <= hw.scaleout_latency_us, name
        if hw.price_per_gpu_hour_usd is not None:
            assert 0.5 < hw.price_per_gpu_hour_usd < 20, name
