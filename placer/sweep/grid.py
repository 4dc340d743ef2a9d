"""Expanding a sweep file into points, each resolved to a :class:`~placer.problem.Problem` and keyed.

A point's key is a hash of what decides its answer: the resolved instance (model, hardware,
cluster, workload, SLOs, objective, cost parameters, routing, engine: not its name or
description), the solver settings, and placer's version. Two points that resolve to the same
instance share a key and are solved once; a rerun, or another sweep writing to the same cache,
finds the answer under the key. Every point is resolved here, in the calling process, so a
mistake in the sweep file is an input error before any solve starts.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import placer
from placer.catalogue import hardware_catalogue
from placer.compare import OWN_HARDWARE, SolveSettings, problem_on_hardware
from placer.errors import InputError
from placer.problem import Problem, build_problem
from placer.schema import Instance
from placer.schema.instance import INSTANCE_SCHEMA_VERSION
from placer.schema.routing import FileRouting
from placer.sweep.spec import HARDWARE_AXIS, INSTANCE_AXIS, SweepSpec, field_path
from placer.validation import read_json, validate

#: hex digits of the SHA-256 kept in a point key (96 bits: no collision in any sweep's lifetime)
KEY_HEX_DIGITS = 24


@dataclass(frozen=True)
class Point:
    """One grid point: its place in the grid, the axis values as the sweep file wrote them, the
    resolved problem and its key."""

    index: int
    inputs: dict[str, Any]
    problem: Problem
    key: str


def solve_settings(spec: SweepSpec) -> SolveSettings:
    s = spec.solver
    return SolveSettings(
        backend=s.backend, time_limit_s=s.time_limit_s, workers=s.workers, seed=s.seed, max_gpus=s.max_gpus
    )


def expand(spec: SweepSpec, spec_path: str | Path) -> list[Point]:
    """Every point of the grid, in grid order (instances outermost, then the axes as written)."""
    spec_path = Path(spec_path)
    spec_dir = spec_path.parent
    settings = solve_settings(spec)
    sources = [spec.base] if spec.base is not None else list(spec.instances or [])
    source_field = "base" if spec.base is not None else "instances"
    axes = list(spec.axes.items())
    _check_hardware(spec, str(spec_path))
    points: list[Point] = []
    for source in sources:
        path = _find_file(source, spec_dir, source_field, str(spec_path))
        raw = read_json(path, source_field)
        if not isinstance(raw, dict):
            raise InputError.single(source_field, f"{path} does not hold an instance object", str(spec_path))
        for combo in itertools.product(*(values for _, values in axes)):
            inputs: dict[str, Any] = {INSTANCE_AXIS: source} if spec.instances is not None else {}
            inputs.update({name: value for (name, _), value in zip(axes, combo, strict=True)})
            problem = _resolve_point(raw, path, spec, inputs, spec_dir, f"{spec_path} point {len(points)}")
            points.append(Point(len(points), inputs, problem, point_key(problem, settings)))
    return points


def _check_hardware(spec: SweepSpec, source: str) -> None:
    catalogue = hardware_catalogue()
    for name, values in spec.axes.items():
        if field_path(name) != HARDWARE_AXIS:
            continue
        unknown = [v for v in values if not (isinstance(v, str) and (v == OWN_HARDWARE or v in catalogue))]
        if unknown:
            known = ", ".join(sorted(catalogue))
            raise InputError.single(
                f"axes.{name}", f"unknown hardware {unknown}; known: {known} (or '{OWN_HARDWARE}')", source
            )


def _find_file(ref: str, spec_dir: Path, field: str, source: str) -> Path:
    """A file named in the sweep: relative to the sweep file's folder, else as given."""
    for candidate in (spec_dir / ref, Path(ref)):
        if candidate.is_file():
            return candidate
    raise InputError.single(field, f"file not found: {ref} (looked next to the sweep file and here)", source)


def _resolve_point(
    raw: dict[str, Any], path: Path, spec: SweepSpec, inputs: dict[str, Any], spec_dir: Path, source: str
) -> Problem:
    doc = copy.deepcopy(raw)
    # a placer.instance/1 file loads unchanged as /2; /2 lets a sweep set a serving workload kind
    doc["schema_version"] = INSTANCE_SCHEMA_VERSION
    hardware = None
    changes = list(spec.set.items()) + [(k, v) for k, v in inputs.items() if k != INSTANCE_AXIS]
    for name, value in changes:
        target = field_path(name)
        if target == HARDWARE_AXIS:
            hardware = value
            continue
        if target == "model" and isinstance(value, str) and (spec_dir / value).is_file():
            value = str((spec_dir / value).resolve())  # a model file named relative to the sweep file
        _set_field(doc, target, copy.deepcopy(value), name, source)
    described = ", ".join(f"{k}={v}" for k, v in inputs.items())
    where = f"{source} ({described})" if described else source
    instance = validate(Instance, doc, where)
    problem = build_problem(instance, path.parent, where)
    return problem_on_hardware(problem, hardware) if hardware is not None else problem


def _set_field(doc: dict[str, Any], path: str, value: Any, name: str, source: str) -> None:
    parts = path.split(".")
    node = doc
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise InputError.single(name, f"{where} is not an object in the instance, so {path} cannot be set", source)
        node = child
    node[parts[-1]] = value


def problem_document(problem: Problem) -> dict[str, Any]:
    """What decides a solve's answer, JSON-ready (the key's input)."""
    doc: dict[str, Any] = {
        "model": problem.model.model_dump(mode="json"),
        "hardware": problem.hardware.model_dump(mode="json"),
        "cluster": problem.cluster.model_dump(mode="json"),
        "workload": problem.workload.model_dump(mode="json"),
        "slo": problem.slo.model_dump(mode="json"),
        "objective": problem.objective.model_dump(mode="json"),
        "cost_parameters": problem.params.model_dump(mode="json"),
        "routing": problem.routing.model_dump(mode="json") if problem.routing is not None else None,
        "engine": problem.engine,
    }
    if isinstance(problem.routing, FileRouting):  # the statistics are the file's content, not its name
        doc["routing_file_sha256"] = hashlib.sha256(Path(problem.routing.path).read_bytes()).hexdigest()
    return doc


def point_key(problem: Problem, settings: SolveSettings) -> str:
    """Hash of the resolved instance, the solver settings and placer's version."""
    payload = {
        "placer_version": placer.__version__,
        "problem": problem_document(problem),
        "solver": {
            "backend": settings.backend,
            "time_limit_s": settings.time_limit_s,
            "workers": settings.workers,
            "seed": settings.seed,
            "max_gpus": settings.max_gpus,
        },
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_HEX_DIGITS]
