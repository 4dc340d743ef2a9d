"""Node-level placement solvers by name: the one way the layers above (solve, the API) pick an
exact solver for :mod:`placer.placement.planner`.

Why here and not in the planner: the planner sits in ``placer.placement``, below the backends
(the backends import its :class:`~placer.placement.nodemodel.NodeModel`), so it must not import
them. The caller resolves a name to a :class:`~placer.placement.nodemodel.NodeSolver` with
:func:`node_solver` and hands the function down. Each solver module is imported lazily, so a
greedy-only placement never loads ``ortools`` or ``pulp``.
"""

from __future__ import annotations

from placer.placement.nodemodel import NodeSolver

#: names of the exact node solvers
NODE_SOLVERS = ("cpsat", "milp")


def node_solver(name: str | None) -> NodeSolver | None:
    """The node solver called ``name``; ``None`` for ``None`` (the planner's greedy search alone)."""
    if name is None:
        return None
    if name == "cpsat":
        from placer.backends.cpsat.placement import solve_node_model
    elif name == "milp":
        from placer.backends.milp.placement import solve_node_model
    else:
        raise ValueError(f"placement backend {name!r}: choose from {', '.join(NODE_SOLVERS)}")
    return solve_node_model
