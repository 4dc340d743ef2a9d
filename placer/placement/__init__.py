"""Topology-aware expert placement (solver-free parts): data, metrics, baselines, greedy, layout.

The exact node models live in ``placer.backends.{cpsat,milp}.placement`` and implement the contract
of :mod:`placer.placement.nodemodel`; :mod:`placer.placement.planner` orchestrates a solver it is
handed (this package sits below the backends and never imports them; callers pick a solver with
:func:`placer.backends.placement.node_solver`). Definitions and formulas: ``docs/placement.md``.
"""
