"""Solver backends. Only this package imports ``ortools`` or ``pulp``; each is imported lazily."""

from __future__ import annotations

from collections.abc import Callable

from placer.formulation.data import FormulationData
from placer.result import BackendSolution

BACKENDS = ("cpsat", "milp", "exhaustive")


def get_backend(name: str) -> Callable[..., BackendSolution]:
    """The ``solve(data, time_limit_s, workers, seed)`` function of a backend."""
    if name == "cpsat":
        from placer.backends.cpsat import solve
    elif name == "milp":
        from placer.backends.milp import solve
    elif name == "exhaustive":
        from placer.backends.exhaustive import solve
    else:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return solve


def run_backend(name: str, data: FormulationData, time_limit_s: float, workers: int, seed: int) -> BackendSolution:
    return get_backend(name)(data, time_limit_s=time_limit_s, workers=workers, seed=seed)
