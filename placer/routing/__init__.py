"""Routing statistics: which experts tokens select, per MoE layer.

Loaded from measurements (per-layer loads, ``.npz`` top-k traces, SGLang ``logical_count``) or
drawn from a seeded synthetic generator; :func:`routing_stats` turns an instance's ``routing``
section into :class:`RoutingStats` (once per problem, in :func:`placer.problem.build_problem`).
Solver-free (numpy only).
"""

from placer.routing.loaders import resolve_routing_path, routing_stats
from placer.routing.stats import LayerRouting, RoutingStats, uniform_stats
from placer.routing.synthetic import synthetic_stats

__all__ = [
    "LayerRouting",
    "RoutingStats",
    "resolve_routing_path",
    "routing_stats",
    "synthetic_stats",
    "uniform_stats",
]
