"""Capacity-planning sweeps: grid expansion and keys, input errors, the same table from every
executor (local in this process, two local processes, a real local Ray instance), resuming after a
work limit and after a kill, failed points as rows, and the Pareto / cheapest-per-demand analysis.

Every solve runs without a wall-clock limit on tiny instances (moe10b, a few hundred ms each), so no
assertion depends on the machine's speed; resuming is checked by counting solves, never by timing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import placer
from placer import api
from placer.cli import app
from placer.compare import SolveSettings, compare, comparison_document
from placer.errors import InputError
from placer.executors import LocalExecutor, RayExecutor
from placer.sweep import point as point_module
from placer.sweep.analysis import cheapest_by_demand, pareto_front
from placer.sweep.grid import expand
from placer.sweep.run import run_sweep
from placer.sweep.spec import SweepSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "instances" / "sweeps" / "small.yaml"
MOE10B = ROOT / "instances" / "moe10b.json"

#: moe10b served at a rate: fewest GPUs for the demand (as in instances/sweeps/small.yaml)
RATE = {
    "workload.kind": "rate",
    "slo.min_prefill_tokens_per_ms_per_gpu": None,
    "slo.ttft_s": 2.0,
    "slo.tpot_ms": 50.0,
    "objective.primary": "min_gpus",
    "objective.throughput_phase": "decode",
}


def write_spec(folder: Path, axes: dict, name: str = "t", **extra: object) -> Path:
    spec = {"schema_version": "placer.sweep/1", "name": name, "base": str(MOE10B), "set": RATE, "axes": axes,
            "solver": {"time_limit_s": None}, **extra}  # fmt: skip
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


class CountingSolve:
    """Stands in for placer.solve.solve inside the worker function (in this process): counts the
    solves and can make chosen hardware fail."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.hardware: list[str] = []
        self.fail_on = fail_on
        self.real = point_module.solve

    def __call__(self, problem, **kwargs):  # type: ignore[no-untyped-def]
        self.hardware.append(problem.hardware.name)
        if problem.hardware.name == self.fail_on:
            raise RuntimeError(f"no solver for {problem.hardware.name} today")
        return self.real(problem, **kwargs)


# --- the grid -------------------------------------------------------------------------------------


def test_grid_order_inputs_and_keys(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"hardware": ["instance", "seed-400tf", "h200"], "demand": [1000, 3000]})
    spec = load_spec(path)
    points = expand(spec, path)
    assert [p.inputs for p in points[:3]] == [
        {"hardware": "instance", "demand": 1000},
        {"hardware": "instance", "demand": 3000},
        {"hardware": "seed-400tf", "demand": 1000},
    ]  # first axis slowest
    assert [p.index for p in points] == list(range(6))
    assert points[3].problem.hardware.name == "seed-400tf" and points[4].problem.hardware.name == "h200"
    assert points[5].problem.workload.demand_output_tokens_per_s == 3000
    assert points[0].problem.workload.kind == "rate" and points[0].problem.slo.min_prefill_tokens_per_ms_per_gpu is None
    # 'instance' is the instance's own seed-400tf: the same resolved instance, the same key
    assert points[0].key == points[2].key and points[1].key == points[3].key
    assert len({p.key for p in points}) == 4
    # the key moves with the solver settings and with placer's version
    reseeded = SweepSpec.model_validate({**spec.model_dump(), "solver": {"time_limit_s": None, "seed": 1}})
    assert expand(reseeded, path)[0].key != points[0].key
    old = placer.__version__
    try:
        placer.__version__ = old + ".post1"
        assert expand(spec, path)[0].key != points[0].key
    finally:
        placer.__version__ = old


def test_model_axis_and_several_instances(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"model": ["moe10b", "moe10b-e64"], "demand": [1000]})
    points = expand(load_spec(path), path)
    assert [p.problem.model.name for p in points] == ["moe10b", "moe10b-e64"]
    spec = {"schema_version": "placer.sweep/1", "name": "two", "instances": [str(MOE10B), "../moe10b-decode.json"],
            "axes": {"slo.ttft_s": [5.0, 10.0]}}  # fmt: skip
    two = ROOT / "instances" / "sweeps" / "two.json"  # relative paths are read next to the sweep file
    points = expand(SweepSpec.model_validate(spec), two)
    assert [(p.inputs["instance"], p.problem.slo.ttft_s) for p in points] == [
        (str(MOE10B), 5.0), (str(MOE10B), 10.0), ("../moe10b-decode.json", 5.0), ("../moe10b-decode.json", 10.0),
    ]  # fmt: skip
    assert points[2].problem.name == "moe10b-decode"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"axes": {"slo.tpot_msx": [1.0]}}, "slo.tpot_msx"),  # a field the instance does not have
        ({"axes": {"colour": [1]}}, "axes"),  # not an axis at all
        ({"axes": {"hardware": ["h300"]}}, "axes.hardware"),
        ({"axes": {"demand": [-5]}}, "workload.demand_output_tokens_per_s"),
        ({"axes": {"demand": [5, 5]}}, "axes"),
        ({"instances": ["x.json"]}, "base"),  # both base and instances
        ({"base": "missing.json"}, "base"),
        ({"solver": {"workers": 0}}, "solver.workers"),
    ],
)
def test_bad_sweep_files_are_input_errors_naming_the_field(tmp_path: Path, change: dict, named: str) -> None:
    spec = {"schema_version": "placer.sweep/1", "name": "bad", "base": str(MOE10B), "set": RATE,
            "axes": {"demand": [1000]}, **change}  # fmt: skip
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(InputError) as info:
        run_sweep(load_spec(path), path, tmp_path / "out")
    assert named in info.value.message
    assert not (tmp_path / "out").exists()  # nothing half-written
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output and named in result.output


def test_unreadable_sweep_files_and_a_missing_ray_are_input_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\naxes: [\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["sweep", str(broken)])
    assert result.exit_code == 2 and "not valid YAML" in result.output and "Traceback" not in result.output
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(InputError, match="one object"):
        load_spec(listed)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(InputError, match=r"--ray: Ray is not installed; pip install 'placer\[ray\]'"):
        list(RayExecutor("local").map_unordered(str, [1]))


def test_schema_sweep() -> None:
    result = CliRunner().invoke(app, ["schema", "sweep"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert {"base", "instances", "set", "axes", "solver"} <= set(schema["properties"])


# --- the same table whichever executor ran it -------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():  # type: ignore[no-untyped-def]
    """A real local Ray instance with two CPUs, started here and shut down after the module."""
    ray = pytest.importorskip("ray")  # the test extra installs it; a bare install skips
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_local_and_ray_give_the_same_table(tmp_path: Path, ray_local) -> None:  # type: ignore[no-untyped-def]
    assert ray_local.cluster_resources().get("CPU") == 2.0
    pq = pytest.importorskip("pyarrow.parquet")
    runs = {
        "local1": LocalExecutor(jobs=1),
        "local2": LocalExecutor(jobs=2),
        "ray": RayExecutor(),  # the instance the fixture started; one task per point, 1 CPU each
    }
    outcomes = {name: api.sweep(SMALL, tmp_path / name, executor) for name, executor in runs.items()}
    for outcome in outcomes.values():
        assert outcome.complete and len(outcome.solved) == len(outcome.points) >= 12 and not outcome.cached
    columns, rows = outcomes["local1"].table()
    assert [r["point"] for r in rows] == list(range(12))
    assert all(r["status"] == "optimal" and r["gap"] == 0.0 for r in rows)
    reference = (tmp_path / "local1" / "table.csv").read_bytes()
    reference_parquet = pq.read_table(tmp_path / "local1" / "table.parquet")
    assert reference_parquet.column_names == columns
    for name in ("local2", "ray"):
        assert (tmp_path / name / "table.csv").read_bytes() == reference, name
        assert pq.read_table(tmp_path / name / "table.parquet").equals(reference_parquet), name
    # finish order differs between executors, the table does not; wall times live in timings.csv
    timings = (tmp_path / "ray" / "timings.csv").read_text().splitlines()
    assert timings[0] == "point,key,solve_wall_s,solved_this_run" and len(timings) == 13
    assert "wall" not in ",".join(columns)
    # the demand sweep's headline figures are consistent: cost = GPUs x price / served tokens
    for row in rows:
        expected = row["gpus"] * row["price_per_gpu_hour_usd"] / (row["demand_output_tokens_per_s"] * 3600) * 1e6
        assert row["usd_per_million_output_tokens"] == pytest.approx(expected, rel=1e-9)
    assert (tmp_path / "ray" / "cost.png").stat().st_size > 0 and (tmp_path / "ray" / "pareto.png").stat().st_size > 0


def test_compare_runs_on_the_same_executors(ray_local) -> None:  # type: ignore[no-untyped-def]
    settings = SolveSettings(time_limit_s=None, max_gpus=4)
    local = compare(MOE10B, ["instance", "h100-sxm"], settings, jobs=1)
    on_ray = compare(MOE10B, ["instance", "h100-sxm"], settings, executor=RayExecutor())
    assert comparison_document(on_ray, timings=False) == comparison_document(local, timings=False)


def test_cli_on_ray(tmp_path: Path, ray_local) -> None:  # type: ignore[no-untyped-def]
    """``--ray`` joins the Ray instance this process runs (the fixture's) and leaves it running."""
    path = write_spec(tmp_path, {"hardware": ["h100-sxm", "mi300x"], "demand": [1000]})
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "--ray", "local", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["solved_this_run"] == 2 and [r["status"] for r in document["rows"]] == ["optimal"] * 2
    assert ray_local.is_initialized()


# --- resuming ---------------------------------------------------------------------------------------


def test_a_work_limit_then_a_rerun_solves_only_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_spec(tmp_path, {"hardware": ["h100-sxm", "h200", "mi300x"], "demand": [1000, 20000]})
    counter = CountingSolve()
    monkeypatch.setattr(point_module, "solve", counter)
    out = tmp_path / "out"
    first = api.sweep(path, out, LocalExecutor(1), max_solves=4)
    assert len(counter.hardware) == 4 and not first.complete
    assert not (out / "table.csv").exists()  # no table until every point has an answer
    assert len(list((out / "points").glob("*.json"))) == 4
    second = api.sweep(path, out, LocalExecutor(1))
    assert len(counter.hardware) == 6  # only the two points left
    assert set(second.cached) == set(first.solved) and not set(second.solved) & set(first.solved)
    assert second.complete and (out / "table.csv").is_file()
    table = (out / "table.csv").read_bytes()
    third = api.sweep(path, out, LocalExecutor(1))
    assert len(counter.hardware) == 6 and not third.solved and (out / "table.csv").read_bytes() == table
    # a fresh sweep without the cache gives the same table
    assert api.sweep(path, tmp_path / "fresh", LocalExecutor(1)).complete
    assert (tmp_path / "fresh" / "table.csv").read_bytes() == table


def test_killing_a_sweep_and_rerunning_solves_only_the_remaining_points(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"hardware": ["h100-sxm", "h200"], "demand": [1000, 4000, 16000, 64000]})
    out = tmp_path / "out"
    points = out / "points"
    command = [sys.executable, "-m", "placer", "sweep", str(path), "--out", str(out), "--jobs", "1", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300  # a guard against a hang only; the test waits on files, not time
        while len(list(points.glob("*.json"))) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the sweep finished before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    kept = {p.stem for p in points.glob("*.json")}
    assert 3 <= len(kept) < 8 and not (out / "table.csv").exists()
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out), "--jobs", "1", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["complete"] and document["points"] == 8
    assert document["cached"] == len(kept) and document["solved_this_run"] == 8 - len(kept)
    timings = [line.split(",") for line in (out / "timings.csv").read_text().splitlines()[1:]]
    solved_now = {key for _, key, _, fresh in timings if fresh == "true"}
    assert solved_now == {key for _, key, _, _ in timings} - kept


# --- failures ---------------------------------------------------------------------------------------


def test_a_failed_point_is_a_row_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_spec(tmp_path, {"hardware": ["h100-sxm", "h200"], "demand": [1000, 20000]})
    counter = CountingSolve(fail_on="h200")
    monkeypatch.setattr(point_module, "solve", counter)
    out = tmp_path / "out"
    outcome = api.sweep(path, out, LocalExecutor(1))
    assert outcome.complete and [p.index for p in outcome.failed] == [2, 3]
    _, rows = outcome.table()
    assert [r["status"] for r in rows] == ["optimal", "optimal", "error", "error"]
    assert rows[2]["error"].startswith("RuntimeError: no solver for h200 today") and rows[2]["gpus"] is None
    assert rows[0]["error"] is None and rows[0]["gpus"] >= 1
    assert "no solver for h200" in (out / "table.csv").read_text()
    # a rerun keeps the failures (a deterministic error fails again); --retry-errors solves them again
    counter.fail_on = None
    api.sweep(path, out, LocalExecutor(1))
    assert len(counter.hardware) == 4
    retried = api.sweep(path, out, LocalExecutor(1), retry_errors=True)
    assert counter.hardware[4:] == ["h200", "h200"] and not retried.failed


def test_cli_work_limit_exits_4_and_the_rerun_finishes(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {"hardware": ["h100-sxm", "h200"], "demand": [1000]})
    args = ["sweep", str(path), "--out", str(tmp_path / "out"), "--jobs", "1"]
    first = CliRunner().invoke(app, [*args, "--max-solves", "1"])
    assert first.exit_code == 4 and "1 not solved yet" in first.output
    second = CliRunner().invoke(app, [*args, "--json"])
    assert second.exit_code == 0, second.output
    document = json.loads(second.output)
    assert (document["solved_this_run"], document["cached"], document["complete"]) == (1, 1, True)
    assert [row["hardware"] for row in document["rows"]] == ["h100-sxm", "h200"]


def test_a_worker_that_dies_is_a_row_too() -> None:
    """An executor error (a lost worker, a task the pool could not run) comes back as an error."""
    finished = list(LocalExecutor(2).map_unordered(os._exit, [3, 4]))  # each worker process exits at once
    assert sorted(i for i, _, _ in finished) == [0, 1]
    assert all(value is None and error is not None for _, value, error in finished)


# --- what the pictures plot ------------------------------------------------------------------------


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(10.0, 100.0), (20.0, 80.0), (15.0, 70.0), (30.0, 80.0), (40.0, 10.0), (5.0, 100.0)]
    # (20, 80) is beaten by (30, 80); (15, 70) by (20, 80); (5, 100) ties (10, 100) on y with less x
    assert pareto_front(points) == [0, 3, 4]
    assert pareto_front([]) == []


def test_cheapest_by_demand_takes_the_cheapest_plan_at_each_demand() -> None:
    rows = [
        {"status": "optimal", "gpus": 2, "hardware_name": "a", "demand_output_tokens_per_s": 10.0,
         "usd_per_million_output_tokens": 3.0},
        {"status": "optimal", "gpus": 1, "hardware_name": "a", "demand_output_tokens_per_s": 10.0,
         "usd_per_million_output_tokens": 2.0},
        {"status": "infeasible", "gpus": None, "hardware_name": "a", "demand_output_tokens_per_s": 5.0,
         "usd_per_million_output_tokens": None},
        {"status": "feasible", "gpus": 4, "hardware_name": "b", "demand_output_tokens_per_s": 5.0,
         "usd_per_million_output_tokens": 7.0},
    ]  # fmt: skip
    assert cheapest_by_demand(rows, ("hardware_name",)) == {("a",): [(10.0, 2.0)], ("b",): [(5.0, 7.0)]}
