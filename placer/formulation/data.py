"""Solver-agnostic formulation data: every joint choice of degrees with its cost coefficients.

A *configuration* ``c`` is one joint choice ``(tp, dp_attn, ep, tp_moe, pp, replicas)`` with
``tp * dp_attn == ep * tp_moe`` (the stage width, by definition). Its coefficients come from the
cost model's per-layer tables (``placer.costmodel.tables``), so the backends and the evaluator see
the same numbers. Layers fall into *classes* (dense, MoE) whose per-layer coefficients are equal;
a stage is then described by how many layers of each class it holds. Equation numbers refer to
``docs/formulation.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from placer.costmodel.dispatch import copy_bytes_per_token
from placer.costmodel.memory import usable_memory_bytes
from placer.costmodel.phase import PHASES, PerPhase, Phase
from placer.costmodel.rules import rule_outcomes
from placer.costmodel.tables import (
    EdgeCosts,
    ExpertMaps,
    PhaseCostMemo,
    StageContexts,
    boundary_crossings,
    default_expert_maps,
    edge_costs,
    edge_costs_key,
    layer_placement,
    layer_times,
    stage_contexts,
    stage_pattern,
)
from placer.costmodel.traffic import LayerTraffic
from placer.problem import Problem
from placer.schema import Parallelism
from placer.topology import default_layout

#: Default cap on the GPU count when neither the SLOs nor the cluster bound it (raise with --max-gpus).
DEFAULT_GPU_CAP = 128


@dataclass(frozen=True)
class Config:
    """One joint choice of degrees and the coefficients it gives the model."""

    par: Parallelism
    gpus: int
    micro: PerPhase[int]  # micro-batches in flight, by phase
    # per layer class k, one layer on the fullest GPU of a stage:
    layer_bytes: tuple[float, ...]  # weights + KV cache
    layer_s: PerPhase[tuple[float, ...]]  # per micro-batch, by phase
    embed_bytes: float
    head_bytes: float  # LM head weights + logits workspace (last stage)
    fixed_bytes: float  # activation workspace + runtime reserve (every stage)
    embed_s: PerPhase[float]  # per micro-batch, by phase
    head_s: PerPhase[float]
    sends_s: PerPhase[float]  # all pipeline boundaries together, by phase
    cross_node_bytes_per_token: float
    rules: dict[str, bool] = field(default_factory=dict)

    @property
    def admissible(self) -> bool:
        """All engine rules (R1)-(R7) hold."""
        return all(self.rules.values())

    def total_s(self, phase: Phase, class_counts: tuple[int, ...]) -> float:
        """Sum of stage times (partition independent) plus sends in ``phase``: the first term of (F6)."""
        body = sum(n * t for n, t in zip(class_counts, self.layer_s[phase], strict=True))
        return body + self.embed_s[phase] + self.head_s[phase] + self.sends_s[phase]


@dataclass(frozen=True)
class FormulationData:
    """Immutable inputs shared by every backend."""

    problem: Problem
    configs: tuple[Config, ...]
    layer_class: tuple[int, ...]  # class of each layer
    class_names: tuple[str, ...]
    gpu_cap: int
    gpu_cap_reason: str
    usable_bytes: float
    prefill_tokens: float  # B * L_max, tokens of one prefill batch
    decode_tokens: float  # B x output tokens per step: tokens one decode step emits
    considered: int  # configurations enumerated before the rules and presolve
    presolved_out: int  # configurations fixed to 0 by a single constraint (presolve)
    hint_config: int | None = None  # index of a known-feasible configuration (warm start), if any
    hint_starts: tuple[int, ...] = ()  # its stage starts
    complete: bool = True  # False when the build was stopped before every configuration was costed

    @property
    def num_layers(self) -> int:
        return len(self.layer_class)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> tuple[int, ...]:
        return tuple(self.layer_class.count(k) for k in range(self.num_classes))

    @property
    def max_pp(self) -> int:
        return max((c.par.pp for c in self.configs), default=1)

    def prefix_counts(self) -> np.ndarray:
        """``P[k, a]``: layers of class ``k`` among layers ``0..a-1`` (F3)."""
        counts = np.zeros((self.num_classes, self.num_layers + 1), dtype=int)
        for i, k in enumerate(self.layer_class):
            counts[:, i + 1] = counts[:, i]
            counts[k, i + 1] += 1
        return counts


def _powers_and_divisors(limit: int, *numbers: int) -> list[int]:
    """Admissible values of a degree (D1): powers of two and divisors of the given counts, <= limit."""
    values = {2**i for i in range(int(math.log2(max(limit, 1))) + 1)}
    for number in numbers:
        values |= {d for d in range(1, number + 1) if number % d == 0}
    return sorted(v for v in values if v <= limit)


def gpu_cap(problem: Problem, override: int | None = None, override_reason: str = "--max-gpus") -> tuple[int, str]:
    """Largest GPU count in the search space, and why (D2)."""
    caps = []
    if override is not None:
        caps.append((override, override_reason))
    if problem.slo.max_gpus is not None:
        caps.append((problem.slo.max_gpus, "slo.max_gpus"))
    if problem.fabric.max_gpus is not None:
        caps.append((problem.fabric.max_gpus, "cluster size"))
    if not caps:
        caps.append(
            (DEFAULT_GPU_CAP, f"default cap of {DEFAULT_GPU_CAP} GPUs (unlimited cluster; raise with --max-gpus)")
        )
    return min(caps)


def layer_classes(problem: Problem) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Class of each layer: 0 dense, 1 MoE (only the classes that occur)."""
    model = problem.model
    kinds = ["moe" if model.is_moe_layer(i) else "dense" for i in range(model.num_layers)]
    names = tuple(sorted(set(kinds)))
    return tuple(names.index(k) for k in kinds), names


def iter_parallelisms(problem: Problem, cap: int) -> Iterator[Parallelism]:
    """Every degree tuple with ``tp * dp_attn == ep * tp_moe`` and at most ``cap`` GPUs (D1-D3),
    one at a time: with a cap in the tens of thousands there are millions, and the build polls its
    deadline between them. Built without re-validation: each tuple meets the width identity by
    construction (``Parallelism`` would check exactly that, at ~10 us a tuple)."""
    model = problem.model
    heads = model.attention.num_heads
    experts = model.moe.num_experts if model.moe else 1
    widths = _powers_and_divisors(cap, heads, experts)
    for width in widths:
        for tp in (v for v in widths if width % v == 0):
            for ep in (v for v in widths if width % v == 0):
                if model.moe is None and ep != 1:
                    continue
                for pp in range(1, min(model.num_layers, cap // width) + 1):
                    for replicas in range(1, cap // (width * pp) + 1):
                        yield Parallelism.model_construct(
                            pp=pp, tp=tp, dp_attn=width // tp, ep=ep, tp_moe=width // ep, replicas=replicas
                        )


def enumerate_parallelisms(problem: Problem, cap: int) -> list[Parallelism]:
    """:func:`iter_parallelisms` as a list."""
    return list(iter_parallelisms(problem, cap))


def config_rules(problem: Problem, par: Parallelism) -> dict[str, bool]:
    """Engine rules (R1)-(R7) for one configuration on the default layout (``placer.costmodel.rules``);
    (R7) drops what the instance's engine cannot run."""
    layout = default_layout(par, problem.fabric)
    return rule_outcomes(
        problem.model, problem.fabric, par, layout, problem.engine, problem.workload.decode_tokens_per_step
    )


class ConfigCoster:
    """Coefficients of many configurations of one problem, each distinct piece of work done once.

    Building a formulation costs tens of thousands of degree tuples that share most of their work:
    the expert maps depend only on ``ep``, the layer phase costs only on the stage's width split,
    the micro-batch shape and the traffic (:class:`placer.costmodel.tables.PhaseCostMemo`), the
    traffic only on the expert map and the stage's domain pattern (value-cached in
    ``costmodel.traffic``). Every cache here is keyed by value and lives as long as the coster,
    which holds its problem: one coster, one problem. The figures are those of calling the cost
    model's tables afresh for each configuration, to the bit.
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.classes, self.class_names = layer_classes(problem)
        self.class_counts = tuple(self.classes.count(k) for k in range(len(self.class_names)))
        #: the first layer of each class stands for the class (its coefficients are the class's)
        self._representative = tuple(self.classes.index(k) for k in range(len(self.class_names)))
        self._moe_layers = tuple(problem.model.moe_layers) if problem.model.moe is not None else ()
        self.usable_bytes = usable_memory_bytes(problem)
        self._memo = PhaseCostMemo(problem)
        self._maps: dict[int, ExpertMaps] = {}
        self._edges: dict[tuple[int | bool, ...], EdgeCosts] = {}
        self._mean_scaleout: dict[float, float] = {}
        self._copy_bytes = copy_bytes_per_token(problem)
        self._reserve_bytes = problem.hardware.runtime_reserve_gb * 1e9

    def expert_maps(self, par: Parallelism) -> ExpertMaps:
        maps = self._maps.get(par.ep)
        if maps is None:
            maps = self._maps[par.ep] = default_expert_maps(self.problem, par)
        return maps

    def config(self, par: Parallelism, rules: dict[str, bool] | None = None) -> Config:
        """Coefficients of one configuration (F1); ``rules`` when already checked."""
        config = self._costed(par, rules, memory_check=False)
        assert config is not None  # only the memory check answers None
        return config

    def _costed(self, par: Parallelism, rules: dict[str, bool] | None, memory_check: bool) -> Config | None:
        """The configuration's coefficients; with ``memory_check``, ``None`` as soon as its bytes
        break the memory bound (F9), before any time is costed."""
        problem = self.problem
        if rules is None:
            rules = config_rules(problem, par)
        maps = self.expert_maps(par)
        layout = default_layout(par, problem.fabric)
        pattern = stage_pattern(layout, 0, 0)
        contexts = stage_contexts(problem, par, pattern)
        placed = [layer_placement(problem, par, pattern, layer, maps.get(layer)) for layer in self._representative]
        layer_bytes = tuple(float(weight + contexts.kv_bytes) for _, weight in placed)
        edges = self._edge_costs(par, maps, contexts)
        embed_bytes = edges.embed_weight_bytes
        head_bytes = edges.head_weight_bytes + edges.logits_bytes
        fixed_bytes = edges.workspace_bytes + self._reserve_bytes
        if memory_check and not _mean_stage_fits(
            self.usable_bytes, self.class_counts, layer_bytes, embed_bytes, head_bytes, fixed_bytes, par.pp
        ):
            return None
        times = [
            layer_times(problem, contexts, layer, traffic, self._memo)
            for layer, (traffic, _) in zip(self._representative, placed, strict=True)
        ]
        crossings = boundary_crossings(layout)
        sends = PerPhase.build(lambda phase: _sends_s(edges, phase, crossings))
        # every MoE layer carries the same default map, hence the same traffic as the first
        moe_traffic = next((traffic for traffic, _ in placed if traffic is not None), None)
        cross = self._copy_bytes * self._mean_dedup_scaleout(moe_traffic) if moe_traffic is not None else 0.0
        contexts_by_phase = PerPhase(contexts.prefill, contexts.decode)
        return Config(
            par=par,
            gpus=par.gpus,
            micro=contexts_by_phase.map(lambda ctx: ctx.shape.micro_batches),
            layer_bytes=layer_bytes,
            layer_s=PerPhase.build(lambda phase: tuple(float(t[PHASES.index(phase)].time_s) for t in times)),
            embed_bytes=embed_bytes,
            head_bytes=head_bytes,
            fixed_bytes=fixed_bytes,
            embed_s=edges.embed_s,
            head_s=edges.head_s,
            sends_s=sends,
            cross_node_bytes_per_token=cross,
            rules=rules,
        )

    def _edge_costs(self, par: Parallelism, maps: ExpertMaps, contexts: StageContexts) -> EdgeCosts:
        """Edge costs shared by configurations with equal :func:`edge_costs_key` (the maps follow ``ep``)."""
        key = edge_costs_key(par, contexts.prefill.shape, contexts.decode.shape)
        edges = self._edges.get(key)
        if edges is None:
            edges = self._edges[key] = edge_costs(self.problem, par, maps)
        return edges

    def _mean_dedup_scaleout(self, traffic: LayerTraffic) -> float:
        """Mean node-deduplicated scale-out copies over the MoE layers (all equal: the mean of equal
        terms, taken as numpy takes it, so the figure matches a per-layer table to the bit)."""
        value = traffic.dedup_scaleout
        mean = self._mean_scaleout.get(value)
        if mean is None:
            mean = self._mean_scaleout[value] = float(np.mean([value] * len(self._moe_layers)))
        return mean

    def admitted(self, par: Parallelism) -> Config | None:
        """The configuration when it passes the engine rules and the memory bound (F9), else ``None``.

        The rules are checked first, so a configuration they reject is never costed."""
        rules = config_rules(self.problem, par)
        if not all(rules.values()):
            return None
        return self._costed(par, rules, memory_check=True)


def _sends_s(edges: EdgeCosts, phase: Phase, crossings: tuple[bool, ...]) -> float:
    """All pipeline sends of one micro-batch in ``phase``, boundary by boundary in stage order."""
    total = 0.0
    for crosses in crossings:
        total += edges.send_cross_s[phase] if crosses else edges.send_s[phase]
    return total


def build_config(
    problem: Problem, par: Parallelism, classes: tuple[int, ...], num_classes: int, coster: ConfigCoster | None = None
) -> Config:
    """Coefficients of one configuration from the cost model's tables (F1).

    ``coster`` shares work across calls (pass one when costing many configurations of ``problem``)."""
    if coster is None:
        coster = ConfigCoster(problem)
    assert coster.problem is problem and coster.classes == classes and len(coster.class_names) == num_classes
    return coster.config(par)


def memory_lower_bound_ok(usable: float, counts: tuple[int, ...], config: Config) -> bool:
    """(F9) aggregate memory: the fullest stage holds at least the mean of all stages."""
    return _mean_stage_fits(
        usable, counts, config.layer_bytes, config.embed_bytes, config.head_bytes, config.fixed_bytes, config.par.pp
    )


def _mean_stage_fits(
    usable: float,
    counts: tuple[int, ...],
    layer_bytes: tuple[float, ...],
    embed_bytes: float,
    head_bytes: float,
    fixed_bytes: float,
    pp: int,
) -> bool:
    total = sum(n * b for n, b in zip(counts, layer_bytes, strict=True)) + embed_bytes + head_bytes
    return total / pp + fixed_bytes <= usable


def build_formulation(
    problem: Problem,
    max_gpus: int | None = None,
    cap_reason: str = "--max-gpus",
    should_stop: Callable[[], bool] | None = None,
    coster: ConfigCoster | None = None,
) -> FormulationData:
    """Enumerate configurations, compute their coefficients, apply single-constraint presolve.

    ``should_stop`` is asked before each configuration; once it answers true the build ends and
    the data holds the configurations admitted so far, with ``complete`` false (the enumeration
    order is that of :func:`iter_parallelisms`). ``coster`` carries shared work over from
    earlier builds or warm-start costing of the same problem."""
    cap, reason = gpu_cap(problem, max_gpus, cap_reason)
    if coster is None:
        coster = ConfigCoster(problem)
    assert coster.problem is problem, "a coster serves one problem"
    configs = []
    considered = presolved = 0
    complete = True
    for par in iter_parallelisms(problem, cap):
        if should_stop is not None and should_stop():
            complete = False
            break
        considered += 1
        config = coster.admitted(par)
        if config is None:
            presolved += 1
            continue
        configs.append(config)
    data = formulation_data(problem, tuple(configs), cap, reason, considered, presolved)
    return data if complete else dataclasses.replace(data, complete=False)


def formulation_data(
    problem: Problem, configs: tuple[Config, ...], cap: int, reason: str, considered: int = 0, presolved: int = 0
) -> FormulationData:
    """Assemble the data record; derived fields (classes, usable memory, batch tokens) from the problem."""
    classes, names = layer_classes(problem)
    workload = problem.workload
    return FormulationData(
        problem=problem,
        configs=configs,
        layer_class=classes,
        class_names=names,
        gpu_cap=cap,
        gpu_cap_reason=reason,
        usable_bytes=usable_memory_bytes(problem),
        prefill_tokens=float(workload.batch_size * workload.prompt_tokens.max),
        decode_tokens=float(workload.batch_size * workload.output_tokens_per_step),
        considered=considered,
        presolved_out=presolved,
    )
