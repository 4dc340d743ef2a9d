"""Command line: parse, call the API, print. Exit codes: 0 solved, 2 invalid input, 3 infeasible,
4 no plan within the time limit."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from placer import api
from placer.errors import EXIT_INVALID_INPUT, EXIT_NO_PLAN_IN_TIME, InputError
from placer.files import write_atomic

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Plan MoE inference deployments, proven optimal.")
model_app = typer.Typer(no_args_is_help=True, help="Inspect model architectures.")
hardware_app = typer.Typer(no_args_is_help=True, help="The hardware catalogue.")
app.add_typer(model_app, name="model")
app.add_typer(hardware_app, name="hardware")

# Wide enough for the tables when output is piped (rich assumes 80 columns then).
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

F = TypeVar("F", bound=Callable[..., Any])


def handles_input_errors(func: F) -> F:
    """Print an :class:`InputError` as one line per problem and exit 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"[bold red]invalid input[/]\n{exc.message}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INVALID_INPUT) from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
@handles_input_errors
def evaluate(
    instance: Annotated[Path, typer.Argument(help="instance JSON")],
    plan: Annotated[Path, typer.Argument(help="plan JSON")],
    as_json: Annotated[bool, typer.Option("--json", help="print the plan with its figures as JSON")] = False,
) -> None:
    """Compute a plan's memory, TTFT, TPOT, throughput and traffic, and check every SLO."""
    problem, evaluation = api.evaluate_files(instance, plan)
    if as_json:
        emit_json(api.plan_document(evaluation))
        return
    from placer.report.terminal import print_evaluation

    print_evaluation(console, problem, evaluation, f"plan {evaluation.plan.name or plan.name} on {problem.name}")


@app.command()
@handles_input_errors
def simulate(
    instance: Annotated[Path, typer.Argument(help="instance JSON")],
    plan: Annotated[Path, typer.Argument(help="plan JSON")],
    requests: Annotated[int, typer.Option("--requests", help="measured requests (after the warm-up)")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="seed of the arrival and length draws")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="write simulation.json and simulation.png here")] = None,
) -> None:
    """Simulate continuous batching of the plan under the instance's workload: TTFT/TPOT percentiles,
    throughput, and queue and batch over time (a disaggregated plan: both pools and the KV transfer)."""
    from placer.schema import DisaggregatedPlan
    from placer.simulate import simulate as run_simulation
    from placer.simulate_disagg import simulate_disaggregated

    problem = api.load_problem(instance)
    plan_spec = api.load_any_plan(plan)
    api.evaluate_files(instance, plan)  # the plan's own errors, naming the plan file
    if isinstance(plan_spec, DisaggregatedPlan):
        sim = simulate_disaggregated(problem, plan_spec, requests=requests, seed=seed)
    else:
        sim = run_simulation(problem, plan_spec, requests=requests, seed=seed)
    title = f"plan {plan_spec.name or plan.name} on {problem.name}, {sim.kind} workload"
    document = {"instance": problem.name, "plan": plan_spec.name or plan.name, **sim.to_dict()}
    if out is not None:
        from placer.report.simulation import simulation_picture

        simulation_picture(sim, title, out / "simulation")
        write_atomic(out / "simulation.json", json.dumps(document, indent=2) + "\n")
    if as_json:
        emit_json(document)
        return
    from placer.report.simulation import print_simulation

    print_simulation(console, sim, title)


def _numbers(text: str | None, field: str) -> list[float]:
    """A comma-separated list of positive numbers from an option, or an InputError naming it."""
    if not text:
        return []
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError.single(field, f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (v > 0 and v < 1e9) for v in values):
        raise InputError.single(field, f"expected positive numbers below 1e9, got {text!r}")
    return values


@app.command()
@handles_input_errors
def frontier(
    instance: Annotated[Path, typer.Argument(help="instance JSON (its model, hardware, cluster, lengths and SLOs)")],
    tpot_ms: Annotated[
        str | None, typer.Option("--tpot-ms", help="TPOT bounds, e.g. 10,20,50 (default 5 to 100 ms)")
    ] = None,
    demand_rps: Annotated[
        str | None, typer.Option("--demand-rps", help="also: fewest GPUs for each demand, e.g. 1,2,5,10")
    ] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.0, help="seconds per point")] = 120.0,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="points solved in parallel")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the points as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="write frontier.png, .md and .json here")] = None,
    disaggregation: Annotated[Disaggregation | None, typer.Option("--disaggregation", help=DISAGGREGATION_HELP)] = None,
) -> None:
    """Output tokens/s per GPU against tokens/s per user: each point the proven optimum at a TPOT
    bound, with its degrees and concurrency; and GPUs needed against demand."""
    from placer.frontier import DEFAULT_TPOT_MS
    from placer.frontier import frontier as run_frontier
    from placer.report.frontier import print_frontier, write_frontier

    bounds = _numbers(tpot_ms, "--tpot-ms") or list(DEFAULT_TPOT_MS)
    demands = _numbers(demand_rps, "--demand-rps")
    problem = _disaggregated(api.load_problem(instance), disaggregation)
    points = run_frontier(problem, bounds, demands, time_limit_s=time_limit, jobs=jobs)
    written = write_frontier(out, problem.name, points) if out is not None else []
    if as_json:
        emit_json({"instance": problem.name, "points": [p.to_dict() for p in points]})
        return
    print_frontier(console, problem.name, points)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@model_app.command("show")
@handles_input_errors
def model_show(
    model: Annotated[str, typer.Argument(help="model file, shipped model name, or Hugging Face config.json")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Total and active parameters, per-layer weights, KV bytes and FLOPs per token."""
    spec = api.load_model(model)
    if as_json:
        emit_json(api.model_summary(spec))
        return
    from placer.report.terminal import print_model

    print_model(console, spec)


@hardware_app.command("list")
def hardware_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The GPU profiles placer knows, with their figures."""
    profiles = api.hardware_profiles()
    if as_json:
        emit_json([p.model_dump(mode="json") for p in profiles])
        return
    from placer.report.terminal import print_hardware

    print_hardware(console, profiles)


class SchemaKind(str, Enum):
    instance = "instance"
    plan = "plan"
    model = "model"
    hardware = "hardware"
    sweep = "sweep"


@app.command()
def schema(kind: Annotated[SchemaKind, typer.Argument(help="which document")]) -> None:
    """Print the JSON Schema of an input or output document."""
    emit_json(api.json_schema(kind.value))


class Disaggregation(str, Enum):
    off = "off"
    allow = "allow"
    only = "only"


#: ``--disaggregation``: the same option on ``solve``, ``compare`` and ``frontier``.
DISAGGREGATION_HELP = (
    "prefill/decode disaggregation: off, allow (aggregated or two pools, whichever is better) or only; "
    "overrides the instance's objective.disaggregation"
)


def _disaggregated(problem: Any, mode: Disaggregation | None) -> Any:
    from placer.compare import with_disaggregation

    return with_disaggregation(problem, mode.value if mode is not None else None)


class Backend(str, Enum):
    auto = "auto"
    cpsat = "cpsat"
    milp = "milp"
    exhaustive = "exhaustive"


@app.command()
@handles_input_errors
def solve(
    instance: Annotated[Path, typer.Argument(help="instance JSON")],
    backend: Annotated[
        Backend, typer.Option("--backend", help="solver backend (auto: exhaustive branch and bound or CP-SAT by size)")
    ] = Backend.auto,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit", min=0.0, help="seconds for the whole command; the best plan so far and its gap come back"
        ),
    ] = 60.0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="solver threads")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="solver random seed")] = 0,
    max_gpus: Annotated[int | None, typer.Option("--max-gpus", min=1, help="cap the GPU count searched")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="write plan JSON and a Markdown report here")] = None,
    no_timings: Annotated[
        bool, typer.Option("--no-timings", help="leave out the wall-clock 'timings' (output comparable across runs)")
    ] = False,
    disaggregation: Annotated[Disaggregation | None, typer.Option("--disaggregation", help=DISAGGREGATION_HELP)] = None,
) -> None:
    """Find the best plan under the instance's objective, proven optimal or with its gap.

    Exit codes: 0 solved, 2 invalid input, 3 infeasible (with the explanation), 4 no plan in time.
    """
    from placer.stopping import StopToken, sigint_stops

    # The limit counts from here: loading the instance and every step of the solve are inside it.
    token = StopToken.after(time_limit)
    with sigint_stops(token):
        problem = _disaggregated(api.load_problem(instance), disaggregation)
        result = api.solve(problem, backend=backend.value, time_limit_s=None, workers=workers, seed=seed,
                           max_gpus=max_gpus, stop=token)  # fmt: skip
    document = api.result_document(result, problem, timings=not no_timings)
    if out is not None and result.evaluation is not None:
        api.write_outputs(out, problem, result.evaluation, document)
    if as_json:
        emit_json(document)
    else:
        from placer.report.terminal import print_result

        print_result(console, problem, result)
    raise typer.Exit(api.exit_code(result))


@app.command()
@handles_input_errors
def compare(
    instances: Annotated[list[Path], typer.Argument(help="instance JSON file(s)")],
    hardware: Annotated[
        str, typer.Option("--hardware", help="comma-separated profiles ('instance' = the instance's own)")
    ] = "instance,h100-sxm,h200,b200,mi300x",
    out: Annotated[
        Path | None, typer.Option("--out", help="write <out>/<instance>/ plans, reports and pictures")
    ] = None,
    sweep: Annotated[str | None, typer.Option("--sweep", help="an SLO and values, e.g. ttft_s=1,2,5,10")] = None,
    backend: Annotated[Backend, typer.Option("--backend", help="solver backend")] = Backend.auto,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds per solve")] = 60.0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="solver threads per solve")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="solver random seed")] = 0,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, help="solves in parallel (default: CPU count)")] = None,
    no_pictures: Annotated[bool, typer.Option("--no-pictures", help="with --out: skip the PNG/SVG pictures")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison rows as JSON")] = False,
    no_timings: Annotated[
        bool, typer.Option("--no-timings", help="leave out the wall-clock 'timings' (output comparable across runs)")
    ] = False,
    disaggregation: Annotated[Disaggregation | None, typer.Option("--disaggregation", help=DISAGGREGATION_HELP)] = None,
) -> None:
    """Solve each instance on each hardware profile (in parallel processes) and compare the plans.

    Infeasible hardware stays in the table with its reason. Exit 0 when every solve answered
    (infeasible is an answer), 2 on invalid input.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from placer import compare as cmp

    names = cmp.parse_hardware_list(hardware)
    sweep_spec = cmp.parse_sweep(sweep) if sweep else None
    for path in instances:  # every input is checked before the first solve
        api.load_problem(path)
    mode = disaggregation.value if disaggregation is not None else None
    settings = cmp.SolveSettings(
        backend=backend.value, time_limit_s=time_limit, workers=workers, seed=seed, disaggregation=mode
    )
    documents = []
    for path in instances:
        kinds = 2 if (mode or api.load_problem(path).objective.disaggregation) == "allow" else 1  # split: both kinds
        tasks = len(names) * (kinds + (len(sweep_spec[1]) if sweep_spec else 0))
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True, disable=as_json,
        ) as progress:  # fmt: skip
            bar = progress.add_task(f"{path.name}: solving", total=tasks)
            comparison = cmp.compare(
                path, names, settings, sweep_spec, jobs, on_done=lambda task, result, bar=bar: progress.advance(bar)
            )
        document = cmp.comparison_document(comparison, timings=not no_timings)
        documents.append(document)
        if out is not None:
            from placer.report.comparison import write_comparison

            write_comparison(comparison, out, pictures=not no_pictures)
        if not as_json:
            from placer.report.terminal import print_comparison

            print_comparison(console, document)
            if out is not None:
                console.print(f"[dim]written: {out / comparison.instance}/[/]")
    if as_json:
        emit_json(documents if len(documents) > 1 else documents[0])


@app.command("sweep")
@handles_input_errors
def sweep_cmd(
    spec: Annotated[Path, typer.Argument(help="sweep file, YAML or JSON (placer schema sweep)")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write table.csv/.parquet, timings.csv and pictures here (default sweeps/NAME)"),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", min=1, help="local solves in parallel (default: CPU count)")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option("--ray", help="run on Ray: 'auto' (this machine's cluster), 'local' (start one), or an address"),
    ] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="folder of solved points (default <out>/points); reruns skip them")
    ] = None,
    max_solves: Annotated[
        int | None, typer.Option("--max-solves", min=0, help="stop after this many solves; a rerun continues")
    ] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="solve again the points that failed")] = False,
    no_pictures: Annotated[bool, typer.Option("--no-pictures", help="skip cost.png and pareto.png")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome and rows as JSON")] = False,
) -> None:
    """Solve every point of a capacity-planning sweep (models x hardware x engines x demand x SLOs)
    in local processes or on Ray, resumably, and write one table and its pictures.

    Exit 0 when every point has an answer (a failed point is a row with its error), 4 when
    --max-solves left points for a rerun, 130 on Ctrl-C (finished points stay cached)."""
    from placer.executors import LocalExecutor, RayExecutor
    from placer.report.sweep import print_sweep, sweep_document, sweep_progress
    from placer.sweep.spec import load_spec

    sweep_spec = load_spec(spec)
    out = out if out is not None else Path("sweeps") / sweep_spec.name
    if ray is not None:
        executor: Any = RayExecutor(address=ray, cpus_per_task=sweep_spec.solver.workers, local_cpus=jobs)
    else:
        executor = LocalExecutor(jobs) if jobs is not None else LocalExecutor()
    try:
        with sweep_progress(err_console, disable=as_json) as (on_start, on_done):
            outcome = api.sweep(spec, out, executor, cache, max_solves, retry_errors, not no_pictures,
                                on_start=on_start, on_done=on_done)  # fmt: skip
    except KeyboardInterrupt:
        err_console.print("interrupted: the points that finished are cached; rerun to continue", highlight=False)
        raise typer.Exit(130) from None
    finally:
        if isinstance(executor, RayExecutor):
            executor.shutdown()
    if as_json:
        emit_json(sweep_document(outcome))
    else:
        print_sweep(console, outcome)
    if not outcome.complete:
        raise typer.Exit(EXIT_NO_PLAN_IN_TIME)


class Engine(str, Enum):
    vllm = "vllm"
    sglang = "sglang"
    trtllm = "trtllm"
    megatron = "megatron"


@app.command("export")
@handles_input_errors
def export_cmd(
    plan: Annotated[Path, typer.Argument(help="plan JSON (hand-written or from placer solve/compare)")],
    engine: Annotated[Engine, typer.Option("--engine", help="serving engine")],
    instance: Annotated[
        Path | None, typer.Option("--instance", help="instance JSON (default: instances/<plan.instance>.json)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write launch.sh, configs, hostfile, NOTES.md here")] = None,
    hosts: Annotated[str | None, typer.Option("--hosts", help="comma-separated host names, in node order")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the launch as JSON")] = False,
) -> None:
    """Launch arguments for a serving engine from a plan; warns about anything it cannot express.
    A disaggregated plan gets a line per node of every prefill and decode instance, and the router."""
    from placer.export import DisaggExport, export_plan

    data = api.export_input(plan, instance, hosts.split(",") if hosts else ())
    result, paths = export_plan(engine.value, data, out)
    if as_json and isinstance(result, DisaggExport):
        emit_json(result.to_dict())
        return
    if as_json:
        emit_json({"engine": result.engine, "argv": result.argv, "env": result.env, "warnings": result.warnings,
                   "files": sorted(result.files), "sources": result.sources})  # fmt: skip
        return
    from placer.report.terminal import print_export

    print_export(console, result)
    if out is not None:
        console.print(f"[dim]written: {', '.join(str(p) for p in paths)}[/]")


@app.command()
@handles_input_errors
def place(
    instance: Annotated[Path, typer.Argument(help="instance JSON")],
    plan: Annotated[Path, typer.Argument(help="plan JSON whose degrees to place experts for")],
    as_json: Annotated[bool, typer.Option("--json", help="print the placement summary as JSON")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the placed plan and SGLang's expert map here")
    ] = None,
    time_limit: Annotated[
        float, typer.Option("--time-limit", min=0.0, help="seconds for the whole command (Ctrl-C keeps what is placed)")
    ] = 10.0,
    in_service: Annotated[
        Path | None, typer.Option("--from", help="placed plan in service: re-place from its expert maps")
    ] = None,
    max_moves: Annotated[
        int, typer.Option("--max-moves", min=0, help="with --from: expert copies that may move per MoE layer")
    ] = 0,
) -> None:
    """Place experts for a plan's degrees: expert map, host order, balance and traffic vs baselines, gap."""
    from placer.report.place_outputs import place_document, write_outputs
    from placer.report.placement import print_place
    from placer.stopping import StopToken, process_started, sigint_stops

    token = StopToken.after(time_limit, started=process_started())  # the limit counts the start-up too
    with sigint_stops(token):
        outcome = api.place_files(instance, plan, time_limit, token, in_service, max_moves)
    written = write_outputs(outcome, out) if out is not None else []
    if as_json:
        emit_json({**place_document(outcome), "written": [str(p) for p in written]})
        return
    print_place(console, outcome)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@app.command()
@handles_input_errors
def fidelity(
    out: Annotated[Path | None, typer.Option("--out", help="write the Markdown table here")] = None,
) -> None:
    """Predict published deployments (DeepSeek-V3; the broad set of families, engines and GPUs) and compare
    with the measured figures; with --out the predicted-vs-measured picture is written beside the table."""
    from placer.fidelity_broad import render_all

    text, _ = render_all(out)
    if out is not None:
        write_atomic(out, text)
    sys.stdout.write(text)


@app.command()
@handles_input_errors
def calibrate(
    measurements: Annotated[Path, typer.Argument(help="measured kernel times, CSV or JSON")],
    hardware: Annotated[str, typer.Option("--hardware", help="catalogue id or profile JSON to start from")],
    out: Annotated[Path | None, typer.Option("--out", help="write the fitted hardware profile JSON here")] = None,
) -> None:
    """Fit a hardware profile's efficiency factors (MFU, HBM utilisation) to measured kernel times."""
    from placer.calibrate import calibrated_profile
    from placer.loading import load_hardware

    profile, result = calibrated_profile(measurements, load_hardware(hardware, field="--hardware"))
    text = json.dumps(profile.model_dump(mode="json"), indent=2) + "\n"
    for name, value in sorted(result.factors.items()):
        err_console.print(f"{name} = {value:.4f} ({result.counts.get(name, 0)} measurements)", highlight=False)
    if out is not None:
        write_atomic(out, text)
    else:
        sys.stdout.write(text)


def main() -> None:  # pragma: no cover - console entry point
    app()
