"""Routing statistics: which experts tokens select, per MoE layer.

Loaded from measurements (per-layer loads, ``.npz`` top-k traces, SGLang ``logical_count``) or
drawn from a seeded synthetic generator; :func:`routing_stats` turns an instance's ``routing``
section into :class:`RoutingStats`. Solver-free (numpy only).
"""

from placer.routing.loaders import cached_routing_stats, routing_stats
from placer.routing.stats import LayerRouting, RoutingStats, uniform_stats
from placer.routing.synthetic import synthetic_stats

__all__ = ["LayerRouting", "cached_routing_stats", "RoutingStats", "routing_stats", "synthetic_stats", "uniform_stats"]
