"""Instance schema: model, hardware, cluster, workload, SLOs, objective, routing, assumptions.

``model`` and ``hardware`` may be embedded or named: a model by a path (relative to the instance
file, or under ``models/``), a hardware profile by its catalogue id or a path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from placer.schema.base import StrictModel
from placer.schema.cluster import ClusterSpec
from placer.schema.costparams import CostParameters
from placer.schema.hardware import HardwareProfile
from placer.schema.model import ModelSpec
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting
from placer.schema.workload import Objective, SLOs, Workload

INSTANCE_SCHEMA_VERSION = "placer.instance/1"


def _embedded_or_named(class_name: str) -> Any:
    """Discriminator for ``str | Model`` fields: an object is the embedded model, anything else a name.

    Choosing the branch up front means a broken embedded model reports only its own errors, not
    also "input should be a valid string" from the ``str`` branch.
    """

    def choose(value: Any) -> str:
        return class_name if isinstance(value, (dict, BaseModel)) else "str"

    return Discriminator(choose)


#: A model embedded in the instance, or its path / shipped name.
ModelRef = Annotated[
    Annotated[str, Tag("str")] | Annotated[ModelSpec, Tag("ModelSpec")],
    _embedded_or_named("ModelSpec"),
]

#: A hardware profile embedded in the instance, or its catalogue id / path.
HardwareRef = Annotated[
    Annotated[str, Tag("str")] | Annotated[HardwareProfile, Tag("HardwareProfile")],
    _embedded_or_named("HardwareProfile"),
]


class Instance(StrictModel):
    """One planning problem."""

    schema_version: Literal["placer.instance/1"] = INSTANCE_SCHEMA_VERSION
    name: str = Field(min_length=1)
    description: str = ""
    model: ModelRef
    hardware: HardwareRef
    cluster: ClusterSpec = ClusterSpec()
    workload: Workload
    slo: SLOs = SLOs()
    objective: Objective = Objective()
    routing: SyntheticRouting | LoadsRouting | FileRouting | None = Field(None, discriminator="kind")
    cost_parameters: CostParameters = CostParameters()
    reference_plan: str | None = Field(None, description="path to a hand-written plan to compare against")
