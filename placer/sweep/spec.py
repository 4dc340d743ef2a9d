"""The sweep file (``placer.sweep/1``, YAML or JSON; ``placer schema sweep`` prints its schema).

A sweep names one base instance (or a list of instances), fields set on every point, and the axes
to vary. The grid is the product of the axes in the order they are written (the first varies
slowest), with the instances outermost. An axis is named by a dotted path into the instance
(``slo.tpot_ms``, ``workload.demand_output_tokens_per_s``, ``engine``, ``model``), by a short name
(:data:`AXIS_ALIASES`: ``demand``, ``gpu_budget``, ...), or ``hardware``, which swaps the hardware
profile by ``placer compare``'s rule (the cluster keeps its GPU budget with the profile's node
shape, :func:`placer.compare.problem_on_hardware`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from placer.errors import InputError
from placer.schema import Instance
from placer.schema.base import StrictModel
from placer.validation import read_json, validate

SWEEP_SCHEMA_VERSION = "placer.sweep/1"

#: the axis that swaps hardware profiles by compare's rule, not by rewriting the ``hardware`` field
HARDWARE_AXIS = "hardware"
#: column naming the instance file when the sweep lists several
INSTANCE_AXIS = "instance"

#: short axis names and the instance field each one sets
AXIS_ALIASES: dict[str, str] = {
    "demand": "workload.demand_output_tokens_per_s",
    "rate_rps": "workload.rate_rps",
    "concurrency": "workload.concurrency",
    "gpu_budget": "slo.max_gpus",
}

#: a value an axis or ``set`` may take (a list or object only where the field takes one)
AxisValue = str | int | float | bool | None | list[Any] | dict[str, Any]


class SolverSpec(StrictModel):
    """Settings of every solve of the sweep; one worker and a fixed seed keep CP-SAT deterministic."""

    backend: Literal["auto", "cpsat", "milp", "exhaustive"] = "auto"
    time_limit_s: float | None = Field(
        60.0, gt=0, description="wall-clock seconds per solve; null: none (the answers then never depend on speed)"
    )
    workers: int = Field(1, ge=1, le=64, description="CP-SAT workers per solve (= CPUs a Ray task declares)")
    seed: int = Field(0, ge=0)
    max_gpus: int | None = Field(None, ge=1, description="cap on the GPU count searched")


class SweepSpec(StrictModel):
    """A capacity-planning sweep: which instances, what is set on all of them, what varies."""

    schema_version: Literal["placer.sweep/1"] = SWEEP_SCHEMA_VERSION
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="names the output files")
    description: str = ""
    base: str | None = Field(None, description="instance file (relative to the sweep file) every point starts from")
    instances: list[str] | None = Field(
        None, min_length=1, description="instead of base: several instance files, the outermost axis 'instance'"
    )
    set: dict[str, AxisValue] = Field(
        default_factory=dict, description="dotted instance fields set on every point before the axes"
    )
    axes: dict[str, list[AxisValue]] = Field(
        default_factory=dict,
        description="axis name (dotted instance field, short name, or 'hardware') -> values, first axis slowest",
    )
    solver: SolverSpec = SolverSpec()

    @model_validator(mode="after")
    def _one_source(self) -> SweepSpec:
        if (self.base is None) == (self.instances is None):
            raise ValueError("give exactly one of base and instances")
        return self

    @field_validator("axes")
    @classmethod
    def _axes_well_formed(cls, axes: dict[str, list[AxisValue]]) -> dict[str, list[AxisValue]]:
        for name, values in axes.items():
            if not values:
                raise ValueError(f"axis {name!r} has no values")
            texts = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(texts)) != len(texts):
                raise ValueError(f"axis {name!r} repeats a value")
            if name == INSTANCE_AXIS:
                raise ValueError("'instance' is not an axis; list the files under instances")
            field_path(name)  # unknown names fail here
        targets = [field_path(name) for name in axes]
        if len(set(targets)) != len(targets):
            raise ValueError("two axes set the same field")
        return axes

    @field_validator("set")
    @classmethod
    def _set_fields_known(cls, fields: dict[str, AxisValue]) -> dict[str, AxisValue]:
        for name in fields:
            if field_path(name) == HARDWARE_AXIS:
                raise ValueError("set 'hardware' in the base instance, or make it an axis")
            field_path(name)
        return fields


def field_path(name: str) -> str:
    """The dotted instance field an axis sets (``hardware`` stays ``hardware``); unknown names raise."""
    path = AXIS_ALIASES.get(name, name)
    head = path.split(".")[0]
    if path != HARDWARE_AXIS and head not in Instance.model_fields:
        known = sorted([*AXIS_ALIASES, HARDWARE_AXIS, *Instance.model_fields])
        raise ValueError(f"unknown axis or field {name!r}; known: {', '.join(known)} (or a dotted path under them)")
    if head in ("schema_version", "name", "description"):
        raise ValueError(f"{name!r} does not change a solve; it cannot be an axis")
    return path


def load_spec(path: str | Path) -> SweepSpec:
    """Read a sweep file (``.yaml``/``.yml`` as YAML, anything else as JSON) and validate it."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError.single("", f"file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError.single("", f"cannot read {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise InputError.single("", f"not valid YAML: {exc}", str(path)) from None
    else:
        data = read_json(path)
    if not isinstance(data, dict):
        raise InputError.single("", "a sweep file holds one object (mapping)", str(path))
    return validate(SweepSpec, data, str(path))
