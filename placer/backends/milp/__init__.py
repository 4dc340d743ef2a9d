"""PuLP MILP backend (HiGHS when installed, else CBC): the CP-SAT model's mathematics, linearised."""

from placer.backends.milp.model import solve

__all__ = ["solve"]
