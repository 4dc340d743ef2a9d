"""Cluster schema: how many GPUs exist and how they are wired.

Any figure left out is taken from the hardware profile; a figure given here overrides it (the
seed-002 cluster states its own NVLink and InfiniBand bandwidths, for example).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from placer.schema.base import StrictModel
from placer.schema.limits import AtMost


class ClusterSpec(StrictModel):
    """GPUs per node, node count and link figures (per GPU, per direction unless named per node)."""

    gpus_per_node: Annotated[PositiveInt, AtMost("MAX_GPUS_PER_NODE")] | None = Field(
        None, description="default: the hardware profile's"
    )
    num_nodes: Annotated[PositiveInt, AtMost("MAX_GPUS")] | None = Field(
        None, description="null = as many as the plan needs"
    )
    nvlink_domain_gpus: Annotated[PositiveInt, AtMost("MAX_GPUS_PER_NODE")] | None = Field(
        None, description="default: the hardware profile's, else one node"
    )
    scaleup_bandwidth_gb_per_s: Annotated[PositiveFloat, AtMost("MAX_BANDWIDTH_GB_PER_S")] | None = Field(
        None, description="NVLink per GPU per direction"
    )
    scaleup_latency_us: Annotated[float, AtMost("MAX_MICROSECONDS")] | None = Field(None, ge=0)
    scaleout_bandwidth_gb_per_s: Annotated[PositiveFloat, AtMost("MAX_BANDWIDTH_GB_PER_S")] | None = Field(
        None, description="RDMA per GPU per direction"
    )
    scaleout_bandwidth_gb_per_s_per_node: Annotated[PositiveFloat, AtMost("MAX_BANDWIDTH_GB_PER_S")] | None = Field(
        None, description="RDMA per node per direction; divided evenly over the node's GPUs"
    )
    scaleout_latency_us: Annotated[float, AtMost("MAX_MICROSECONDS")] | None = Field(None, ge=0)
    scaleout_oversubscription: Annotated[float, AtMost("MAX_RATIO")] = Field(
        1.0, ge=1.0, description="fat-tree oversubscription ratio"
    )

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        if self.scaleout_bandwidth_gb_per_s is not None and self.scaleout_bandwidth_gb_per_s_per_node is not None:
            raise ValueError(
                "scaleout_bandwidth_gb_per_s_per_node: give the scale-out bandwidth per GPU or per node, not both"
            )
        return self
