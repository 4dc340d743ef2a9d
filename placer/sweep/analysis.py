"""What capacity planners read off a sweep's table: the cheapest answer at each demand, and the
Pareto front of throughput per GPU against interactivity. Plain functions of the rows, so the
pictures (:mod:`placer.report.sweep`) only draw."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: statuses whose row carries a plan (a FEASIBLE one with its gap)
PLANNED = ("optimal", "feasible")


def planned(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") in PLANNED and r.get("gpus") is not None]


def cheapest_by_demand(rows: Sequence[dict[str, Any]], group: Sequence[str]) -> dict[tuple[Any, ...], list[tuple]]:
    """Per ``group`` value (e.g. model and hardware): ``(demand, usd per million output tokens)``
    pairs in demand order, the cheapest planned row at each demand (other axes, such as an SLO,
    chosen at their cheapest)."""
    best: dict[tuple[Any, ...], dict[float, float]] = {}
    for row in planned(rows):
        demand, cost = row.get("demand_output_tokens_per_s"), row.get("usd_per_million_output_tokens")
        if demand is None or cost is None:
            continue
        costs = best.setdefault(tuple(row.get(g) for g in group), {})
        costs[demand] = min(cost, costs.get(demand, cost))
    return {k: sorted(v.items()) for k, v in best.items()}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both maximised), in
    increasing first coordinate: the front a planner chooses along (more interactivity costs
    throughput per GPU). Ties keep the first point given."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1], i))
    front: list[int] = []
    best_y = float("-inf")
    for i in order:  # from the most interactive down: a point joins when it beats every one before on y
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front[::-1]
