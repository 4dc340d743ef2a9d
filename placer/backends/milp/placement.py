"""MILP (PuLP, CBC) model of node-level expert placement: the same mathematics as
``placer.backends.cpsat.placement`` ((N1)-(N6) of docs/placement.md), with z <= x linearisation."""

from __future__ import annotations

import time

import numpy as np
import pulp

from placer.placement.nodemodel import NodeModel, NodeSolution, relabel_hint, symmetric_prefix


def solve_node_model(
    model: NodeModel, hint: np.ndarray, time_limit_s: float, workers: int = 1, seed: int = 0
) -> NodeSolution:
    started = time.perf_counter()
    num_e, num_n = model.num_experts, model.num_nodes
    prob = pulp.LpProblem("node_placement", pulp.LpMaximize)
    x = [[pulp.LpVariable(f"x_{e}_{n}", cat="Binary") for n in range(num_n)] for e in range(num_e)]
    for e in range(num_e):
        prob += pulp.lpSum(x[e]) == int(model.copies[e])
    for n in range(num_n):
        prob += pulp.lpSum(x[e][n] for e in range(num_e)) <= int(model.node_slots[n])
        prob += pulp.lpSum(float(model.copy_load[e]) * x[e][n] for e in range(num_e)) <= float(model.node_load_cap[n])
    prefix = symmetric_prefix(model)
    for e, usable in prefix:
        for n in range(usable, num_n):
            prob += x[e][n] == 0
    objective = []
    for k, ((e, f), w) in enumerate(zip(model.edges, model.edge_weight, strict=True)):
        for n in range(num_n):
            z = pulp.LpVariable(f"z_{k}_{n}", lowBound=0, upBound=1)
            prob += z <= x[e][n]
            prob += z <= x[f][n]
            objective.append(float(w) * z)
    prob += pulp.lpSum(objective)
    hint = relabel_hint(model, hint, prefix) if prefix else hint
    for e in range(num_e):
        for n in range(num_n):
            x[e][n].setInitialValue(1 if hint[e, n] else 0)
    solver = pulp.PULP_CBC_CMD(
        msg=False,
        timeLimit=max(1, int(np.ceil(time_limit_s))),
        threads=workers,
        warmStart=True,
        options=[f"randomSeed {seed + 1}"],
    )
    prob.solve(solver)
    wall = time.perf_counter() - started
    status = pulp.LpStatus[prob.status]
    values = np.array([[(x[e][n].value() or 0.0) > 0.5 for n in range(num_n)] for e in range(num_e)], dtype=bool)
    if status not in ("Optimal",) or not np.array_equal(values.sum(axis=1), model.copies):
        return NodeSolution(hint, "hint", model.kept(hint), None, wall)
    kept = model.kept(values)
    proved = prob.sol_status == pulp.LpSolutionOptimal
    bound = kept if proved else None
    if model.kept(hint) > kept:
        return NodeSolution(hint, "hint", model.kept(hint), bound, wall)
    return NodeSolution(values, "optimal" if proved else "feasible", kept, bound, wall)
