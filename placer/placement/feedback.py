"""Feeding a placement's real load and traffic back into the strategy model (re-solve loop).

The strategy model costs every MoE layer at balanced, uniform routing. After placement the
evaluator prices the placed plan with the routing statistics. When that plan breaks an SLO, the
configuration's MoE-layer times are scaled by the *measured factor*: the smallest ratio, over the
plan's MoE layers, of the placed time to the balanced time, per phase. Every layer's placed time
is at least that factor times its balanced time, so the scaled configuration stays a lower bound
for this placement whatever the partition (``docs/formulation.md``, re-solve).
"""

from __future__ import annotations

import dataclasses

from placer.costmodel.phase import PerPhase
from placer.costmodel.tables import default_expert_maps, layer_costs, stage_pattern
from placer.evaluator import plan_expert_maps
from placer.formulation.data import Config
from placer.problem import Problem
from placer.schema import Plan
from placer.topology import default_layout


@dataclasses.dataclass(frozen=True)
class MeasuredFactors:
    """Placed over balanced MoE-layer time, the smallest over the plan's MoE layers, per phase."""

    prefill: float
    decode: float


def measured_factors(problem: Problem, placed: Plan) -> MeasuredFactors:
    """Factors of ``placed`` (its expert map, the instance's statistics) against the balanced model."""
    par = placed.parallelism
    layout = default_layout(par, problem.fabric, placed.rank_to_node)
    routing = problem.routing_stats
    real_maps, flat_maps = plan_expert_maps(problem, placed), default_expert_maps(problem, par)
    pre, dec = [], []
    for s, stage in enumerate(placed.stages):
        pattern = stage_pattern(layout, 0, s)
        real = layer_costs(problem, par, pattern, real_maps, routing)
        flat = layer_costs(problem, par, pattern, flat_maps, None)
        for layer in range(stage.first, stage.last + 1):
            if problem.model.is_moe_layer(layer):
                pre.append(float(real.prefill_s[layer] / flat.prefill_s[layer]))
                dec.append(float(real.decode_s[layer] / flat.decode_s[layer]))
    return MeasuredFactors(min(pre, default=1.0), min(dec, default=1.0))


def scale_config(config: Config, class_names: tuple[str, ...], factors: MeasuredFactors) -> Config:
    """``config`` with its MoE-class layer times multiplied by the measured factors."""

    def scaled(times: tuple[float, ...], factor: float) -> tuple[float, ...]:
        return tuple(t * factor if name == "moe" else t for t, name in zip(times, class_names, strict=True))

    return dataclasses.replace(
        config,
        layer_s=PerPhase(
            scaled(config.layer_s["prefill"], factors.prefill), scaled(config.layer_s["decode"], factors.decode)
        ),
    )
