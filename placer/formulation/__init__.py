"""Solver-agnostic formulation data shared by the backends (see docs/formulation.md)."""
