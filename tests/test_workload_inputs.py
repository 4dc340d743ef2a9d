"""Workload inputs beyond fixed lengths and Poisson rates: length histograms and files, arrival
traces and a demand in output tokens/s (``placer/schema/workload.py``, ``placer/workload_files.py``).

Each form is checked where it acts: the analytic model's means and rate, the simulator's samples and
replay, and ``placer solve`` sizing for a demand; every bad input is an InputError naming the field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from placer.errors import InputError
from placer.problem import Problem, load_problem
from placer.schema import Plan, Workload
from placer.serving import evaluate_serving, serving_point
from placer.simulate import replica_arrivals, simulate, workload_lengths
from placer.solve import solve
from placer.workload_files import resolve_workload_files

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
MIXTRAL = ROOT / "instances" / "mixtral-8x7b-h100-serving.json"
TRACE = DATA / "serving_trace.csv"
LENGTHS = DATA / "prompt_lengths.txt"


def mixtral_plan(replicas: int = 4) -> Plan:
    return Plan.model_validate(
        {
            "schema_version": "placer.plan/1",
            "name": f"mixtral-tp2-x{replicas}",
            "gpus": 2 * replicas,
            "nodes": 1,
            "parallelism": {"pp": 1, "tp": 2, "dp_attn": 1, "ep": 1, "tp_moe": 2, "replicas": replicas},
            "stages": [{"layers": [0, 31]}],
        }
    )


@pytest.fixture(scope="module")
def mixtral() -> Problem:
    return load_problem(MIXTRAL)


def rate_workload(problem: Problem, **fields: object) -> Workload:
    """The instance's lengths as a ``rate`` workload, with ``fields`` on top."""
    data = problem.workload.model_dump(exclude_unset=True)
    for name in ("concurrency", "batch_size"):
        data.pop(name, None)
    return Workload.model_validate({**data, "kind": "rate", **fields})


# -- lengths -----------------------------------------------------------------------------------


def test_histogram_with_the_same_mean_gives_the_same_analytic_figures(mixtral):
    """The analytic model takes a distribution at its mean: a histogram of mean 3,000 on [2,000,
    4,000] gives the TTFT and TPOT of ``prompt_tokens.mean = 3000``; the KV peak stays at max."""
    plan = mixtral_plan()
    prompt = {"min": 2000, "max": 4000}
    by_mean = rate_workload(mixtral, rate_rps=8.0, prompt_tokens={**prompt, "mean": 3000})
    by_hist = rate_workload(
        mixtral,
        rate_rps=8.0,
        prompt_tokens=prompt,
        prompt_length_distribution={"histogram": [[2000, 1], [3000, 2], [4000, 1]]},
        output_length_distribution={"histogram": [[500, 3.5]]},
    )
    assert by_hist.serving_prompt_tokens == 3000 and by_hist.serving_output_tokens == 500
    a = serving_point(mixtral.replace(workload=by_mean), plan)
    b = serving_point(mixtral.replace(workload=by_hist), plan)
    assert a.stable and b.stable
    assert b.tpot_s == pytest.approx(a.tpot_s, rel=1e-12) and b.ttft_s == pytest.approx(a.ttft_s, rel=1e-12)
    assert b.kv_capacity_tokens == a.kv_capacity_tokens
    # a heavier histogram moves the figures the way a longer prompt does
    heavy = rate_workload(
        mixtral, rate_rps=8.0, prompt_tokens=prompt, prompt_length_distribution={"histogram": [[4000, 3], [2000, 1]]}
    )
    assert heavy.serving_prompt_tokens == 3500
    c = serving_point(mixtral.replace(workload=heavy), plan)
    assert c.ttft_s > a.ttft_s and c.tpot_s > a.tpot_s


def test_the_simulator_samples_the_histogram(mixtral):
    workload = rate_workload(
        mixtral,
        rate_rps=8.0,
        prompt_tokens={"min": 1000, "max": 4000},
        prompt_length_distribution={"histogram": [[1000, 1], [2500, 3], [4000, 6]]},
        output_length_distribution={"histogram": [[100, 1], [500, 1]]},
    )
    draw = workload_lengths(workload)
    prompts, outputs = draw(np.random.default_rng(3), 20_000)
    assert set(np.unique(prompts)) == {1000, 2500, 4000} and set(np.unique(outputs)) == {100, 500}
    shares = [np.mean(prompts == v) for v in (1000, 2500, 4000)]
    assert shares == pytest.approx([0.1, 0.3, 0.6], abs=0.015)
    assert np.mean(outputs == 500) == pytest.approx(0.5, abs=0.015)
    again, _ = draw(np.random.default_rng(3), 20_000)
    assert np.array_equal(prompts, again)  # seeded: the same draws every run


def test_lengths_file_relative_to_the_instance(tmp_path):
    instance = json.loads(MIXTRAL.read_text())
    instance["model"] = str(ROOT / instance["model"])
    instance["workload"] = {
        "kind": "rate",
        "rate_rps": 4.0,
        "prompt_tokens": {"min": 2000, "max": 4000},
        "output_tokens": 500,
        "prompt_length_distribution": {"file": "lengths.txt"},
    }
    (tmp_path / "lengths.txt").write_text(LENGTHS.read_text())
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(instance))
    problem = load_problem(path)
    dist = problem.workload.prompt_length_distribution
    values = [int(line) for line in LENGTHS.read_text().splitlines() if line and not line.startswith("#")]
    assert Path(dist.file) == (tmp_path / "lengths.txt").resolve()
    assert dist.histogram == [(v, float(values.count(v))) for v in sorted(set(values))]
    assert problem.workload.serving_prompt_tokens == pytest.approx(np.mean(values))
    # a JSON list reads the same
    (tmp_path / "lengths.json").write_text(json.dumps(values))
    instance["workload"]["prompt_length_distribution"] = {"file": "lengths.json"}
    path.write_text(json.dumps(instance))
    assert load_problem(path).workload.prompt_length_distribution.histogram == dist.histogram


# -- arrival traces ----------------------------------------------------------------------------


def _trace_columns() -> np.ndarray:
    return np.loadtxt(TRACE, delimiter=",", comments="#", skiprows=2)


@pytest.fixture(scope="module")
def traced(mixtral) -> Problem:
    workload = rate_workload(
        mixtral, arrival_trace={"file": "tests/data/serving_trace.csv"}, prompt_tokens={"min": 1000, "max": 4000}
    )
    return mixtral.replace(workload=resolve_workload_files(workload, ROOT))


def test_trace_mean_rate_and_lengths_feed_the_analytic_model(traced):
    columns = _trace_columns()
    times = columns[:, 0]
    rate = (times.size - 1) / (times[-1] - times[0])
    w = traced.workload
    assert w.serving_rate_rps == pytest.approx(rate, rel=1e-12)
    assert w.serving_prompt_tokens == pytest.approx(columns[:, 1].mean())
    assert w.serving_output_tokens == pytest.approx(columns[:, 2].mean())
    point = serving_point(traced, mixtral_plan())
    assert point.stable and point.requests_per_s == pytest.approx(rate, rel=1e-6)


def test_trace_replay_is_round_robin_and_deterministic(traced):
    plan = mixtral_plan()
    arrivals, notes = replica_arrivals(traced.workload, 4, 2000)
    times = _trace_columns()[:, 0]
    assert arrivals.kind == "trace" and arrivals.times_s == pytest.approx(tuple(times[0::4] - times[0]))
    assert "round-robin" in notes[0]
    prompts, outputs = workload_lengths(traced.workload, 0, 4)(np.random.default_rng(0), 60)
    assert prompts.tolist() == _trace_columns()[0::4, 1].astype(int).tolist()
    assert outputs.tolist() == _trace_columns()[0::4, 2].astype(int).tolist()
    first, second = simulate(traced, plan, seed=1), simulate(traced, plan, seed=2)
    assert first.run.ttft_s.size == 60  # the 60 arrivals of replica 0, every one measured
    # nothing is drawn at random in a replay with lengths: any seed gives the same figures
    assert np.array_equal(first.run.ttft_s, second.run.ttft_s)
    assert np.array_equal(first.run.tpot_s, second.run.tpot_s)


def test_trace_without_lengths_draws_from_the_distribution(mixtral):
    times = [0.0, 0.5, 0.6, 1.4, 2.0, 2.1, 3.0, 3.3]
    workload = rate_workload(
        mixtral,
        arrival_trace={"arrival_s": times},
        prompt_tokens={"min": 2000, "max": 4000},
        prompt_length_distribution={"histogram": [[2000, 1], [4000, 1]]},
    )
    assert workload.serving_rate_rps == pytest.approx(7 / 3.3)
    assert workload.serving_prompt_tokens == 3000
    run = simulate(mixtral.replace(workload=workload), mixtral_plan(1), seed=0).run
    assert run.ttft_s.size == 8


# -- demand ------------------------------------------------------------------------------------


def test_demand_converts_to_a_rate_and_min_gpus_sizes_for_it(mixtral):
    objective = mixtral.objective.model_copy(update={"primary": "min_gpus", "tie_breaks": ["max_throughput_per_gpu"]})
    workload = rate_workload(
        mixtral, demand_output_tokens_per_s=3000.0, output_length_distribution={"histogram": [[250, 1], [500, 3]]}
    )
    osl = (250 + 3 * 500) / 4
    assert workload.serving_rate_rps == pytest.approx(3000.0 / osl)
    problem = mixtral.replace(workload=workload, objective=objective)
    result = solve(problem, backend="exhaustive")
    assert result.status.name == "OPTIMAL"
    point = result.evaluation.serving
    assert point.stable and point.requests_per_s * osl == pytest.approx(3000.0)
    assert all(check.slack >= -1e-9 for check in result.evaluation.slo)
    # one replica fewer of the chosen shape no longer serves the demand within the SLOs
    par = result.plan.parallelism
    if par.replicas > 1:
        fewer = result.plan.model_copy(
            update={
                "gpus": result.plan.gpus - result.plan.gpus // par.replicas,
                "parallelism": par.model_copy(update={"replicas": par.replicas - 1}),
            }
        )
        assert any(check.slack < 0 for check in evaluate_serving(problem, fewer).slo)
    # a larger demand needs at least as many GPUs
    bigger = mixtral.replace(
        workload=workload.model_copy(update={"demand_output_tokens_per_s": 6000.0}), objective=objective
    )
    assert solve(bigger, backend="exhaustive").evaluation.gpus >= result.evaluation.gpus


# -- bad inputs --------------------------------------------------------------------------------

PROMPT = {"min": 1000, "max": 4000}
BAD_WORKLOADS = [
    ({"rate_rps": 1.0, "demand_output_tokens_per_s": 10.0}, "demand_output_tokens_per_s"),
    ({}, "rate_rps"),
    ({"rate_rps": 1.0, "arrival_trace": {"arrival_s": [0, 1]}}, "arrival_trace"),
    ({"kind": "concurrency", "concurrency": 4, "demand_output_tokens_per_s": 10.0}, "demand_output_tokens_per_s"),
    (
        {"kind": "burst", "batch_size": 4, "prompt_length_distribution": {"histogram": [[1000, 1]]}},
        "prompt_length_distribution",
    ),
    ({"rate_rps": 1.0, "prompt_length_distribution": {"histogram": [[1000, -1]]}}, "prompt_length_distribution"),
    ({"rate_rps": 1.0, "prompt_length_distribution": {"histogram": [[1000, 0]]}}, "prompt_length_distribution"),
    ({"rate_rps": 1.0, "prompt_length_distribution": {"histogram": []}}, "prompt_length_distribution"),
    (
        {"rate_rps": 1.0, "prompt_length_distribution": {"histogram": [[1000, 1], [1000, 2]]}},
        "prompt_length_distribution",
    ),
    ({"rate_rps": 1.0, "prompt_length_distribution": {"histogram": [[5000, 1]]}}, "prompt_length_distribution"),
    ({"rate_rps": 1.0, "prompt_length_distribution": {"histogram": [[20_000_000, 1]]}}, "prompt_length_distribution"),
    ({"rate_rps": 1.0, "output_length_distribution": {"histogram": [[900, 1]]}}, "output_length_distribution"),
    ({"rate_rps": 1.0, "prompt_length_distribution": {}}, "prompt_length_distribution"),
    (
        {"rate_rps": 1.0, "output_tokens_mean": 200.0, "output_length_distribution": {"histogram": [[100, 1]]}},
        "output_length_distribution",
    ),
    ({"arrival_trace": {"arrival_s": [0, 2, 1]}}, "arrival_trace"),
    ({"arrival_trace": {"arrival_s": [1, 1]}}, "arrival_trace"),
    ({"arrival_trace": {"arrival_s": [0, 1], "prompt_tokens": [1000, 1000]}}, "arrival_trace"),
    ({"arrival_trace": {"arrival_s": [0, 1], "prompt_tokens": [1000], "output_tokens": [5]}}, "arrival_trace"),
    ({"arrival_trace": {"arrival_s": [0, 1], "prompt_tokens": [1000, 9000], "output_tokens": [5, 5]}}, "arrival_trace"),
]


@pytest.mark.parametrize(("fields", "named"), BAD_WORKLOADS)
def test_bad_workload_fields_name_the_field(fields, named):
    data = {"kind": "rate", "prompt_tokens": PROMPT, "output_tokens": 500, **fields}
    from placer.validation import validate

    with pytest.raises(InputError) as err:
        validate(Workload, data, prefix="workload.")
    assert f"workload.{named}" in str(err.value), str(err.value)


BAD_FILES = [
    ("prompt_length_distribution", "missing.txt", None, "file not found"),
    ("prompt_length_distribution", "lengths.txt", "1000\nabc\n", "line 2"),
    ("prompt_length_distribution", "lengths.txt", "1000\n1500.5\n", "positive integer"),
    ("prompt_length_distribution", "lengths.txt", "# nothing\n", "no lengths"),
    ("prompt_length_distribution", "lengths.txt", "1000\n9000\n", "outside prompt_tokens"),
    ("prompt_length_distribution", "lengths.json", '{"a": 1}', "JSON list"),
    ("arrival_trace", "trace.csv", "0,1000,10\n1,1000\n", "line 2"),
    ("arrival_trace", "trace.csv", "0\n1,1000,10\n", "some lines only"),
    ("arrival_trace", "trace.csv", "0\n2\n1\n", "non-decreasing"),
    ("arrival_trace", "trace.csv", "0\nnan\n", "not finite"),
    ("arrival_trace", "trace.csv", "arrival_s,prompt\n0\n", "header"),
    ("arrival_trace", "trace.json", '[{"arrival_s": 0, "when": 1}]', "keys"),
]


def _instance_with(tmp_path: Path, field: str, filename: str, content: str | None) -> Path:
    instance = json.loads(MIXTRAL.read_text())
    instance["model"] = str(ROOT / instance["model"])
    workload = {"kind": "rate", "prompt_tokens": PROMPT, "output_tokens": 500, field: {"file": filename}}
    if field != "arrival_trace":
        workload["rate_rps"] = 1.0
    instance["workload"] = workload
    if content is not None:
        (tmp_path / filename).write_text(content)
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(instance))
    return path


@pytest.mark.parametrize(("field", "filename", "content", "says"), BAD_FILES)
def test_bad_files_name_the_field_and_file(tmp_path, field, filename, content, says):
    path = _instance_with(tmp_path, field, filename, content)
    with pytest.raises(InputError) as err:
        load_problem(path)
    text = str(err.value)
    assert f"workload.{field}" in text and says in text, text


def test_cli_exit_2_for_a_bad_lengths_file(tmp_path):
    instance = _instance_with(tmp_path, "prompt_length_distribution", "lengths.txt", "1000\n-3\n")
    plan = tmp_path / "plan.json"
    plan.write_text(mixtral_plan().model_dump_json())
    done = subprocess.run(
        [sys.executable, "-m", "placer", "evaluate", str(instance), str(plan)], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert "workload.prompt_length_distribution.file" in done.stderr and "Traceback" not in done.stderr
