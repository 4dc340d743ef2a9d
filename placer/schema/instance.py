"""Instance schema: model, hardware, cluster, workload, SLOs, objective, routing, assumptions.

``model`` and ``hardware`` may be embedded or named: a model by a path (relative to the instance
file, or under ``models/``), a hardware profile by its catalogue id or a path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from placer.schema.base import StrictModel
from placer.schema.cluster import ClusterSpec
from placer.schema.costparams import CostParameters
from placer.schema.hardware import HardwareProfile
from placer.schema.model import ModelSpec
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting
from placer.schema.workload import Objective, SLOs, Workload

#: ``placer.instance/2`` added workload kinds; a ``placer.instance/1`` file loads unchanged and means
#: ``workload.kind = "burst"`` (the only kind it could say).
INSTANCE_SCHEMA_VERSION = "placer.instance/2"


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

    schema_version: Literal["placer.instance/1", "placer.instance/2"] = INSTANCE_SCHEMA_VERSION
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
    engine: Literal["any", "vllm", "sglang", "trtllm"] = Field(
        "any", description="serving engine the plan must run on; the search admits only what it can run"
    )

    @model_validator(mode="after")
    def _version_knows_kind(self) -> Instance:
        if self.schema_version == "placer.instance/1" and self.workload.kind != "burst":
            raise ValueError(
                f"workload.kind: {self.workload.kind!r} needs schema_version placer.instance/2 "
                "(placer.instance/1 files are burst workloads)"
            )
        return self
