"""Turn an instance's ``routing`` section into :class:`RoutingStats`.

Formats:

* ``loads``: one row of per-expert loads per MoE layer (counts or shares).
* ``npz_topk``: an ``.npz`` with one ``[tokens, top_k]`` integer array per MoE layer; arrays are
  taken in natural key order (``layer_3`` before ``layer_10``).
* ``sglang_logical_count``: the JSON SGLang's expert-distribution recorder writes, with a
  ``logical_count`` array of shape ``[layers, experts]`` or ``[steps, layers, experts]``
  (summed over steps). Counts give loads only; co-activation then falls back to independence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from placer.errors import InputError
from placer.routing.stats import RoutingStats, stats_from_loads, stats_from_traces, uniform_stats
from placer.routing.synthetic import synthetic_stats
from placer.schema import ModelSpec
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting


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


def routing_stats(
    model: ModelSpec,
    routing: SyntheticRouting | LoadsRouting | FileRouting | None,
    base_dir: Path | None = None,
) -> RoutingStats:
    """Statistics for every MoE layer of ``model`` (uniform when ``routing`` is None)."""
    moe = model.moe
    if moe is None:
        raise InputError.single("routing", "the model has no MoE layers")
    layers = len(model.moe_layers)
    if routing is None:
        return uniform_stats(moe.num_experts, moe.top_k, layers)
    if isinstance(routing, SyntheticRouting):
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
    if isinstance(routing, LoadsRouting):
        return stats_from_loads(
            routing.loads,
            moe.top_k,
            "measured per-layer expert loads (co-activation assumed independent)",
            **_group_info(model),
        )
    path = Path(routing.path)
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    if not path.is_file():
        raise InputError.single("routing.path", f"file not found: {routing.path}")
    if routing.format == "npz_topk":
        with np.load(path) as archive:
            names = sorted(archive.files, key=_natural_key)
            traces = [np.asarray(archive[name]) for name in names]
        if len(traces) != layers:
            raise InputError.single("routing.path", f"{len(traces)} arrays for {layers} MoE layers")
        for name, trace in zip(names, traces, strict=True):
            if trace.ndim != 2 or trace.shape[1] != moe.top_k:
                raise InputError.single(
                    "routing.path", f"array {name}: shape {trace.shape}, expected [tokens, {moe.top_k}]"
                )
            if trace.size and (trace.min() < 0 or trace.max() >= moe.num_experts):
                raise InputError.single("routing.path", f"array {name}: expert ids outside 0..{moe.num_experts - 1}")
        return stats_from_traces(traces, moe.num_experts, f"top-k traces from {path.name}", **_group_info(model))
    data = json.loads(path.read_text())
    counts = np.asarray(data["logical_count"] if isinstance(data, dict) else data, dtype=float)
    if counts.ndim == 3:
        counts = counts.sum(axis=0)
    if counts.ndim != 2 or counts.shape[1] != moe.num_experts:
        raise InputError.single(
            "routing.path", f"logical_count has shape {counts.shape}, expected [layers, {moe.num_experts}]"
        )
    if counts.shape[0] == model.num_layers and counts.shape[0] != layers:
        counts = counts[model.moe_layers]
    if counts.shape[0] != layers:
        raise InputError.single("routing.path", f"logical_count has {counts.shape[0]} layers for {layers} MoE layers")
    return stats_from_loads(
        counts,
        moe.top_k,
        f"SGLang logical_count from {path.name} (co-activation assumed independent)",
        **_group_info(model),
    )


_CACHE: dict[tuple[int, int], tuple[ModelSpec, object, RoutingStats]] = {}
#: distinct (model, routing) pairs kept; a synthetic draw of 58 layers x 4,096 tokens takes seconds
_CACHE_SIZE = 8


def cached_routing_stats(
    model: ModelSpec, routing: SyntheticRouting | LoadsRouting | FileRouting | None, base_dir: Path | None = None
) -> RoutingStats | None:
    """:func:`routing_stats` memoised on the identity of ``(model, routing)``; ``None`` when the
    instance gives no statistics (the cost model then assumes uniform routing). The evaluator runs
    many times per solve, and the draw is deterministic, so one draw serves them all."""
    if routing is None or model.moe is None:
        return None
    key = (id(model), id(routing))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is model and hit[1] is routing:
        return hit[2]
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    stats = routing_stats(model, routing, base_dir)
    _CACHE[key] = (model, routing, stats)
    return stats
