"""Reading input files: JSON parsing, schema validation and reference resolution.

Everything that can go wrong with a user's file becomes an :class:`InputError` that names the
field (``workload.batch_size: must be > 0, got -3``); nothing here lets a traceback through.
"""

from __future__ import annotations

from pathlib import Path

from placer.errors import InputError
from placer.hf import model_from_hf_config
from placer.schema import AnyPlan, DisaggregatedPlan, HardwareProfile, Instance, ModelSpec, Plan
from placer.validation import _field_path, read_json, validate, validation_problems

__all__ = [
    "MODELS_DIR",
    "_field_path",
    "load_hardware",
    "load_instance",
    "load_model",
    "load_plan",
    "read_json",
    "validate",
    "validation_problems",
]

#: Repository folder of shipped model files, searched when a model is named without a path.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def load_model(ref: str | Path, base_dir: Path | None = None, field: str = "model") -> ModelSpec:
    """Load a placer model file or a Hugging Face ``config.json`` (detected by its keys).

    ``ref`` may also be a model directory holding a ``config.json`` (a Hugging Face checkout)."""
    path = _resolve(ref, base_dir, MODELS_DIR, field, suffix=".json")
    data = read_json(path)
    if isinstance(data, dict) and "schema_version" not in data and ("model_type" in data or "architectures" in data):
        return model_from_hf_config(data, source=str(path))
    return validate(ModelSpec, data, str(path))


def load_hardware(ref: str | Path, base_dir: Path | None = None, field: str = "hardware") -> HardwareProfile:
    """A hardware profile by catalogue id (``h100-sxm``) or by path."""
    from placer.catalogue import hardware_catalogue

    catalogue = hardware_catalogue()
    if str(ref) in catalogue:
        return catalogue[str(ref)]
    if not str(ref).endswith(".json"):
        known = ", ".join(sorted(catalogue))
        raise InputError.single(field, f"unknown hardware {str(ref)!r}; known: {known}")
    path = _resolve(ref, base_dir, None, field)
    return validate(HardwareProfile, read_json(path), str(path))


def _resolve(ref: str | Path, base_dir: Path | None, fallback_dir: Path | None, field: str, suffix: str = "") -> Path:
    candidates = [Path(ref)]
    if base_dir is not None:
        candidates.append(base_dir / ref)
        candidates.append(base_dir.parent / ref)
    if fallback_dir is not None:
        candidates += [fallback_dir / ref, fallback_dir / f"{ref}{suffix}"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if candidate.is_dir() and (candidate / "config.json").is_file():
            return candidate / "config.json"  # a model directory (Hugging Face layout)
    raise InputError.single(field, f"file not found: {ref}")


def load_instance(path: str | Path) -> Instance:
    """Read and validate an instance file; referenced model and hardware are resolved later."""
    path = Path(path)
    return validate(Instance, read_json(path), str(path))


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file."""
    path = Path(path)
    return validate(Plan, read_json(path), str(path))


#: The schema version of disaggregated plans.
PLAN_2 = "placer.plan/2"


def load_any_plan(path: str | Path) -> AnyPlan:
    """Read and validate a plan file of either kind: ``"mode": "disaggregated"`` (schema
    ``placer.plan/2``) is a :class:`DisaggregatedPlan`, anything else an aggregated :class:`Plan`
    (every ``placer.plan/1`` file keeps loading as it did)."""
    path = Path(path)
    data = read_json(path)
    if isinstance(data, dict) and (data.get("mode") == "disaggregated" or data.get("schema_version") == PLAN_2):
        return validate(DisaggregatedPlan, data, str(path))
    return validate(Plan, data, str(path))
