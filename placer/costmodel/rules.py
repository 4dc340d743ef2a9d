"""Engine rules (R1)-(R7) of ``docs/formulation.md``, defined once.

A deployment that breaks one of these cannot be launched by a serving engine as placer models it,
whatever its figures. The formulation drops such configurations before building a model (it reads
:func:`rule_outcomes`, keyed ``"R1_tp_divides_heads"`` ...), and the evaluator reports each rule as
a check with a message (it reads :func:`applicable_rules`), so the solver's search space and the
referee's verdict cannot drift apart.

Each rule is a name, a test and a message; a rule that does not apply to the model or cluster (KV
heads under MLA, expert degrees on a dense model, the cluster size of an unbounded cluster) is left
out rather than reported as holding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from placer.catalogue.engines import Usage, unsupported
from placer.costmodel.tables import stage_domain_patterns
from placer.schema import ModelSpec, Parallelism
from placer.topology import Fabric, RankLayout


@dataclass(frozen=True)
class RuleInput:
    """What a rule reads: the model, the cluster, the degrees and where each rank sits."""

    model: ModelSpec
    fabric: Fabric
    par: Parallelism
    layout: RankLayout
    engine: str = "any"  # the instance's serving engine (R7)
    stage_layers: tuple[int, ...] | None = None  # layers per stage of a plan; None while the search is open
    decode_tokens_per_step: int = 1

    @property
    def usage(self) -> Usage:
        return Usage(self.par, self.model.moe is not None, self.stage_layers, self.decode_tokens_per_step)


@dataclass(frozen=True)
class Count:
    """A rule that compares a count with a limit (``value <= limit``), so its slack means something."""

    value: float
    limit: float
    unit: str


@dataclass(frozen=True)
class EngineRule:
    """One engine rule. ``count`` is given for rules that compare a count with a limit."""

    number: str  # "R1" .. "R7", as numbered in docs/formulation.md
    name: str  # the evaluator's check name
    applies: Callable[[RuleInput], bool]
    holds: Callable[[RuleInput], bool]
    message: Callable[[RuleInput], str]  # why it is broken (read only when it is)
    count: Callable[[RuleInput], Count] | None = None

    @property
    def key(self) -> str:
        """The formulation's key, e.g. ``"R1_tp_divides_heads"``."""
        return f"{self.number}_{self.name}"


def _always(_: RuleInput) -> bool:
    return True


def _tp_kv_heads(x: RuleInput) -> bool:
    kv, tp = x.model.attention.kv_heads, x.par.tp
    return kv % tp == 0 or tp % kv == 0


def _tp_group_in_domain(x: RuleInput) -> bool:
    return x.layout.groups_in_one_domain(x.par.tp)


def _stages_aligned(x: RuleInput) -> bool:
    """(R5) every (replica, stage) sees the same domain pattern, so one stage's coefficients hold for all."""
    return len(stage_domain_patterns(x.layout)) == 1


def _moe_experts(x: RuleInput) -> int:
    assert x.model.moe is not None
    return x.model.moe.num_experts


def _moe_ffn(x: RuleInput) -> int:
    assert x.model.moe is not None
    return x.model.moe.expert_ffn_size


def _engine_message(x: RuleInput) -> str:
    """(R7) each capability the engine lacks, with the table's source."""
    return "; ".join(f.message() for f in unsupported(x.engine, x.usage))


def _cluster_gpus(x: RuleInput) -> Count:
    assert x.fabric.max_gpus is not None
    return Count(x.par.gpus, x.fabric.max_gpus, "GPUs")


ENGINE_RULES: tuple[EngineRule, ...] = (
    EngineRule(
        "R1",
        "tp_divides_heads",
        _always,
        lambda x: x.model.attention.num_heads % x.par.tp == 0,
        lambda x: f"tp = {x.par.tp} does not divide {x.model.attention.num_heads} attention heads",
    ),
    EngineRule(
        "R2",
        "tp_kv_heads",
        lambda x: x.model.attention.kind != "mla",
        _tp_kv_heads,
        lambda x: f"tp = {x.par.tp} neither divides nor is a multiple of {x.model.attention.kv_heads} KV heads",
    ),
    EngineRule(
        "R3",
        "tp_group_in_node",
        _always,
        _tp_group_in_domain,
        lambda x: f"a TP group of {x.par.tp} GPUs spans NVLink domains",
    ),
    EngineRule(
        "R4",
        "ep_within_experts",
        lambda x: x.model.moe is not None,
        lambda x: x.par.ep <= _moe_experts(x),
        lambda x: f"ep = {x.par.ep} exceeds the {_moe_experts(x)} experts",
    ),
    EngineRule(
        "R4",
        "tp_moe_divides_ffn",
        lambda x: x.model.moe is not None,
        lambda x: _moe_ffn(x) % x.par.tp_moe == 0,
        lambda x: f"tp_moe = {x.par.tp_moe} does not divide expert FFN {_moe_ffn(x)}",
    ),
    EngineRule(
        "R4",
        "no_moe_degrees",
        lambda x: x.model.moe is None,
        lambda x: x.par.ep == 1 and x.par.tp_moe == x.par.tp * x.par.dp_attn,
        lambda x: "ep > 1 on a model without experts",
    ),
    EngineRule(
        "R5",
        "stages_aligned_to_domains",
        _always,
        _stages_aligned,
        lambda x: (
            f"stages of {x.par.stage_width} GPUs do not all sit the same way across NVLink domains of "
            f"{x.fabric.nvlink_domain_gpus} GPUs"
        ),
    ),
    EngineRule(
        "R6",
        "cluster_gpus",
        lambda x: x.fabric.max_gpus is not None,
        lambda x: x.fabric.max_gpus is not None and x.par.gpus <= x.fabric.max_gpus,
        lambda x: f"{x.par.gpus} GPUs exceed the cluster's {x.fabric.max_gpus}",
        count=_cluster_gpus,
    ),
    EngineRule(
        "R7",
        "engine_supports",
        lambda x: x.engine != "any",
        lambda x: not unsupported(x.engine, x.usage),
        _engine_message,
    ),
)


def applicable_rules(x: RuleInput) -> tuple[EngineRule, ...]:
    """The rules that apply to this model and cluster, in the order they are reported."""
    return tuple(rule for rule in ENGINE_RULES if rule.applies(x))


def rule_outcomes(
    model: ModelSpec,
    fabric: Fabric,
    par: Parallelism,
    layout: RankLayout,
    engine: str = "any",
    decode_tokens_per_step: int = 1,
) -> dict[str, bool]:
    """Whether each applicable rule holds, keyed ``"R<n>_<name>"``. The partition is still open
    here, so (R7) checks the degrees and the workload only; a plan's stages are checked by the
    evaluator (``stage_layers``)."""
    x = RuleInput(model, fabric, par, layout, engine, None, decode_tokens_per_step)
    return {rule.key: rule.holds(x) for rule in applicable_rules(x)}
