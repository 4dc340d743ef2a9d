"""Limits that hold and plans never lost, pinned without reading the clock: tokens that are already
expired or interrupted, builds stopped after a counted number of configurations, CP-SAT under a
deterministic work limit, the exhaustive scan under a count of configurations scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from placer.api import load_problem
from placer.backends import choose_backend, exhaustive
from placer.formulation.data import build_formulation
from placer.formulation.partition import evaluate_config
from placer.result import SolveStatus
from placer.solve import solve
from placer.stopping import StopToken

ROOT = Path(__file__).resolve().parents[1]
MIXTRAL = ROOT / "instances" / "mixtral-8x7b-h100.json"
DEEPSEEK = ROOT / "instances" / "deepseek-v3-h800.json"


def _expired() -> StopToken:
    return StopToken.after(0.0)


def _interrupted() -> StopToken:
    token = StopToken()
    token.interrupt()
    return token


@pytest.mark.parametrize("make", [_expired, _interrupted], ids=["deadline", "ctrl-c"])
def test_a_command_stopped_at_once_returns_the_warm_start_plan_with_its_gap(make):
    problem = load_problem(DEEPSEEK)
    result = solve(problem, stop=make())
    assert result.status == SolveStatus.FEASIBLE
    assert result.plan is not None and result.evaluation is not None and result.evaluation.feasible
    assert result.plan.gpus == result.search.warm_start_gpus == 192
    # fewest GPUs: the weights alone need 9 H800s (671B FP8 parameters / 76 GB usable each)
    assert result.bound == 9.0
    assert result.gap == pytest.approx((192 - 9) / 192)
    assert result.interrupted == (make is _interrupted)
    assert result.search.stopped is not None


def test_a_build_stopped_half_way_keeps_the_warm_start_plan():
    problem = load_problem(DEEPSEEK)
    asked = {"n": 0}

    class CountingToken(StopToken):
        def should_stop(self) -> bool:  # stops the build after 500 configurations, on any machine
            asked["n"] += 1
            return asked["n"] > 500

        def share(self, fraction, at_most_s=float("inf")):
            return self

    result = solve(problem, stop=CountingToken())
    assert not result.search.formulation_complete
    assert result.status == SolveStatus.FEASIBLE and result.plan is not None
    assert result.plan.gpus == 192


@pytest.mark.parametrize("work", [1e-6, 1e-3, 0.05])
def test_cpsat_under_any_work_limit_returns_a_plan(work):
    """Deterministic time, not wall time: the same stop point on a slow or a fast machine. Either
    CP-SAT's incumbent or the warm start's plan comes back; never 'no plan' while one is known."""
    result = solve(load_problem(MIXTRAL), backend="cpsat", work_limit=work)
    assert result.plan is not None and result.evaluation is not None and result.evaluation.feasible
    assert result.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
    assert result.bound is not None and result.bound <= result.objective
    if result.status == SolveStatus.FEASIBLE:
        assert result.gap is not None


def _full_scan(data):
    """The plain reference: every configuration in index order, lower index wins ties."""
    best = None
    for index, config in enumerate(data.configs):
        scored = evaluate_config(data, config)
        if scored is None:
            continue
        key = tuple(float(f"{v:.9g}") for v in scored[0])
        if best is None or key < best[0]:
            best = (key, index, scored)
    return best


@pytest.mark.parametrize("name", ["moe10b.json", "mixtral-8x7b-h100.json", "ep64-128gpu.json"])
@pytest.mark.parametrize("primary", ["min_gpus", "max_throughput_per_gpu"])
def test_branch_and_bound_finds_the_full_scans_plan(name, primary):
    problem = load_problem(ROOT / "instances" / name)
    objective = problem.objective.model_copy(update={"primary": primary})
    problem = problem.replace(objective=objective)
    data = build_formulation(problem, 16)
    reference = _full_scan(data)
    solution = exhaustive.solve(data)
    assert solution.status == SolveStatus.OPTIMAL
    assert solution.config_index == reference[1]
    assert solution.stage_starts == reference[2][1]


def test_branch_and_bound_stopped_by_work_gives_a_valid_bound():
    data = build_formulation(load_problem(MIXTRAL), 16)
    optimum = exhaustive.solve(data).terms["min_gpus"]
    for scored in (1, 5, 20):
        partial = exhaustive.solve(data, work_limit=scored)
        assert partial.status in (SolveStatus.FEASIBLE, SolveStatus.NO_PLAN, SolveStatus.OPTIMAL)
        assert partial.bound is not None and partial.bound <= optimum
        if partial.config_index is not None:
            assert partial.terms["min_gpus"] >= optimum


def test_auto_picks_the_exhaustive_scan_on_the_shipped_instances():
    for name in ("moe10b.json", "deepseek-v3-h800.json"):
        data = build_formulation(load_problem(ROOT / "instances" / name), 64)
        assert choose_backend("auto", data)[0] == "exhaustive"
    assert choose_backend("cpsat", data)[0] == "cpsat"


def test_cbc_summary_is_read_from_its_log(tmp_path):
    pytest.importorskip("pulp")
    from placer.backends.milp.model import read_cbc_log

    log = tmp_path / "cbc.log"
    log.write_text(
        "Cbc0010I After 1000 nodes, 12 on tree, 64 best solution, best possible 9\n"
        "Result - Stopped on time limit\n\nObjective value:                64.00000000\n"
        "Lower bound:                    9.000\nGap:                            6.11\n"
    )
    summary = read_cbc_log(str(log))
    assert summary is not None and summary.lower_bound == 9.0 and not summary.proven_infeasible
    log.write_text("Result - Problem proven infeasible\n\nNo feasible solution found\n")
    assert read_cbc_log(str(log)).proven_infeasible


def test_milp_calls_an_infeasible_instance_infeasible_not_a_timeout():
    from placer.backends.milp import solve as milp_solve

    data = build_formulation(load_problem(ROOT / "instances" / "moe10b-decode.json"), 8)
    assert milp_solve(data, time_limit_s=None).status == SolveStatus.INFEASIBLE


def test_a_stopped_build_still_searches_what_it_costed():
    """The build stops after 2,000 configurations (counted, not timed); the search then runs on
    those and may beat the warm start, but nothing is proven about the rest: feasible, bound 0."""
    problem = load_problem(DEEPSEEK)
    problem = problem.replace(objective=problem.objective.model_copy(update={"primary": "max_throughput_per_gpu"}))

    class BuildStopsAfter(StopToken):
        shares = 0

        def share(self, fraction, at_most_s=float("inf")):
            type(self).shares += 1
            if type(self).shares == 1:  # the build's token
                asked = {"n": 0}
                child = StopToken()

                def should_stop() -> bool:
                    asked["n"] += 1
                    return asked["n"] > 2000

                child.should_stop = should_stop  # type: ignore[method-assign]
                return child
            return StopToken()

    warm_only = solve(problem, stop=_expired())
    result = solve(problem, stop=BuildStopsAfter())
    assert not result.search.formulation_complete
    assert result.status == SolveStatus.FEASIBLE and result.evaluation.feasible
    assert result.bound == 0.0 and result.gap == 1.0
    assert result.objective <= warm_only.objective


def test_sigint_handler_installed_for_the_command_and_restored_after():
    import signal

    from placer.stopping import sigint_stops

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        token = StopToken()
        with sigint_stops(token):
            assert signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_IGN)
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C only sets the flag
            assert token.interrupted
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job: SIGINT stays ignored
        with sigint_stops(StopToken()):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
