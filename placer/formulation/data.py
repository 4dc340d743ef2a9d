"""Solver-agnostic formulation data: every joint choice of degrees with its cost coefficients.

A *configuration* ``c`` is one joint choice ``(tp, dp_attn, ep, tp_moe, pp, replicas)`` with
``tp * dp_attn == ep * tp_moe`` (the stage width, by definition). Its coefficients come from the
cost model's per-layer tables (``placer.costmodel.tables``), so the backends and the evaluator see
the same numbers. Layers fall into *classes* (dense, MoE) whose per-layer coefficients are equal;
a stage is then described by how many layers of each class it holds. Equation numbers refer to
``docs/formulation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from placer.costmodel.dispatch import copy_bytes_per_token
from placer.costmodel.memory import usable_memory_bytes
from placer.costmodel.rules import rule_outcomes
from placer.costmodel.tables import default_expert_maps, edge_costs, layer_costs, phase_shapes, stage_pattern
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
    micro_prefill: int
    micro_decode: int
    # per layer class k, one layer on the fullest GPU of a stage:
    layer_bytes: tuple[float, ...]  # weights + KV cache
    layer_prefill_s: tuple[float, ...]  # per micro-batch
    layer_decode_s: tuple[float, ...]
    embed_bytes: float
    head_bytes: float  # LM head weights + logits workspace (last stage)
    fixed_bytes: float  # activation workspace + runtime reserve (every stage)
    embed_prefill_s: float
    embed_decode_s: float
    head_prefill_s: float
    head_decode_s: float
    sends_prefill_s: float  # all pipeline boundaries together
    sends_decode_s: float
    cross_node_bytes_per_token: float
    rules: dict[str, bool] = field(default_factory=dict)

    @property
    def admissible(self) -> bool:
        """All engine rules (R1)-(R6) hold."""
        return all(self.rules.values())

    def total_prefill_s(self, class_counts: tuple[int, ...]) -> float:
        """Sum of stage times (partition independent) plus sends: the first term of (F6)."""
        body = sum(n * t for n, t in zip(class_counts, self.layer_prefill_s, strict=True))
        return body + self.embed_prefill_s + self.head_prefill_s + self.sends_prefill_s

    def total_decode_s(self, class_counts: tuple[int, ...]) -> float:
        body = sum(n * t for n, t in zip(class_counts, self.layer_decode_s, strict=True))
        return body + self.embed_decode_s + self.head_decode_s + self.sends_decode_s


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


def enumerate_parallelisms(problem: Problem, cap: int) -> list[Parallelism]:
    """Every degree tuple with ``tp * dp_attn == ep * tp_moe`` and at most ``cap`` GPUs (D1-D3)."""
    model = problem.model
    heads = model.attention.num_heads
    experts = model.moe.num_experts if model.moe else 1
    widths = _powers_and_divisors(cap, heads, experts)
    out = []
    for width in widths:
        for tp in (v for v in widths if width % v == 0):
            for ep in (v for v in widths if width % v == 0):
                if model.moe is None and ep != 1:
                    continue
                for pp in range(1, min(model.num_layers, cap // width) + 1):
                    for replicas in range(1, cap // (width * pp) + 1):
                        out.append(
                            Parallelism(pp=pp, tp=tp, dp_attn=width // tp, ep=ep, tp_moe=width // ep, replicas=replicas)
                        )
    return out


def config_rules(problem: Problem, par: Parallelism) -> dict[str, bool]:
    """Engine rules (R1)-(R6) for one configuration on the default layout (``placer.costmodel.rules``)."""
    return rule_outcomes(problem.model, problem.fabric, par, default_layout(par, problem.fabric))


def build_config(problem: Problem, par: Parallelism, classes: tuple[int, ...], num_classes: int) -> Config:
    """Coefficients of one configuration from the cost model's tables (F1)."""
    rules = config_rules(problem, par)
    maps = default_expert_maps(problem, par)
    layout = default_layout(par, problem.fabric)
    pattern = stage_pattern(layout, 0, 0)
    costs = layer_costs(problem, par, pattern, maps)
    edges = edge_costs(problem, par, maps)
    pre, dec = phase_shapes(problem, par)
    per_class = []
    for k in range(num_classes):
        layer = classes.index(k)
        per_class.append(
            (
                float(costs.weight_bytes[layer] + costs.kv_bytes[layer]),
                float(costs.prefill_s[layer]),
                float(costs.decode_s[layer]),
            )
        )
    sends_pre = sends_dec = 0.0
    for s in range(par.pp - 1):
        # A boundary is as slow as its slowest replica: with several replicas the same boundary can
        # stay inside a node in one replica and leave it in another (the evaluator takes the same max).
        crosses = any(stage_pattern(layout, r, s).next_stage_crosses for r in range(par.replicas))
        sends_pre += edges.send_prefill_cross_s if crosses else edges.send_prefill_s
        sends_dec += edges.send_decode_cross_s if crosses else edges.send_decode_s
    traffic = [t for t in costs.traffic if t is not None]
    cross = copy_bytes_per_token(problem) * float(np.mean([t.dedup_scaleout for t in traffic])) if traffic else 0.0
    reserve = problem.hardware.runtime_reserve_gb * 1e9
    return Config(
        par=par,
        gpus=par.gpus,
        micro_prefill=pre.micro_batches,
        micro_decode=dec.micro_batches,
        layer_bytes=tuple(c[0] for c in per_class),
        layer_prefill_s=tuple(c[1] for c in per_class),
        layer_decode_s=tuple(c[2] for c in per_class),
        embed_bytes=edges.embed_weight_bytes,
        head_bytes=edges.head_weight_bytes + edges.logits_bytes,
        fixed_bytes=edges.workspace_bytes + reserve,
        embed_prefill_s=edges.embed_prefill_s,
        embed_decode_s=edges.embed_decode_s,
        head_prefill_s=edges.head_prefill_s,
        head_decode_s=edges.head_decode_s,
        sends_prefill_s=sends_pre,
        sends_decode_s=sends_dec,
        cross_node_bytes_per_token=cross,
        rules=rules,
    )


def memory_lower_bound_ok(usable: float, counts: tuple[int, ...], config: Config) -> bool:
    """(F9) aggregate memory: the fullest stage holds at least the mean of all stages."""
    total = sum(n * b for n, b in zip(counts, config.layer_bytes, strict=True)) + config.embed_bytes + config.head_bytes
    return total / config.par.pp + config.fixed_bytes <= usable


def build_formulation(problem: Problem, max_gpus: int | None = None, cap_reason: str = "--max-gpus") -> FormulationData:
    """Enumerate configurations, compute their coefficients, apply single-constraint presolve."""
    cap, reason = gpu_cap(problem, max_gpus, cap_reason)
    classes, names = layer_classes(problem)
    usable = usable_memory_bytes(problem)
    counts = tuple(classes.count(k) for k in range(len(names)))
    candidates = enumerate_parallelisms(problem, cap)
    configs = []
    presolved = 0
    for par in candidates:
        config = build_config(problem, par, classes, len(names))
        if not config.admissible or not memory_lower_bound_ok(usable, counts, config):
            presolved += 1
            continue
        configs.append(config)
    return formulation_data(problem, tuple(configs), cap, reason, len(candidates), presolved)


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
