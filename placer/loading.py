"""Reading input files: JSON parsing, schema validation and reference resolution.

Everything that can go wrong with a user's file becomes an :class:`InputError` that names the
field (``workload.batch_size: must be > 0, got -3``); nothing here lets a traceback through.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from placer.errors import InputError
from placer.schema import HardwareProfile, Instance, ModelSpec, Plan

M = TypeVar("M", bound=BaseModel)

#: Repository folder of shipped model files, searched when a model is named without a path.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


#: Branch labels pydantic puts in an error location for ``str | Model`` fields.
_BRANCH_LABELS = {"str", "ModelSpec", "HardwareProfile", "synthetic", "loads", "file"}


def _field_path(loc: tuple[Any, ...]) -> str:
    """``('workload', 'batch_size')`` -> ``workload.batch_size``; list indices as ``[i]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union", "union")) or part in _BRANCH_LABELS:
            continue  # union / validator branch labels pydantic inserts: not fields
        else:
            text += f".{part}" if text else str(part)
    return text


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.DOTALL)

_REASONS = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (check the spelling)",
}


def _reason(error: dict[str, Any]) -> tuple[str, str]:
    """Field path and readable reason of one pydantic error."""
    field = _field_path(tuple(error["loc"]))
    kind = error["type"]
    message = error["msg"]
    if kind == "value_error":
        # Our validators write "field: reason", the field relative to the model that raised it.
        message = message.removeprefix("Value error, ")
        match = _FIELD_PREFIX.match(message)
        if match:
            field = f"{field}.{match.group(1)}" if field else match.group(1)
            message = match.group(2)
        return field, message
    reason = _REASONS.get(kind, message[:1].lower() + message[1:])
    if kind not in ("missing",) and "input" in error:
        reason += f", got {json.dumps(error['input'], default=str)[:80]}"
    return field, reason


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn a pydantic error into ``(field, reason)`` pairs, one per distinct field."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for error in exc.errors():
        field, reason = _reason(error)
        if field in seen:
            continue  # a union reports every branch; the first is the useful one
        seen.add(field)
        problems.append((field, reason))
    return problems


def validate(model_cls: type[M], data: Any, source: str | None = None, prefix: str = "") -> M:
    """Validate ``data`` against ``model_cls`` or raise :class:`InputError`."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        problems = [(f"{prefix}{field}" if field else prefix.rstrip("."), reason) for field, reason in validation_problems(exc)]
        raise InputError(problems, source) from None


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, or raise :class:`InputError` saying why not."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.single("", f"file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise InputError.single("", f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError.single("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", str(path)) from None


def load_model(ref: str | Path, base_dir: Path | None = None, field: str = "model") -> ModelSpec:
    """Load a placer model file or a Hugging Face ``config.json`` (detected by its keys)."""
    path = _resolve(ref, base_dir, MODELS_DIR, field, suffix=".json")
    data = read_json(path)
    if isinstance(data, dict) and "schema_version" not in data and ("model_type" in data or "architectures" in data):
        from placer.hf import model_from_hf_config

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
    raise InputError.single(field, f"file not found: {ref}")


def load_instance(path: str | Path) -> Instance:
    """Read and validate an instance file; referenced model and hardware are resolved later."""
    path = Path(path)
    return validate(Instance, read_json(path), str(path))


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file."""
    path = Path(path)
    return validate(Plan, read_json(path), str(path))
