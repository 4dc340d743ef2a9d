"""In-memory routing statistics of one model: per MoE layer, expert loads and co-activation.

Units: ``loads[e]`` is the expected number of times a token selects expert ``e`` (so
``sum(loads) == top_k``); ``coactivation[e, f]`` is the expected number of tokens' selections
that hold both ``e`` and ``f`` per token (the probability that a token selects both).
Traces (``[tokens, top_k]`` expert ids) are kept when known: node-deduplicated traffic depends
on the whole selected set, not only on pairs, so metrics use the traces when they exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class LayerRouting:
    """Routing of one MoE layer. Compared by identity (it holds arrays)."""

    loads: np.ndarray  # [E], sum = top_k
    traces: np.ndarray | None = None  # [tokens, top_k] int expert ids
    _coactivation: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_experts(self) -> int:
        return int(self.loads.shape[0])

    @property
    def coactivation(self) -> np.ndarray:
        """[E, E] probability a token selects both experts (diagonal: zero).

        From the traces when known, else the independence model ``p_e p_f (k-1)/k`` rescaled so
        each row sums to ``p_e (k - 1)`` (every selection of ``e`` comes with ``k-1`` others)."""
        if self._coactivation is not None:
            return self._coactivation
        if self.traces is not None:
            value = coactivation_from_traces(self.traces, self.num_experts)
        else:
            value = independent_coactivation(self.loads)
        object.__setattr__(self, "_coactivation", value)
        return value


@dataclass(frozen=True, eq=False)
class RoutingStats:
    """Statistics of every MoE layer of a model, in MoE-layer order."""

    top_k: int
    layers: tuple[LayerRouting, ...]
    source: str  # how the statistics were obtained, for the report
    uniform: bool = False  # True when no statistics were given (uniform, independent routing assumed)
    expert_group: np.ndarray | None = None  # [E] group id of each expert (group-limited routing)
    groups_per_token: int | None = None

    @property
    def num_experts(self) -> int:
        return self.layers[0].num_experts


def coactivation_from_traces(traces: np.ndarray, num_experts: int) -> np.ndarray:
    """Pair counts of the traces divided by the token count (a token's duplicate ids count once)."""
    tokens = traces.shape[0]
    onehot = np.zeros((tokens, num_experts), dtype=np.float32)
    rows = np.repeat(np.arange(tokens), traces.shape[1])
    onehot[rows, traces.reshape(-1)] = 1.0
    pairs = (onehot.T @ onehot).astype(float) / tokens
    np.fill_diagonal(pairs, 0.0)
    return pairs


def independent_coactivation(loads: np.ndarray) -> np.ndarray:
    """Co-activation if experts were picked independently in proportion to their loads."""
    k = float(loads.sum())
    if k <= 1:
        return np.zeros((loads.size, loads.size))
    outer = np.outer(loads, loads)
    np.fill_diagonal(outer, 0.0)
    rows = outer.sum(axis=1, keepdims=True)
    target = loads[:, None] * (k - 1)
    scale = np.divide(target, rows, out=np.zeros_like(target), where=rows > 0)
    sym = outer * scale
    return (sym + sym.T) / 2


def uniform_stats(num_experts: int, top_k: int, num_layers: int) -> RoutingStats:
    """No statistics: every expert equally likely, selections independent."""
    layer = LayerRouting(np.full(num_experts, top_k / num_experts))
    return RoutingStats(
        top_k, tuple(layer for _ in range(num_layers)), "none given: uniform, independent routing assumed", uniform=True
    )


def stats_from_traces(traces: list[np.ndarray], num_experts: int, source: str, **extra: object) -> RoutingStats:
    """Statistics from per-layer ``[tokens, k]`` traces."""
    layers = []
    top_k = int(traces[0].shape[1])
    for trace in traces:
        trace = np.asarray(trace, dtype=np.int64)
        counts = np.bincount(trace.reshape(-1), minlength=num_experts).astype(float)
        layers.append(LayerRouting(counts / trace.shape[0], trace))
    return RoutingStats(top_k, tuple(layers), source, **extra)  # type: ignore[arg-type]


def stats_from_loads(rows: list[list[float]] | np.ndarray, top_k: int, source: str, **extra: object) -> RoutingStats:
    """Statistics from per-layer expert loads (any scale: token counts or shares), rescaled to sum ``top_k``."""
    layers = []
    for row in np.asarray(rows, dtype=float):
        total = row.sum()
        loads = row * (top_k / total) if total > 0 else np.full(row.size, top_k / row.size)
        layers.append(LayerRouting(loads))
    return RoutingStats(top_k, tuple(layers), source, **extra)  # type: ignore[arg-type]
