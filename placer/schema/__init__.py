"""Strict, versioned input and output schema (pydantic)."""

from placer.schema.base import DTYPE_BYTES, StrictModel
from placer.schema.cluster import ClusterSpec
from placer.schema.costparams import CostParameters
from placer.schema.hardware import EfficiencySpec, HardwareProfile
from placer.schema.instance import Instance
from placer.schema.model import AttentionSpec, DeclaredParams, ModelSpec, MoESpec, PrecisionSpec
from placer.schema.plan import AnyPlan, DisaggregatedPlan, ExpertLayerMap, Parallelism, Plan, Pool, SolverInfo, Stage
from placer.schema.routing import FileRouting, LoadsRouting, SyntheticRouting
from placer.schema.workload import Objective, PromptTokens, SLOs, Workload

__all__ = [
    "DTYPE_BYTES",
    "AnyPlan",
    "DisaggregatedPlan",
    "Pool",
    "AttentionSpec",
    "ClusterSpec",
    "CostParameters",
    "DeclaredParams",
    "EfficiencySpec",
    "ExpertLayerMap",
    "FileRouting",
    "HardwareProfile",
    "Instance",
    "LoadsRouting",
    "ModelSpec",
    "MoESpec",
    "Objective",
    "Parallelism",
    "Plan",
    "PrecisionSpec",
    "PromptTokens",
    "SLOs",
    "SolverInfo",
    "Stage",
    "StrictModel",
    "SyntheticRouting",
    "Workload",
]
