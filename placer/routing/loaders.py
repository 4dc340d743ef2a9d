"""Turn an instance's ``routing`` section into :class:`RoutingStats`, refusing what carries no information.

Formats:

* ``loads``: one row of per-expert loads per MoE layer (counts or shares).
* ``npz_topk``: an ``.npz`` with one ``[tokens, top_k]`` integer array per MoE layer; arrays are
  taken in natural key order (``layer_3`` before ``layer_10``).
* ``sglang_logical_count``: the JSON SGLang's expert-distribution recorder writes, with a
  ``logical_count`` array of shape ``[layers, experts]`` or ``[steps, layers, experts]``
  (summed over steps). Counts give loads only; co-activation then falls back to independence.

Every problem with a file (unreadable, not the format, wrong shape, non-integer or repeated
expert ids, a layer with no selections) is an :class:`InputError` naming ``routing.path`` and
the file; statistics are resolved once per problem (:func:`placer.problem.build_problem`).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from placer.errors import InputError
from placer.routing.stats import RoutingStats, stats_from_loads, stats_from_traces
from placer.routing.synthetic import synthetic_stats
from placer.schema import ModelSpec
from placer.schema.limits import (
    MAX_ROUTING_FILE_BYTES,
    MAX_ROUTING_PAIRS,
    MAX_SYNTHETIC_SCORES,
    MAX_TRACE_SELECTIONS,
)
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting
from placer.validation import parse_json

RoutingSpec = SyntheticRouting | LoadsRouting | FileRouting


def _group_info(model: ModelSpec) -> dict[str, object]:
    moe = model.moe
    assert moe is not None
    if moe.num_groups <= 1:
        return {}
    return {
        "expert_group": np.arange(moe.num_experts) // (moe.num_experts // moe.num_groups),
        "groups_per_token": moe.groups_per_token,
    }


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def resolve_routing_path(routing: FileRouting, base_dir: Path | None) -> Path:
    """The routing file: relative paths are taken from the instance's folder first, then the cwd."""
    path = Path(routing.path)
    candidates = [path] if path.is_absolute() else ([base_dir / path] if base_dir is not None else []) + [path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise InputError.single("routing.path", f"file not found: {routing.path}")


def routing_stats(model: ModelSpec, routing: RoutingSpec | None, base_dir: Path | None = None) -> RoutingStats | None:
    """Statistics for every MoE layer of ``model``; ``None`` when the instance gives none (the cost
    model then assumes uniform routing and says so)."""
    moe = model.moe
    if routing is None:
        return None
    layers = len(model.moe_layers)
    if moe is None or layers == 0:
        raise InputError.single("routing", "routing statistics given for a model without MoE layers")
    pairs = layers * moe.num_experts**2
    if pairs > MAX_ROUTING_PAIRS:
        raise InputError.single(
            "routing",
            f"{layers} MoE layers x {moe.num_experts}^2 experts = {pairs:,} expert pairs, above the limit "
            f"MAX_ROUTING_PAIRS = {MAX_ROUTING_PAIRS:,} (placer/schema/limits.py); leave routing out for uniform "
            "routing",
        )
    if isinstance(routing, SyntheticRouting):
        return _synthetic(model, routing)
    if isinstance(routing, LoadsRouting):
        rows = np.asarray(routing.loads, dtype=float) if routing.loads else np.zeros((0, moe.num_experts))
        _check_loads(rows, layers, moe.num_experts, "routing.loads", None)
        return stats_from_loads(
            rows, moe.top_k, "measured per-layer expert loads (co-activation assumed independent)", **_group_info(model)
        )
    path = resolve_routing_path(routing, base_dir)
    size = path.stat().st_size
    if size > MAX_ROUTING_FILE_BYTES:
        raise _file_error(path, f"{size} bytes, above MAX_ROUTING_FILE_BYTES = {MAX_ROUTING_FILE_BYTES}")
    if routing.format == "npz_topk":
        traces = _read_npz(path, model)
        return stats_from_traces(traces, moe.num_experts, f"top-k traces from {path.name}", **_group_info(model))
    counts = _read_sglang(path, model)
    return stats_from_loads(
        counts,
        moe.top_k,
        f"SGLang logical_count from {path.name} (co-activation assumed independent)",
        **_group_info(model),
    )


def _synthetic(model: ModelSpec, routing: SyntheticRouting) -> RoutingStats:
    moe = model.moe
    assert moe is not None
    layers = len(model.moe_layers)
    if routing.coactivation_clusters > moe.num_experts:
        raise InputError.single(
            "routing.coactivation_clusters",
            f"{routing.coactivation_clusters} clusters for {moe.num_experts} experts: at most one cluster per expert",
        )
    scores = routing.tokens * moe.num_experts * layers
    if scores > MAX_SYNTHETIC_SCORES:
        raise InputError.single(
            "routing.tokens",
            f"{routing.tokens} tokens x {moe.num_experts} experts x {layers} MoE layers = {scores:,} scores drawn, "
            f"above the limit MAX_SYNTHETIC_SCORES = {MAX_SYNTHETIC_SCORES:,} (placer/schema/limits.py)",
        )
    return synthetic_stats(
        moe.num_experts,
        moe.top_k,
        layers,
        seed=routing.seed,
        tokens=routing.tokens,
        zipf_exponent=routing.zipf_exponent,
        coactivation_clusters=routing.coactivation_clusters,
        cluster_affinity=routing.cluster_affinity,
        num_groups=moe.num_groups if routing.group_limited else 1,
        groups_per_token=moe.groups_per_token if routing.group_limited else None,
    )


def _file_error(path: Path, reason: str) -> InputError:
    return InputError.single("routing.path", f"{path.name}: {reason}", str(path))


def _check_loads(rows: np.ndarray, layers: int, experts: int, field: str, path: Path | None) -> None:
    """Per-layer counts must be finite, non-negative and not all zero (no selection = no information)."""

    def fail(where: str, reason: str) -> InputError:
        if path is not None:
            return _file_error(path, f"{where}: {reason}" if where else reason)
        return InputError.single(f"{field}{where}", reason)

    if rows.ndim != 2 or rows.shape != (layers, experts):
        raise fail("", f"shape {list(rows.shape)}, expected [{layers} MoE layers, {experts} experts]")
    if not np.isfinite(rows).all():
        layer = int(np.argwhere(~np.isfinite(rows))[0][0])
        raise fail(f"[{layer}]", "holds NaN or infinite counts")
    if (rows < 0).any():
        layer = int(np.argwhere(rows < 0)[0][0])
        raise fail(f"[{layer}]", "holds negative counts")
    empty = np.flatnonzero(rows.sum(axis=1) <= 0)
    if empty.size:
        raise fail(
            f"[{int(empty[0])}]",
            "all counts are zero: the layer carries no routing information (leave routing out for uniform routing)",
        )


def _read_npz(path: Path, model: ModelSpec) -> list[np.ndarray]:
    moe = model.moe
    assert moe is not None
    layers = len(model.moe_layers)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _file_error(path, f"not a readable .npz archive ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _file_error(path, "a single .npy array; expected an .npz archive of one [tokens, top_k] array per layer")
    traces: list[np.ndarray] = []
    with archive:
        names = sorted(archive.files, key=_natural_key)
        if len(names) != layers:
            raise _file_error(path, f"{len(names)} arrays for {layers} MoE layers")
        total = 0
        for name in names:
            try:
                trace = np.asarray(archive[name])
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _file_error(path, f"array {name}: unreadable ({str(exc)[:80]})") from None
            total += trace.size
            if total > MAX_TRACE_SELECTIONS:
                raise _file_error(path, f"more than MAX_TRACE_SELECTIONS = {MAX_TRACE_SELECTIONS:,} expert ids")
            traces.append(_check_trace(path, name, trace, moe.num_experts, moe.top_k))
    return traces


def _check_trace(path: Path, name: str, trace: np.ndarray, experts: int, top_k: int) -> np.ndarray:
    """One layer's ``[tokens, top_k]`` expert ids: integers in range, distinct within a token."""
    if trace.ndim != 2 or trace.shape[1] != top_k:
        raise _file_error(path, f"array {name}: shape {list(trace.shape)}, expected [tokens, {top_k}]")
    if trace.shape[0] == 0:
        raise _file_error(path, f"array {name}: no tokens, so the layer carries no routing information")
    if trace.dtype.kind == "f":
        if not np.isfinite(trace).all() or not (trace == np.round(trace)).all():
            raise _file_error(path, f"array {name}: expert ids must be integers")
    elif trace.dtype.kind not in "iu":
        raise _file_error(path, f"array {name}: dtype {trace.dtype}, expected integer expert ids")
    if trace.min() < 0 or trace.max() >= experts:
        raise _file_error(path, f"array {name}: expert ids outside 0..{experts - 1}")
    trace = trace.astype(np.int64)
    if top_k > 1:
        ordered = np.sort(trace, axis=1)
        repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if repeated.size:
            token = int(repeated[0])
            raise _file_error(
                path, f"array {name}: token {token} is routed to the same expert twice ({trace[token].tolist()})"
            )
    return trace


def _read_sglang(path: Path, model: ModelSpec) -> np.ndarray:
    moe = model.moe
    assert moe is not None
    layers = len(model.moe_layers)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _file_error(path, "not UTF-8 text: an SGLang logical_count file is JSON (is this an .npz?)") from None
    except OSError as exc:
        raise _file_error(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = parse_json(text, str(path))
    except InputError as exc:  # name the field that led here, then the file's own problem
        problems = [("routing.path", f"{path.name}: {f'{f}: ' if f else ''}{reason}") for f, reason in exc.problems]
        raise InputError(problems, str(path)) from None
    if isinstance(data, dict):
        if "logical_count" not in data:
            raise _file_error(path, "no 'logical_count' key (SGLang's expert-distribution recorder writes one)")
        data = data["logical_count"]
    counts = _numeric_array(path, data)
    if counts.ndim == 3:
        counts = counts.sum(axis=0)
    if counts.ndim != 2 or counts.shape[1] != moe.num_experts:
        raise _file_error(path, f"logical_count has shape {list(counts.shape)}, expected [layers, {moe.num_experts}]")
    if counts.shape[0] == model.num_layers and counts.shape[0] != layers:
        counts = counts[model.moe_layers]
    if counts.shape[0] != layers:
        raise _file_error(path, f"logical_count has {counts.shape[0]} layers for {layers} MoE layers")
    _check_loads(counts, layers, moe.num_experts, "logical_count", path)
    return counts


def _numeric_array(path: Path, data: object) -> np.ndarray:
    """A regular (non-ragged) array of numbers, booleans and strings refused."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise _file_error(path, f"logical_count holds {type(item).__name__} {str(item)[:40]!r}, expected numbers")
    try:
        return np.asarray(data, dtype=float)
    except (ValueError, OverflowError):
        raise _file_error(path, "logical_count is ragged: every layer needs one count per expert") from None
