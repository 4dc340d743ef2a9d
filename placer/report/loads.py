"""Per-(layer, GPU) expert load and per-GPU all-to-all traffic of a plan, for the pictures.

The figures come from the cost model's per-layer tables (:func:`placer.costmodel.tables.layer_costs`)
with the plan's expert map (:func:`placer.evaluator.plan_expert_maps`) and rank layout, exactly
as the evaluator builds them; nothing is recomputed here. When routing statistics reach the cost
model's traffic tables: the instance's statistics, exactly as the evaluator passes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placer.costmodel.dispatch import copy_bytes_per_token
from placer.costmodel.tables import LayerCosts, layer_costs, stage_pattern
from placer.evaluator import plan_expert_maps
from placer.problem import Problem
from placer.schema import Plan
from placer.topology import RankLayout, default_layout


@dataclass(frozen=True)
class PlanLoads:
    """Loads of replica 0 of a plan (replicas are identical under the default layout).

    ``expert_load[i, rank]``: expected (token, expert) pairs GPU ``rank`` computes per token
    entering MoE layer ``moe_layers[i]`` (NaN where the layer is not on that GPU's stage); a
    stage's row sums to ``top_k * tp_moe``.
    ``scaleout_bytes[rank]`` / ``scaleup_bytes[rank]``: all-to-all bytes per token per MoE layer
    leaving the GPU's NVLink domain / staying inside it (node-deduplicated accounting, mean over
    the stage's MoE layers).
    """

    moe_layers: tuple[int, ...]
    expert_load: np.ndarray
    stage_of_rank: tuple[int, ...]
    scaleout_bytes: np.ndarray
    scaleup_bytes: np.ndarray
    layout: RankLayout


def _stage_costs(problem: Problem, plan: Plan, layout: RankLayout) -> list[LayerCosts]:
    maps = plan_expert_maps(problem, plan)
    routing = problem.routing_stats
    return [
        layer_costs(problem, plan.parallelism, stage_pattern(layout, 0, s), maps, routing)
        for s in range(plan.parallelism.pp)
    ]


def plan_loads(problem: Problem, plan: Plan) -> PlanLoads:
    """Expert load per (MoE layer, GPU) and all-to-all bytes per GPU for replica 0 of ``plan``."""
    par = plan.parallelism
    width = par.stage_width
    layout = default_layout(par, problem.fabric, plan.rank_to_node)
    model = problem.model
    moe_layers = tuple(model.moe_layers) if model.moe is not None else ()
    gpus = par.pp * width
    load = np.full((len(moe_layers), gpus), np.nan)
    out = np.zeros(gpus)
    up = np.zeros(gpus)
    copy = copy_bytes_per_token(problem)
    row_of = {layer: i for i, layer in enumerate(moe_layers)}
    for s, costs in enumerate(_stage_costs(problem, plan, layout) if moe_layers else []):
        stage = plan.stages[s]
        ranks = slice(s * width, (s + 1) * width)
        traffics = [
            (layer, costs.traffic[layer])
            for layer in range(stage.first, stage.last + 1)
            if costs.traffic[layer] is not None
        ]
        for layer, traffic in traffics:
            load[row_of[layer], ranks] = traffic.gpu_pairs_per_token
        if traffics:
            out[ranks] = copy * float(np.mean([t.dedup_scaleout for _, t in traffics]))
            up[ranks] = copy * float(np.mean([t.dedup_scaleup for _, t in traffics]))
    stage_of_rank = tuple(rank // width for rank in range(gpus))
    return PlanLoads(moe_layers, load, stage_of_rank, out, up, layout)
