"""Topology-aware expert placement (solver-free parts): data, metrics, baselines, greedy, layout.

The exact models live in ``placer.backends.{cpsat,milp}.placement``; :mod:`placer.placement.planner`
orchestrates them. Definitions and formulas: ``docs/placement.md``.
"""
