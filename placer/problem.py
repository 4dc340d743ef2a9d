"""Problem data: an instance with every reference resolved, validated once, immutable.

The cost model, the formulation, the backends and the evaluator all take a :class:`Problem`;
none of them reads files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from placer.errors import InputError
from placer.loading import load_hardware, load_instance, load_model
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
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting
from placer.topology import Fabric, resolve_fabric


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

    def replace(self, **changes: object) -> Problem:
        """A copy with some fields changed (for tests and hardware comparisons)."""
        from dataclasses import replace as dc_replace

        problem = dc_replace(self, **changes)  # type: ignore[arg-type]
        if "hardware" in changes or "cluster" in changes:
            problem = dc_replace(problem, fabric=resolve_fabric(problem.hardware, problem.cluster))
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
    reference = None
    if instance.reference_plan is not None:
        candidates = [Path(instance.reference_plan)]
        if base_dir is not None:
            candidates += [base_dir / instance.reference_plan, base_dir.parent / instance.reference_plan]
        reference = next((c for c in candidates if c.is_file()), None)
        if reference is None:
            raise InputError.single("reference_plan", f"file not found: {instance.reference_plan}", source)
    fabric = resolve_fabric(hardware, instance.cluster)
    return Problem(
        name=instance.name,
        model=model,
        hardware=hardware,
        cluster=instance.cluster,
        fabric=fabric,
        workload=instance.workload,
        slo=instance.slo,
        objective=instance.objective,
        params=instance.cost_parameters,
        routing=instance.routing,
        reference_plan=reference,
        description=instance.description,
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
