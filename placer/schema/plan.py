"""Plan schema: a deployment, as written by a person or returned by the solver.

Stage layer ranges are inclusive (``"layers": [0, 3]`` is layers 0, 1, 2 and 3). The degrees
obey ``tp * dp_attn == ep * tp_moe == stage width`` and ``gpus == replicas * pp * width``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, StrictInt, model_validator

from placer.schema.base import StrictModel
from placer.schema.limits import AtMost

PLAN_SCHEMA_VERSION = "placer.plan/1"


class Parallelism(StrictModel):
    """Parallel degrees of one deployment."""

    pp: Annotated[PositiveInt, AtMost("MAX_LAYERS")] = 1
    tp: Annotated[PositiveInt, AtMost("MAX_GPUS")] = 1
    dp_attn: Annotated[PositiveInt, AtMost("MAX_GPUS")] = 1
    ep: Annotated[PositiveInt, AtMost("MAX_GPUS")] = 1
    tp_moe: Annotated[PositiveInt, AtMost("MAX_GPUS")] = 1
    replicas: Annotated[PositiveInt, AtMost("MAX_GPUS")] = 1

    @model_validator(mode="after")
    def _check(self) -> Parallelism:
        if self.tp * self.dp_attn != self.ep * self.tp_moe:
            raise ValueError(
                f"tp * dp_attn ({self.tp} x {self.dp_attn} = {self.tp * self.dp_attn}) must equal "
                f"ep * tp_moe ({self.ep} x {self.tp_moe} = {self.ep * self.tp_moe}): attention and MoE "
                "fold onto the same GPUs"
            )
        return self

    @property
    def stage_width(self) -> int:
        return self.tp * self.dp_attn

    @property
    def label(self) -> str:
        """The degrees in one short line, ``pp1 tp2 dp4 ep8 tpm1 x1``, for messages and tables."""
        return f"pp{self.pp} tp{self.tp} dp{self.dp_attn} ep{self.ep} tpm{self.tp_moe} x{self.replicas}"

    @property
    def gpus(self) -> int:
        return self.replicas * self.pp * self.stage_width


class Stage(StrictModel):
    """A pipeline stage: an inclusive range of transformer layers."""

    layers: tuple[int, int] = Field(description="[first, last], inclusive, 0-based")

    @model_validator(mode="after")
    def _check(self) -> Stage:
        first, last = self.layers
        if first < 0 or last < first:
            raise ValueError(f"layers: [{first}, {last}] is not a range of layer indices (first <= last, both >= 0)")
        return self

    @property
    def first(self) -> int:
        return self.layers[0]

    @property
    def last(self) -> int:
        return self.layers[1]

    @property
    def num_layers(self) -> int:
        return self.last - self.first + 1


class ExpertLayerMap(StrictModel):
    """Physical slots of one MoE layer: ``gpus[r]`` lists the logical experts on EP rank ``r``."""

    # strict: an expert id or a layer is a whole number, never 2.5, 2.0 or true
    layer: StrictInt = Field(ge=0)
    gpus: list[list[StrictInt]]


class SolverInfo(StrictModel):
    """How the plan was found."""

    backend: str
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    wall_s: float | None = None
    status: str | None = None


def check_layout(gpus: int, par: Parallelism, stages: list[Stage]) -> None:
    """The degrees multiply to the GPUs and the stages partition the layers (``ValueError`` naming
    the field): shared by an aggregated plan and each pool of a disaggregated one."""
    if par.gpus != gpus:
        raise ValueError(
            f"gpus: {gpus} does not equal replicas x pp x tp x dp_attn = "
            f"{par.replicas} x {par.pp} x {par.tp} x {par.dp_attn} = {par.gpus}"
        )
    if len(stages) != par.pp:
        raise ValueError(f"stages: {len(stages)} stages listed for pp = {par.pp}")
    expected_first = 0
    for index, stage in enumerate(stages):
        if stage.first != expected_first:
            kind = "skips" if stage.first > expected_first else "overlaps"
            raise ValueError(
                f"stages[{index}].layers: starts at layer {stage.first}, expected {expected_first}; "
                f"the partition {kind} layers"
            )
        expected_first = stage.last + 1


class Plan(StrictModel):
    """A deployment plan. Output-only fields (``metrics``, ``slo``, ``status``, ``solver``,
    ``evaluation``, ``objective``, ``search``) may be present in a file read back; the evaluator
    recomputes them and never trusts them."""

    schema_version: Literal["placer.plan/1"] = PLAN_SCHEMA_VERSION
    name: str = ""
    description: str = ""
    instance: str | None = None
    hardware: str | None = None
    gpus: Annotated[PositiveInt, AtMost("MAX_GPUS")]
    nodes: Annotated[PositiveInt, AtMost("MAX_GPUS")] | None = None
    parallelism: Parallelism
    stages: list[Stage] = Field(min_length=1)
    expert_map: list[ExpertLayerMap] | None = None
    rank_to_node: list[StrictInt] | None = None  # node index of each rank (checked against the cluster on use)
    claimed: dict[str, float | str] = Field(
        default_factory=dict, description="figures the plan's author claimed, keyed like metrics"
    )
    metrics: dict[str, Any] | None = None
    slo: dict[str, Any] | None = None
    status: str | None = None
    solver: SolverInfo | None = None
    # the rest of what `placer solve --out` writes beside the decisions, so that file can be fed
    # straight back to `placer evaluate` or `placer export` (ignored on input, like the above)
    evaluation: dict[str, Any] | None = None
    objective: dict[str, Any] | None = None
    search: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None  # wall-clock seconds, the only figures that differ between runs

    @model_validator(mode="after")
    def _check(self) -> Plan:
        check_layout(self.gpus, self.parallelism, self.stages)
        if self.rank_to_node is not None and len(self.rank_to_node) != self.gpus:
            raise ValueError(f"rank_to_node: {len(self.rank_to_node)} entries for {self.gpus} GPUs")
        return self

    @property
    def num_layers(self) -> int:
        return self.stages[-1].last + 1


DISAGG_PLAN_SCHEMA_VERSION = "placer.plan/2"


class Pool(StrictModel):
    """One pool of a disaggregated deployment: the GPUs that run one phase (prefill or decode) for
    every request, with their own degrees, partition and expert map. ``replicas`` of the pool's
    parallelism are its engine instances (the ``x`` of xPyD). ``nodes`` lists the node indices the
    pool occupies (its ranks fill them in order); omitted, the pools are packed: prefill from node 0,
    decode from the next node with room (the same node when both fit in one)."""

    gpus: Annotated[PositiveInt, AtMost("MAX_GPUS")]
    parallelism: Parallelism
    stages: list[Stage] = Field(min_length=1)
    expert_map: list[ExpertLayerMap] | None = None
    nodes: list[Annotated[StrictInt, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _check(self) -> Pool:
        check_layout(self.gpus, self.parallelism, self.stages)
        if self.nodes is not None and len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"nodes: {self.nodes} lists a node twice")
        return self

    @property
    def num_layers(self) -> int:
        return self.stages[-1].last + 1

    @property
    def label(self) -> str:
        return f"{self.parallelism.label} ({self.gpus} GPUs)"

    def as_plan(self, name: str, instance: str | None = None, hardware: str | None = None) -> Plan:
        """The pool as an aggregated plan of its own GPUs, which the evaluator prices phase by phase."""
        return Plan(
            name=name,
            instance=instance,
            hardware=hardware,
            gpus=self.gpus,
            parallelism=self.parallelism,
            stages=self.stages,
            expert_map=self.expert_map,
        )


class DisaggregatedPlan(StrictModel):
    """A prefill/decode disaggregated deployment: a prefill pool and a decode pool, the KV cache of
    every request sent from the first to the second. ``gpus`` is the total. Output-only fields as
    in :class:`Plan` may be present in a file read back and are never trusted."""

    schema_version: Literal["placer.plan/2"] = DISAGG_PLAN_SCHEMA_VERSION
    mode: Literal["disaggregated"] = "disaggregated"
    name: str = ""
    description: str = ""
    instance: str | None = None
    hardware: str | None = None
    gpus: Annotated[PositiveInt, AtMost("MAX_GPUS")]
    prefill: Pool
    decode: Pool
    claimed: dict[str, float | str] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    slo: dict[str, Any] | None = None
    status: str | None = None
    solver: SolverInfo | None = None
    evaluation: dict[str, Any] | None = None
    objective: dict[str, Any] | None = None
    search: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> DisaggregatedPlan:
        if self.prefill.gpus + self.decode.gpus != self.gpus:
            raise ValueError(
                f"gpus: {self.gpus} does not equal prefill.gpus + decode.gpus = "
                f"{self.prefill.gpus} + {self.decode.gpus} = {self.prefill.gpus + self.decode.gpus}"
            )
        if self.prefill.num_layers != self.decode.num_layers:
            raise ValueError(
                f"decode.stages: the pools cover {self.prefill.num_layers} and {self.decode.num_layers} layers; "
                "both run the whole model"
            )
        return self

    def pool(self, phase: str) -> Pool:
        return self.prefill if phase == "prefill" else self.decode

    def pool_plan(self, phase: str) -> Plan:
        """The pool of ``phase`` as an aggregated plan (named ``<name>.<phase>``)."""
        return self.pool(phase).as_plan(f"{self.name or 'plan'}.{phase}", self.instance, self.hardware)


#: Either kind of plan document.
AnyPlan = Plan | DisaggregatedPlan
