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
from placer.errors import EXIT_INVALID_INPUT, InputError

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


@app.command()
def schema(kind: Annotated[SchemaKind, typer.Argument(help="which document")]) -> None:
    """Print the JSON Schema of an input or output document."""
    emit_json(api.json_schema(kind.value))


class Backend(str, Enum):
    cpsat = "cpsat"
    milp = "milp"
    exhaustive = "exhaustive"


@app.command()
@handles_input_errors
def solve(
    instance: Annotated[Path, typer.Argument(help="instance JSON")],
    backend: Annotated[Backend, typer.Option("--backend", help="solver backend")] = Backend.cpsat,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds; the best plan so far and its gap come back")] = 60.0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="solver threads")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="solver random seed")] = 0,
    max_gpus: Annotated[int | None, typer.Option("--max-gpus", min=1, help="cap the GPU count searched")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="write plan JSON and a Markdown report here")] = None,
) -> None:
    """Find the best plan under the instance's objective, proven optimal or with its gap.

    Exit codes: 0 solved, 2 invalid input, 3 infeasible (with the explanation), 4 no plan in time.
    """
    problem = api.load_problem(instance)
    result = api.solve(problem, backend=backend.value, time_limit_s=time_limit, workers=workers, seed=seed, max_gpus=max_gpus)
    document = api.result_document(result)
    if out is not None and result.evaluation is not None:
        api.write_outputs(out, problem, result.evaluation, document)
    if as_json:
        emit_json(document)
    else:
        from placer.report.terminal import print_result

        print_result(console, problem, result)
    raise typer.Exit(api.exit_code(result))


def main() -> None:  # pragma: no cover - console entry point
    app()
