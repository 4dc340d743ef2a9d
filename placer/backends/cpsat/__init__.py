"""OR-Tools CP-SAT backend."""

from placer.backends.cpsat.model import solve

__all__ = ["solve"]
