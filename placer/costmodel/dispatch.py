"""Bytes one token carries through the MoE all-to-all.

Traffic figures are counted in token copies; this turns a copy into bytes. One definition, read by
the formulation, the evaluator and the placement reports alike.
"""

from __future__ import annotations

from placer.problem import Problem
from placer.schema import DTYPE_BYTES


def copy_bytes_per_token(problem: Problem) -> float:
    """Bytes of one token's hidden state sent out (dispatch) and back (combine)."""
    model, params = problem.model, problem.params
    act = model.precision.activations
    return model.hidden_size * (DTYPE_BYTES[params.dispatch_dtype or act] + DTYPE_BYTES[params.combine_dtype or act])
