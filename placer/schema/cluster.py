"""Cluster schema: how many GPUs exist and how they are wired.

Any figure left out is taken from the hardware profile; a figure given here overrides it (the
seed-002 cluster states its own NVLink and InfiniBand bandwidths, for example).
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from placer.schema.base import StrictModel


class ClusterSpec(StrictModel):
    """GPUs per node, node count and link figures (per GPU, per direction unless named per node)."""

    gpus_per_node: PositiveInt | None = Field(None, description="default: the hardware profile's")
    num_nodes: PositiveInt | None = Field(None, description="null = as many as the plan needs")
    nvlink_domain_gpus: PositiveInt | None = Field(None, description="default: the hardware profile's, else one node")
    scaleup_bandwidth_gb_per_s: PositiveFloat | None = Field(None, description="NVLink per GPU per direction")
    scaleup_latency_us: float | None = Field(None, ge=0)
    scaleout_bandwidth_gb_per_s: PositiveFloat | None = Field(None, description="RDMA per GPU per direction")
    scaleout_bandwidth_gb_per_s_per_node: PositiveFloat | None = Field(
        None, description="RDMA per node per direction; divided evenly over the node's GPUs"
    )
    scaleout_latency_us: float | None = Field(None, ge=0)
    scaleout_oversubscription: float = Field(1.0, ge=1.0, description="fat-tree oversubscription ratio")

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        if self.scaleout_bandwidth_gb_per_s is not None and self.scaleout_bandwidth_gb_per_s_per_node is not None:
            raise ValueError(
                "scaleout_bandwidth_gb_per_s_per_node: give the scale-out bandwidth per GPU or per node, not both"
            )
        return self
