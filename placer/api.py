"""The Python API: what the CLI calls, and what a notebook imports.

>>> from placer import api
>>> problem = api.load_problem("instances/moe10b.json")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from placer.catalogue import hardware_catalogue
from placer.costmodel.params import count_params, declared_param_warnings
from placer.errors import EXIT_INFEASIBLE, EXIT_NO_PLAN_IN_TIME, EXIT_OK, InputError
from placer.evaluator import Evaluation, check_plan_fits_model, evaluate
from placer.files import write_atomic
from placer.loading import load_any_plan, load_plan
from placer.loading import load_model as _load_model
from placer.problem import Problem, load_problem
from placer.report.plan_json import dumps, plan_with_figures
from placer.report.result_json import result_document
from placer.result import Result, SolveStatus
from placer.schema import DisaggregatedPlan, HardwareProfile, Instance, ModelSpec, Plan, SolverInfo
from placer.serving import evaluate_serving
from placer.serving_disagg import DisaggEvaluation
from placer.solve import solve
from placer.stopping import StopToken

if TYPE_CHECKING:
    from placer.executors import Executor
    from placer.export import DisaggInput, ExportInput
    from placer.placement.command import PlaceOutcome
    from placer.sweep.point import PointAnswer
    from placer.sweep.run import SweepOutcome

__all__ = [
    "export_input",
    "place_files",
    "exit_code",
    "result_document",
    "solve",
    "sweep",
    "evaluate",
    "evaluate_files",
    "evaluate_disaggregated_file",
    "hardware_profiles",
    "json_schema",
    "load_model",
    "load_plan",
    "load_problem",
    "model_summary",
    "plan_document",
    "write_outputs",
]


def load_model(ref: str | Path) -> ModelSpec:
    """A shipped model by name (``deepseek-v3``), a placer model file, or an HF ``config.json``."""
    return _load_model(ref)


def evaluate_files(instance: str | Path, plan: str | Path) -> tuple[Problem, Evaluation | DisaggEvaluation]:
    """Load both files and evaluate the plan on the instance (aggregated or disaggregated)."""

    problem = load_problem(instance)
    plan_spec = load_any_plan(plan)
    if isinstance(plan_spec, DisaggregatedPlan):
        return problem, evaluate_disaggregated_file(problem, plan_spec, str(plan))
    check_plan_fits_model(problem, plan_spec, str(plan))  # here, so that its errors name the plan file
    # serving workloads take TTFT / TPOT / throughput from the steady-state model; burst: evaluate()
    return problem, evaluate_serving(problem, plan_spec)


def evaluate_disaggregated_file(problem: Problem, plan: DisaggregatedPlan, source: str | None) -> DisaggEvaluation:
    """Each pool checked against the model and cluster as an aggregated plan of its own GPUs (errors
    name ``prefill.``/``decode.`` fields of ``source``), then the whole priced; a workload the
    disaggregated model does not serve is an input error naming ``workload.kind``."""
    from placer.serving_disagg import evaluate_disaggregated

    for phase in ("prefill", "decode"):
        try:
            check_plan_fits_model(problem, plan.pool_plan(phase), source)
        except InputError as exc:
            raise InputError([(f"{phase}.{f}" if f else phase, r) for f, r in exc.problems], exc.source) from None
    if problem.workload.kind == "burst":
        reason = "a disaggregated plan serves requests (kinds rate, concurrency, offline), not a burst of one batch"
        raise InputError.single("workload.kind", reason, problem.name)
    return evaluate_disaggregated(problem, plan)


def plan_document(
    evaluation: Evaluation | DisaggEvaluation, status: str | None = None, solver: SolverInfo | None = None
) -> dict[str, Any]:
    """The plan JSON with every computed figure."""
    return plan_with_figures(evaluation, status, solver)


def model_summary(model: ModelSpec) -> dict[str, Any]:
    """Parameter counts and per-token figures of a model, JSON-ready."""
    from placer.costmodel.layers import attention_flops_per_context_token, kv_bytes_per_token

    counts = count_params(model)
    return {
        "name": model.name,
        "total_params": counts.total,
        "active_params": counts.active,
        "active_params_excluding_embedding": counts.active_excluding_embedding,
        "active_convention": "embedding table and LM head counted in full",
        "embedding_params": counts.embedding,
        "lm_head_params": counts.lm_head,
        "per_layer_params": [layer.total for layer in counts.layers],
        "kv_cache_bytes_per_token": kv_bytes_per_token(model),
        "linear_flops_per_token": 2 * counts.active_excluding_embedding,
        "attention_flops_per_token_per_context_token": attention_flops_per_context_token(model),
        "warnings": declared_param_warnings(model, counts),
        "assumptions": list(model.assumptions),
    }


#: Share of ``placer place``'s time limit given to placement as its deterministic work budget; the
#: rest covers loading, the baselines, pricing and the unbudgeted steps, and the wall-clock deadline
#: (the whole limit) cuts the work short on a slow machine.
PLACE_WORK_SHARE = 0.5


def place_files(
    instance: str | Path,
    plan: str | Path,
    time_limit_s: float = 10.0,
    stop: StopToken | None = None,
    in_service: str | Path | None = None,
    max_moves: int = 0,
) -> PlaceOutcome:
    """Place experts for a plan file's degrees (``placer place``): the plan must fit the model.

    ``time_limit_s`` is a wall-clock promise for the call (with ``stop``, Ctrl-C too): half of it
    is placement's work budget, and the deadline stops the work early on a loaded machine.
    ``in_service``: a placed plan file whose expert maps serve now; each layer is re-placed from
    its map moving at most ``max_moves`` expert copies."""
    from placer.backends.placement import node_solver
    from placer.placement.command import place_for_plan

    problem, plan_spec = load_problem(instance), load_plan(plan)
    check_plan_fits_model(problem, plan_spec, str(plan))
    token = stop if stop is not None else StopToken.after(time_limit_s)
    deadline = token.share(0.8)  # leave a fifth of the time left for the pricing and baselines after it
    outcome = place_for_plan(
        problem,
        plan_spec,
        node_solver("cpsat"),
        time_limit_s=time_limit_s * PLACE_WORK_SHARE,
        stop=deadline.should_stop,
        remaining_s=deadline.remaining_s,
        in_service=load_plan(in_service) if in_service is not None else None,
        max_moves=max_moves,
    )
    if outcome is None:
        raise InputError.single("model", f"{problem.model.name} has no MoE layers: nothing to place", str(instance))
    return outcome


def hardware_profiles() -> list[HardwareProfile]:
    """The catalogue, sorted by id."""
    catalogue = hardware_catalogue()
    return [catalogue[name] for name in sorted(catalogue)]


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of ``instance``, ``plan``, ``model``, ``hardware`` or ``sweep`` documents."""
    from placer.sweep.spec import SweepSpec

    classes = {"instance": Instance, "plan": Plan, "model": ModelSpec, "hardware": HardwareProfile, "sweep": SweepSpec}
    return classes[kind].model_json_schema()


def sweep(
    spec_path: str | Path,
    out: str | Path | None = None,
    executor: Executor | None = None,
    cache: str | Path | None = None,
    max_solves: int | None = None,
    retry_errors: bool = False,
    pictures: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[PointAnswer], None] | None = None,
) -> SweepOutcome:
    """Run a sweep file (``placer sweep``): every point not yet in the cache is solved on
    ``executor`` (local processes by default, or a :class:`placer.executors.RayExecutor`);
    a complete sweep with ``out`` writes the table (CSV, Parquet), ``timings.csv`` and the pictures."""
    from placer.sweep.run import run_sweep
    from placer.sweep.spec import load_spec

    spec = load_spec(spec_path)
    outcome = run_sweep(spec, spec_path, out, executor, cache, max_solves, retry_errors, on_start, on_done)
    if out is not None and pictures and outcome.complete:
        from placer.report.sweep import write_sweep_pictures

        _, rows = outcome.table()
        outcome.written += write_sweep_pictures(Path(out), spec.name, rows)
    return outcome


def write_outputs(
    out_dir: str | Path, problem: Problem, evaluation: Evaluation | DisaggEvaluation, document: dict[str, Any]
) -> list[Path]:
    """Write ``<instance>.plan.json`` and ``<instance>.md`` into ``out_dir``."""
    from placer.report.markdown import evaluation_markdown

    out = Path(out_dir)
    plan_path = out / f"{problem.name}.plan.json"
    report_path = out / f"{problem.name}.md"
    write_atomic(plan_path, dumps(document))
    write_atomic(report_path, evaluation_markdown(problem, evaluation, document))
    return [plan_path, report_path]


def export_input(
    plan_path: str | Path, instance: str | Path | None = None, hosts: Sequence[str] = ()
) -> ExportInput | DisaggInput:
    """The plan and its problem for an engine export. Without ``instance``, the plan's
    ``instance`` name is looked up as ``instances/<name>.json`` beside the plan's folder or in the
    working directory. A plan for other hardware than the instance's gets the instance reshaped
    to that hardware (the rule of :func:`placer.compare.problem_on_hardware`). A disaggregated
    plan gives a :class:`placer.export.DisaggInput` (each pool checked against the model, and its
    GPUs against its nodes)."""
    from placer.compare import problem_on_hardware
    from placer.evaluator import check_plan_fits_model
    from placer.export import DisaggInput, ExportInput
    from placer.loading import load_any_plan
    from placer.schema import DisaggregatedPlan

    plan_file = Path(plan_path)
    plan = load_any_plan(plan_file)
    if instance is None:
        if not plan.instance:
            raise InputError.single("--instance", "the plan names no instance; give --instance", str(plan_file))
        candidates = [
            plan_file.parent / f"{plan.instance}.json",
            plan_file.resolve().parent.parent / "instances" / f"{plan.instance}.json",
            plan_file.resolve().parent.parent.parent / "instances" / f"{plan.instance}.json",
            Path("instances") / f"{plan.instance}.json",
        ]
        instance = next((c for c in candidates if c.is_file() and c.resolve() != plan_file.resolve()), None)
        if instance is None:
            reason = f"instance {plan.instance!r} not found; give --instance"
            raise InputError.single("--instance", reason, str(plan_file))
    problem = load_problem(instance)
    if plan.hardware and plan.hardware != problem.hardware.name:
        if plan.hardware not in hardware_catalogue():
            raise InputError.single("hardware", f"unknown hardware {plan.hardware!r}", str(plan_file))
        problem = problem_on_hardware(problem, plan.hardware)
    if isinstance(plan, DisaggregatedPlan):
        for phase in ("prefill", "decode"):  # each pool as an aggregated plan; errors name prefill./decode. fields
            try:
                check_plan_fits_model(problem, plan.pool_plan(phase), str(plan_file))
            except InputError as exc:
                raise InputError([(f"{phase}.{f}" if f else phase, r) for f, r in exc.problems], exc.source) from None
        data = DisaggInput(problem, plan, tuple(hosts))
        try:
            data.places  # noqa: B018 - each pool's GPUs on its nodes, or an InputError naming <phase>.nodes
        except InputError as exc:
            raise InputError(exc.problems, str(plan_file)) from None
        return data
    check_plan_fits_model(problem, plan, str(plan_file))
    return ExportInput(problem, plan, tuple(hosts))


def exit_code(result: Result) -> int:
    """0 solved (optimal or with a gap), 3 infeasible, 4 no plan within the time limit."""
    if result.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        return EXIT_OK
    if result.status == SolveStatus.INFEASIBLE:
        return EXIT_INFEASIBLE
    return EXIT_NO_PLAN_IN_TIME
