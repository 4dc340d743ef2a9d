"""Exhaustive reference: every configuration, each with its exact best partition by dynamic
programming (:mod:`placer.formulation.partition`), in branch-and-bound order. No solver package;
it is the referee the CP-SAT and MILP backends are tested against, and ``auto``'s choice on
instances whose scan is small.
"""

from __future__ import annotations

import time

from placer.costmodel.phase import PHASES
from placer.formulation.data import Config, FormulationData
from placer.formulation.partition import evaluate_config
from placer.formulation.terms import objective_terms, term_value
from placer.result import BackendSolution, SolveStatus
from placer.stopping import StopToken


def _key(values: tuple[float, ...]) -> tuple[float, ...]:
    # Equal up to float noise counts as a tie; ties go to the lower configuration index.
    return tuple(float(f"{v:.9g}") for v in values)


def primary_lower_bound(data: FormulationData, config: Config, term: str) -> float:
    """A value no partition of ``config`` can beat on ``term``, from its coefficients alone.

    The largest stage time is at least the mean stage time, and the stage times add up to the
    configuration's total without the pipeline sends (which sit between stages): so
    ``T >= (S - sends) / pp`` in each phase, and every term grows with ``T`` (J2)-(J4)."""
    counts = data.class_counts
    pp = config.par.pp
    t_pre, t_dec = ((config.total_s(phase, counts) - config.sends_s[phase]) / pp for phase in PHASES)
    return term_value(data, config, term, max(0.0, t_pre), max(0.0, t_dec))


def dp_cells(data: FormulationData) -> int:
    """Work of a full scan in DP cells (stages x layer pairs, summed over configurations): the
    deterministic measure the portfolio uses to choose a backend."""
    side = (data.num_layers + 1) ** 2
    return sum(c.par.pp for c in data.configs) * side


def solve(
    data: FormulationData,
    time_limit_s: float | None = None,
    workers: int = 1,
    seed: int = 0,
    stop: StopToken | None = None,
    work_limit: float | None = None,
) -> BackendSolution:
    """Branch and bound over configurations: score them in order of a lower bound on the primary
    term (:func:`primary_lower_bound`), stop when the next bound exceeds the best value found. The
    lexicographic minimum is then proven: every configuration left has a worse primary term.

    Ties are broken as a scan in index order would (the lower configuration index wins), so the
    plan does not depend on the scan order. A time limit, ``work_limit`` (configurations scored)
    or Ctrl-C ends the scan early: the best configuration seen comes back as ``FEASIBLE`` with the
    next configuration's lower bound as the bound (valid: the rest are sorted by it)."""
    del workers, seed  # deterministic, single-threaded
    started = time.perf_counter()
    token = StopToken.within(stop, time_limit_s)
    terms = objective_terms(data)
    primary = terms[0]
    lower = [primary_lower_bound(data, c, primary) for c in data.configs]
    order = sorted(range(len(data.configs)), key=lambda i: (lower[i], i))
    best: tuple[tuple[float, ...], int, tuple[int, ...]] | None = None
    complete, interrupted = True, False
    next_bound: float | None = None
    scored_count = position = 0
    try:
        for position, index in enumerate(order):  # noqa: B007 (read after an interrupt)
            if best is not None and _key((lower[index],))[0] > _key(best[0][:1])[0] * (1 + 1e-8) + 1e-12:
                break  # every configuration left has a worse primary term than the best found
            if token.should_stop() or (work_limit is not None and scored_count >= work_limit):
                complete, interrupted = False, token.interrupted
                next_bound = lower[index]
                break
            scored = evaluate_config(data, data.configs[index])
            scored_count += 1
            if scored is None:
                continue
            values, starts = scored
            if best is None or (_key(values), index) < (_key(best[0]), best[1]):
                best = (values, index, starts)
    except KeyboardInterrupt:
        complete, interrupted = False, True
        remaining = order[position:]
        next_bound = min((lower[i] for i in remaining), default=None)
    if complete:
        status = SolveStatus.OPTIMAL if best else SolveStatus.INFEASIBLE
    else:
        status = SolveStatus.FEASIBLE if best else SolveStatus.NO_PLAN
    wall = time.perf_counter() - started
    passes = (f"scored {scored_count} of {len(order)} configurations",)
    if best is None:
        return BackendSolution("exhaustive", status, None, (), {}, next_bound, wall, passes, interrupted)
    values, index, starts = best
    named = dict(zip(terms, values, strict=True))
    if status == SolveStatus.OPTIMAL:
        bound = values[0]
    else:
        bound = values[0] if next_bound is None else min(values[0], next_bound)
    return BackendSolution("exhaustive", status, index, starts, named, bound, wall, passes, interrupted)
