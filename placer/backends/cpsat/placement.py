"""CP-SAT model of node-level expert placement (docs/placement.md, (N1)-(N6)).

x[e, n] = 1 when node n homes expert e; z[(e, f), n] <= x[e, n], x[f, n] for the sparse
co-activation edges; maximise sum w_ef z_efn subject to m_e homes per expert (1 unless spilled),
slots and load caps per node. Nodes with equal slots and caps are interchangeable, so the heaviest
experts may only open nodes in order (symmetry breaking). The greedy assignment is the hint; the
solver's best bound gives the gap.
"""

from __future__ import annotations

import time

import numpy as np
from ortools.sat.python import cp_model

from placer.placement.nodemodel import (
    LOAD_SCALE,
    WEIGHT_SCALE,
    NodeModel,
    NodeSolution,
    relabel_hint,
    symmetric_prefix,
)


def solve_node_model(
    model: NodeModel, hint: np.ndarray, time_limit_s: float, workers: int = 1, seed: int = 0
) -> NodeSolution:
    started = time.perf_counter()
    cp = cp_model.CpModel()
    num_e, num_n = model.num_experts, model.num_nodes
    x = [[cp.new_bool_var(f"x{e}_{n}") for n in range(num_n)] for e in range(num_e)]
    for e in range(num_e):
        cp.add(sum(x[e]) == int(model.copies[e]))
    loads = np.ceil(model.copy_load * LOAD_SCALE).astype(np.int64)
    caps = np.floor(model.node_load_cap * LOAD_SCALE).astype(np.int64)
    for n in range(num_n):
        cp.add(sum(x[e][n] for e in range(num_e)) <= int(model.node_slots[n]))
        cp.add(sum(int(loads[e]) * x[e][n] for e in range(num_e)) <= int(caps[n]))
    prefix = symmetric_prefix(model)
    for e, usable in prefix:
        for n in range(usable, num_n):
            cp.add(x[e][n] == 0)
    weights = np.rint(model.edge_weight * WEIGHT_SCALE).astype(np.int64)
    terms = []
    for (e, f), w in zip(model.edges, weights, strict=True):
        if w <= 0:
            continue
        zs = []
        for n in range(num_n):
            z = cp.new_bool_var("")
            cp.add(z <= x[e][n])
            cp.add(z <= x[f][n])
            zs.append(z)
            terms.append(int(w) * z)
        if model.copies[e] == 1 or model.copies[f] == 1:
            cp.add(sum(zs) <= 1)  # implied by one home (a cut)
    cp.maximize(sum(terms))
    hint = relabel_hint(model, hint, prefix) if prefix else hint
    for e in range(num_e):
        for n in range(num_n):
            cp.add_hint(x[e][n], bool(hint[e, n]))
    solver = cp_model.CpSolver()
    # Deterministic time (with one worker) makes the search the same on every machine; the
    # wall-clock limit is only a guard against a machine far slower than the budget assumes.
    solver.parameters.max_deterministic_time = max(0.01, time_limit_s)
    solver.parameters.max_time_in_seconds = 10.0 * max(0.01, time_limit_s) + 1.0
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.linearization_level = 2
    # CP-SAT's own SIGINT catcher resets SIGINT to the default action when the solve returns, so
    # a later Ctrl-C would kill the process with no output instead of reaching placer's handler
    # (placer.stopping.sigint_stops). The search is short; Ctrl-C is handled when it returns.
    solver.parameters.catch_sigint_signal = False
    status = solver.solve(cp)
    wall = time.perf_counter() - started
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return NodeSolution(hint, "hint", model.kept(hint), None, wall)
    assign = np.array([[solver.boolean_value(x[e][n]) for n in range(num_n)] for e in range(num_e)], dtype=bool)
    kept = model.kept(assign)
    # the bound is on the integer-scaled objective: map it back (rounding weights moves it by < M / scale)
    bound = solver.best_objective_bound / WEIGHT_SCALE + len(model.edges) * num_n * 0.5 / WEIGHT_SCALE
    if model.kept(hint) > kept:  # the hint may violate a rounded cap; keep the better feasible one
        return NodeSolution(hint, "hint", model.kept(hint), bound, wall)
    return NodeSolution(assign, "optimal" if status == cp_model.OPTIMAL else "feasible", kept, bound, wall)
