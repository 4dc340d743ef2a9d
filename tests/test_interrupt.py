"""Ctrl-C returns the incumbent: a search stopped by SIGINT keeps the best plan found so far,
marked as interrupted and not proven, instead of dying with a traceback."""

from __future__ import annotations

import os
import random
import signal
import threading

import pytest

from placer.api import load_problem
from placer.formulation.data import build_formulation
from placer.result import SolveStatus

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to this process")


def _sigint_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_cpsat_search_stops_on_sigint_and_keeps_its_incumbent():
    from ortools.sat.python import cp_model

    from placer.backends.cpsat.model import solve_interruptibly

    # A permutation with many forbidden sums: first solutions come at once, the proof takes
    # far longer than the 30 s limit on one worker.
    model = cp_model.CpModel()
    n = 60
    x = [model.NewIntVar(0, n - 1, f"x{i}") for i in range(n)]
    model.AddAllDifferent(x)
    rng = random.Random(0)
    for _ in range(200):
        a, b, c = rng.sample(range(n), 3)
        model.Add(x[a] + x[b] != x[c])
    model.Minimize(sum((i % 7 + 1) * x[i] for i in range(n)))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 30
    # Python's own handler, even where the test runner was started with SIGINT ignored (a shell's
    # background job): the interrupt must arrive as KeyboardInterrupt for this test to mean anything.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = _sigint_after(1.0)
    try:
        code, interrupted = solve_interruptibly(solver, model)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert interrupted
    assert code == cp_model.FEASIBLE
    assert solver.WallTime() < 10


def test_exhaustive_scan_returns_best_so_far_on_sigint(monkeypatch):
    from placer.backends import exhaustive

    data = build_formulation(load_problem("instances/mixtral-8x7b-h100.json"))
    real = exhaustive.evaluate_config
    calls = {"n": 0}

    def interrupted_after_half(d, config):
        calls["n"] += 1
        if calls["n"] == 10:  # branch and bound scores 71 of 643 configurations here before its proof
            raise KeyboardInterrupt
        return real(d, config)

    monkeypatch.setattr(exhaustive, "evaluate_config", interrupted_after_half)
    solution = exhaustive.solve(data)
    assert solution.interrupted
    # nothing is proven, but the next configuration's lower bound is a valid bound (optimum: 8 GPUs)
    assert solution.status in (SolveStatus.FEASIBLE, SolveStatus.NO_PLAN)
    assert solution.bound is not None and solution.bound <= 8.0
    if solution.config_index is not None:
        assert solution.terms["min_gpus"] >= 8.0


def test_sigint_during_a_cli_solve_returns_a_plan_with_its_gap():
    """Ctrl-C at any moment of ``placer solve`` on the flagship instance: exit 0, a plan, its status
    and gap. Whatever step the signal lands in (warm start, build, search, placement), a plan must
    come back, so the moments need not be exact: the outcome does not depend on machine speed."""
    import json

    from typer.testing import CliRunner

    from placer.cli import app

    late = []
    previous = signal.signal(signal.SIGINT, lambda *_: late.append(1))  # a signal after the solve lands here
    try:
        for delay in (0.2, 1.0, 3.0):
            timer = _sigint_after(delay)
            try:
                outcome = CliRunner().invoke(
                    app, ["solve", "instances/deepseek-v3-h800.json", "--json", "--time-limit", "120"]
                )
            finally:
                timer.cancel()
            assert outcome.exit_code == 0, outcome.output
            document = json.loads(outcome.stdout)
            assert document["status"] in ("optimal", "feasible")
            assert document["gpus"] >= 64
            assert document["solver"]["gap"] is not None
            if document["status"] == "feasible":
                assert document["search"]["interrupted"] or document["search"]["stopped"]
    finally:
        signal.signal(signal.SIGINT, previous)
