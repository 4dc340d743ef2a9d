"""The selection problem as a MILP in PuLP: the CP-SAT selection's one-hot model, pass for pass.

The LP relaxation of a one-hot choice (``sum z = 1``, ``0 <= z <= 1``) has integral vertices, so
each pass is solved exactly at the root; holding a pass's optimum uses ``<=`` on integer
coefficients, which the solver's tolerances cannot blur.
"""

from __future__ import annotations

import time

from placer.backends.milp.model import make_solver
from placer.backends.selection_answer import solution_for
from placer.formulation.selection import SelectionData
from placer.result import BackendSolution, SolveStatus
from placer.stopping import StopToken


def select(data: SelectionData, stop: StopToken | None = None, workers: int = 1, seed: int = 0) -> BackendSolution:
    import pulp

    started = time.perf_counter()
    token = stop if stop is not None else StopToken()
    if not len(data):
        return BackendSolution("milp", SolveStatus.INFEASIBLE, None, (), {}, None, time.perf_counter() - started)
    costs = data.costs
    lp = pulp.LpProblem("placer_selection", pulp.LpMinimize)
    z = [pulp.LpVariable(f"z_{i}", cat=pulp.LpBinary) for i in range(len(costs))]
    lp += pulp.lpSum(z) == 1
    objectives = [pulp.lpSum(row[k] * zi for row, zi in zip(costs, z, strict=True)) for k in range(len(data.terms))]
    objectives.append(pulp.lpSum(i * zi for i, zi in enumerate(z)))
    names = [*data.terms, "lowest_index"]
    statuses: list[str] = []
    overall = SolveStatus.OPTIMAL
    chosen: int | None = None
    for k, (name, expr) in enumerate(zip(names, objectives, strict=True)):
        remaining = token.remaining_s()
        if remaining <= 0:
            overall = SolveStatus.FEASIBLE
            break
        lp.setObjective(expr)
        lp.solve(make_solver(min(remaining, 3600.0), workers, seed))
        status = pulp.LpStatus[lp.status]
        statuses.append(f"{name}:{status}")
        if status != "Optimal":
            overall = SolveStatus.FEASIBLE if chosen is not None else SolveStatus.NO_PLAN
            break
        chosen = max(range(len(z)), key=lambda i: z[i].value() or 0.0)
        # the pass's optimum is the chosen candidate's coefficient (one-hot), exact in integers
        lp += expr <= (costs[chosen][k] if k < len(data.terms) else chosen)
    if chosen is None:
        return BackendSolution("milp", overall, None, (), {}, None, time.perf_counter() - started, tuple(statuses))
    return solution_for(data, "milp", chosen, overall, started, tuple(statuses))
