"""Instance schema: model, hardware, cluster, workload, SLOs, objective, routing, assumptions.

``model`` and ``hardware`` may be embedded or named: a model by a path (relative to the instance
file, or under ``models/``), a hardware profile by its catalogue id or a path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from placer.schema.base import StrictModel
from placer.schema.cluster import ClusterSpec
from placer.schema.costparams import CostParameters
from placer.schema.hardware import HardwareProfile
from placer.schema.model import ModelSpec
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting
from placer.schema.workload import SLOs, Objective, Workload

INSTANCE_SCHEMA_VERSION = "placer.instance/1"


class Instance(StrictModel):
    """One planning problem."""

    schema_version: Literal["placer.instance/1"] = INSTANCE_SCHEMA_VERSION
    name: str = Field(min_length=1)
    description: str = ""
    model: str | ModelSpec
    hardware: str | HardwareProfile
    cluster: ClusterSpec = ClusterSpec()
    workload: Workload
    slo: SLOs = SLOs()
    objective: Objective = Objective()
    routing: SyntheticRouting | LoadsRouting | FileRouting | None = Field(None, discriminator="kind")
    cost_parameters: CostParameters = CostParameters()
    reference_plan: str | None = Field(None, description="path to a hand-written plan to compare against")
