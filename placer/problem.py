"""Problem data: an instance with every reference resolved, validated once, immutable.

The cost model, the formulation, the backends and the evaluator all take a :class:`Problem`;
none of them reads files. Routing statistics are problem data too: resolved here once (files
read relative to the instance's folder, synthetic traces drawn) into ``routing_stats``; so are a
workload's length files and arrival trace (read inline into ``workload``, :mod:`placer.workload_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dc_replace
from pathlib import Path

from placer.catalogue.engine_profiles import resolve_cost_parameters
from placer.errors import InputError
from placer.loading import load_hardware, load_instance, load_model, load_plan
from placer.routing import RoutingStats, resolve_routing_path, routing_stats
from placer.schema import (
    ClusterSpec,
    CostParameters,
    HardwareProfile,
    Instance,
    ModelSpec,
    Objective,
    SLOs,
    Workload,
)
from placer.schema.limits import MAX_GPUS
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting
from placer.topology import Fabric, resolve_fabric
from placer.workload_files import resolve_workload_files


@dataclass(frozen=True)
class Problem:
    """Everything the cost model and the optimiser need, resolved."""

    name: str
    model: ModelSpec
    hardware: HardwareProfile
    cluster: ClusterSpec
    fabric: Fabric
    workload: Workload
    slo: SLOs
    objective: Objective
    params: CostParameters
    routing: SyntheticRouting | LoadsRouting | FileRouting | None = None
    reference_plan: Path | None = None
    description: str = ""
    #: ``routing`` resolved for ``model``, one entry per MoE layer; ``None``: no statistics given
    #: (uniform routing assumed). A file's path in ``routing`` is absolute once resolved.
    routing_stats: RoutingStats | None = None
    #: serving engine the plan must run on (``placer.catalogue.engines``); ``any`` restricts nothing
    engine: str = "any"

    def replace(self, **changes: object) -> Problem:
        """A copy with some fields changed (for tests and hardware comparisons); the fabric and
        the routing statistics follow the hardware, cluster, model and routing they derive from."""
        problem = dc_replace(self, **changes)  # type: ignore[arg-type]
        if "hardware" in changes or "cluster" in changes:
            problem = dc_replace(problem, fabric=resolve_fabric(problem.hardware, problem.cluster))
        if ("model" in changes or "routing" in changes) and "routing_stats" not in changes:
            problem = dc_replace(problem, routing_stats=routing_stats(problem.model, problem.routing))
        return problem


def build_problem(instance: Instance, base_dir: Path | None = None, source: str | None = None) -> Problem:
    """Resolve the instance's model and hardware references and check cross-field rules."""
    try:
        model = instance.model if isinstance(instance.model, ModelSpec) else load_model(instance.model, base_dir)
        if isinstance(instance.hardware, HardwareProfile):
            hardware = instance.hardware
        else:
            hardware = load_hardware(instance.hardware, base_dir)
    except InputError as exc:
        # "unknown hardware", "file not found": the loaders do not know which file named the
        # reference; errors inside a referenced file keep that file as their source.
        if exc.source is not None or source is None:
            raise
        raise InputError(exc.problems, source) from None
    _check_routing(instance, model, source)
    _check_cluster(instance, source)
    routing, stats = _resolve_routing(instance, model, base_dir, source)
    workload = resolve_workload_files(instance.workload, base_dir, source)
    reference = None
    if instance.reference_plan is not None:
        candidates = [Path(instance.reference_plan)]
        if base_dir is not None:
            candidates += [base_dir / instance.reference_plan, base_dir.parent / instance.reference_plan]
        reference = next((c for c in candidates if c.is_file()), None)
        if reference is None:
            raise InputError.single("reference_plan", f"file not found: {instance.reference_plan}", source)
        load_plan(reference)  # a garbage file fails here, naming itself, not later in a report
    fabric = resolve_fabric(hardware, instance.cluster)
    return Problem(
        name=instance.name,
        model=model,
        hardware=hardware,
        cluster=instance.cluster,
        fabric=fabric,
        workload=workload,
        slo=instance.slo,
        objective=instance.objective,
        params=resolve_cost_parameters(instance.cost_parameters, instance.engine, hardware.name, source),
        routing=routing,
        reference_plan=reference,
        description=instance.description,
        routing_stats=stats,
        engine=instance.engine,
    )


def _resolve_routing(
    instance: Instance, model: ModelSpec, base_dir: Path | None, source: str | None
) -> tuple[SyntheticRouting | LoadsRouting | FileRouting | None, RoutingStats | None]:
    """The routing section (a file's path made absolute) and its statistics, read once."""
    routing = instance.routing
    try:
        if isinstance(routing, FileRouting):
            routing = routing.model_copy(update={"path": str(resolve_routing_path(routing, base_dir))})
        return routing, routing_stats(model, routing)
    except InputError as exc:
        if exc.source is not None or source is None:
            raise
        raise InputError(exc.problems, source) from None


def _check_cluster(instance: Instance, source: str | None) -> None:
    cluster = instance.cluster
    if cluster.num_nodes is not None and cluster.gpus_per_node is not None:
        gpus = cluster.num_nodes * cluster.gpus_per_node
        if gpus > MAX_GPUS:
            raise InputError.single(
                "cluster.num_nodes",
                f"{cluster.num_nodes} nodes x {cluster.gpus_per_node} GPUs = {gpus:,} GPUs, above the limit "
                f"MAX_GPUS = {MAX_GPUS:,} (placer/schema/limits.py)",
                source,
            )


def _check_routing(instance: Instance, model: ModelSpec, source: str | None) -> None:
    routing = instance.routing
    if routing is None:
        return
    if model.moe is None:
        raise InputError.single("routing", "routing statistics given for a model without MoE layers", source)
    if isinstance(routing, LoadsRouting):
        if len(routing.loads) != len(model.moe_layers):
            raise InputError.single(
                "routing.loads", f"{len(routing.loads)} rows for {len(model.moe_layers)} MoE layers", source
            )
        for index, row in enumerate(routing.loads):
            if len(row) != model.moe.num_experts:
                raise InputError.single(
                    f"routing.loads[{index}]", f"{len(row)} entries for {model.moe.num_experts} experts", source
                )


def load_problem(path: str | Path) -> Problem:
    """Read, validate and resolve an instance file."""
    path = Path(path)
    instance = load_instance(path)
    return build_problem(instance, path.parent, str(path))
