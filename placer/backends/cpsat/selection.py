"""The selection problem in CP-SAT: a one-hot choice, one pass per term, then the lowest index.

``z_i`` in {0, 1}, ``sum_i z_i = 1``; pass ``k`` minimises ``sum_i cost[i][k] z_i`` and then holds
it at its optimum (``<=``) for the later passes; the last pass minimises ``sum_i i z_i`` so that
ties go to the lowest index, as in the exhaustive scan.
"""

from __future__ import annotations

import time

from ortools.sat.python import cp_model

from placer.backends.cpsat.model import _STATUS, solve_interruptibly
from placer.backends.selection_answer import solution_for
from placer.formulation.selection import SelectionData
from placer.result import BackendSolution, SolveStatus
from placer.stopping import StopToken


def select(data: SelectionData, stop: StopToken | None = None, workers: int = 1, seed: int = 0) -> BackendSolution:
    started = time.perf_counter()
    token = stop if stop is not None else StopToken()
    if not len(data):
        return BackendSolution("cpsat", SolveStatus.INFEASIBLE, None, (), {}, None, time.perf_counter() - started)
    costs = data.costs
    model = cp_model.CpModel()
    z = [model.NewBoolVar(f"z_{i}") for i in range(len(costs))]
    model.AddExactlyOne(z)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    objectives = [sum(row[k] * zi for row, zi in zip(costs, z, strict=True)) for k in range(len(data.terms))]
    objectives.append(sum(i * zi for i, zi in enumerate(z)))
    names = [*data.terms, "lowest_index"]
    statuses: list[str] = []
    overall = SolveStatus.OPTIMAL
    chosen: int | None = None
    bound: float | None = None
    interrupted = False
    for k, (name, expr) in enumerate(zip(names, objectives, strict=True)):
        remaining = token.remaining_s()
        if remaining <= 0:
            overall = SolveStatus.FEASIBLE
            interrupted = token.interrupted
            break
        if remaining != float("inf"):
            solver.parameters.max_time_in_seconds = remaining
        model.Minimize(expr)
        model.ClearHints()
        if chosen is not None:
            for i, zi in enumerate(z):
                model.AddHint(zi, int(i == chosen))
        code, interrupted = solve_interruptibly(solver, model, token)
        status = _STATUS.get(code, SolveStatus.NO_PLAN)
        statuses.append(f"{name}:{status.value}")
        if status in (SolveStatus.INFEASIBLE, SolveStatus.NO_PLAN):
            overall = status if chosen is None else SolveStatus.FEASIBLE
            break
        if status != SolveStatus.OPTIMAL:
            overall = SolveStatus.FEASIBLE
        value = int(round(solver.ObjectiveValue()))
        if k == 0:
            bound = solver.BestObjectiveBound() / data.scales[0]
        chosen = next(i for i, zi in enumerate(z) if solver.Value(zi))
        model.Add(expr <= value)
        if interrupted:
            break
    if chosen is None:
        return BackendSolution(
            "cpsat", overall, None, (), {}, None, time.perf_counter() - started, tuple(statuses), interrupted
        )
    return solution_for(data, "cpsat", chosen, overall, started, tuple(statuses), bound, interrupted)
