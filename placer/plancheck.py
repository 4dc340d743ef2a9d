"""Is a plan physically possible on an instance? Every field of the plan against the model and cluster.

The plan schema checks what a plan says about itself (degrees that multiply out, stages that tile
from layer 0). What needs the instance is checked here, before the evaluator computes a figure: a
plan that puts 128 GPUs on one 8-GPU node, names node 99 of a 16-node cluster, maps experts of a
layer the model does not have, or leaves an expert without a GPU cannot run, and evaluating it
anyway would print better figures than any real deployment. Such a plan is an input error naming
the field (exit 2). A plan that can run but misses an SLO or an engine rule is not an error: the
evaluator reports it as infeasible.

Expert maps, when a plan gives one, list every MoE layer exactly once: every producer (``placer
place``, ``placer solve`` with placement, the slot probe) writes them that way, and a map that
covers some layers only is far more likely a truncated file than a wish for the contiguous default
on the others.
"""

from __future__ import annotations

from placer.errors import InputError
from placer.problem import Problem
from placer.schema import ModelSpec, Plan
from placer.schema.limits import MAX_TRAFFIC_CELLS
from placer.topology import Fabric, default_layout


def check_plan_fits_model(problem: Problem, plan: Plan, source: str | None = None) -> None:
    """Raise :class:`InputError` naming the first field of ``plan`` that ``problem`` cannot hold.

    Checks the layer partition, the rank-to-node map and ``nodes`` against the cluster, and the
    expert map against the model. ``source`` (the plan file, if any) is named in the messages.
    """
    _check_layers(problem.model, plan, source)
    _check_size(problem.model, plan, source)
    _check_rank_to_node(problem.fabric, plan, source)
    _check_nodes(problem.fabric, plan, source)
    _check_expert_map(problem.model, plan, source)


def _check_size(model: ModelSpec, plan: Plan, source: str | None) -> None:
    """Refuse a plan whose per-layer traffic arrays would exhaust memory (see MAX_TRAFFIC_CELLS)."""
    ep = plan.parallelism.ep
    experts = model.moe.num_experts if model.moe is not None else 1
    if ep * ep * experts > MAX_TRAFFIC_CELLS:
        raise InputError.single(
            "parallelism.ep",
            f"ep = {ep} with {experts} experts needs {ep * ep * experts:,} traffic cells per layer, above the "
            f"limit MAX_TRAFFIC_CELLS = {MAX_TRAFFIC_CELLS:,} (placer/schema/limits.py)",
            source,
        )


def _check_layers(model: ModelSpec, plan: Plan, source: str | None) -> None:
    if plan.num_layers != model.num_layers:
        raise InputError.single(
            f"stages[{len(plan.stages) - 1}].layers",
            f"the partition ends at layer {plan.num_layers - 1} but {model.name} has layers 0..{model.num_layers - 1}",
            source,
        )


def _check_rank_to_node(fabric: Fabric, plan: Plan, source: str | None) -> None:
    """Every rank on a node of the cluster, and no node holding more ranks than it has GPUs."""
    if plan.rank_to_node is None:
        return
    held: dict[int, list[int]] = {}
    for rank, node in enumerate(plan.rank_to_node):
        where = f"rank_to_node[{rank}]"
        if node < 0:
            raise InputError.single(where, f"node {node} is not a node index (nodes are numbered from 0)", source)
        if fabric.num_nodes is not None and node >= fabric.num_nodes:
            raise InputError.single(
                where, f"node {node} does not exist (the cluster has {fabric.num_nodes} nodes)", source
            )
        ranks = held.setdefault(node, [])
        if len(ranks) == fabric.gpus_per_node:
            shown = ", ".join(str(r) for r in ranks[:4]) + (", ..." if len(ranks) > 4 else "")
            raise InputError.single(
                where,
                f"node {node} is full: it has {fabric.gpus_per_node} GPUs and ranks {shown} already sit on it",
                source,
            )
        ranks.append(rank)


def _check_nodes(fabric: Fabric, plan: Plan, source: str | None) -> None:
    """``nodes`` is what the evaluator writes back: the nodes the plan's ranks occupy."""
    if plan.nodes is None:
        return
    used = default_layout(plan.parallelism, fabric, plan.rank_to_node).num_nodes
    if plan.nodes != used:
        how = (
            "the distinct nodes in rank_to_node"
            if plan.rank_to_node is not None
            else f"{plan.gpus} GPUs filling nodes of {fabric.gpus_per_node} in order"
        )
        raise InputError.single("nodes", f"the plan says {plan.nodes} but its ranks occupy {used} ({how})", source)


def _check_expert_map(model: ModelSpec, plan: Plan, source: str | None) -> None:
    """Each MoE layer mapped exactly once; per layer ``ep`` rank lists of distinct, in-range experts,
    every expert on at least one rank.

    No expert twice on one rank is also what keeps the slots consistent with the memory the
    evaluator charges (one expert's weights per distinct expert a GPU holds)."""
    if plan.expert_map is None:
        return
    moe = model.moe
    if moe is None:
        raise InputError.single("expert_map", f"{model.name} has no MoE layers", source)
    first_at: dict[int, int] = {}
    for index, entry in enumerate(plan.expert_map):
        where = f"expert_map[{index}]"
        if entry.layer >= model.num_layers:
            raise InputError.single(
                f"{where}.layer",
                f"layer {entry.layer} does not exist ({model.name} has layers 0..{model.num_layers - 1})",
                source,
            )
        if not model.is_moe_layer(entry.layer):
            raise InputError.single(f"{where}.layer", f"layer {entry.layer} is not an MoE layer", source)
        if entry.layer in first_at:
            raise InputError.single(
                f"{where}.layer",
                f"layer {entry.layer} is mapped twice (first at expert_map[{first_at[entry.layer]}])",
                source,
            )
        first_at[entry.layer] = index
        _check_layer_slots(entry.gpus, plan.parallelism.ep, moe.num_experts, where, source)
    missing = [layer for layer in model.moe_layers if layer not in first_at]
    if missing:
        shown = ", ".join(str(layer) for layer in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError.single(
            "expert_map",
            f"MoE layers {shown} have no map ({len(missing)} of {len(model.moe_layers)}); "
            "a map, when given, covers every MoE layer",
            source,
        )


def _check_layer_slots(gpus: list[list[int]], ep: int, num_experts: int, where: str, source: str | None) -> None:
    if len(gpus) != ep:
        raise InputError.single(f"{where}.gpus", f"{len(gpus)} EP ranks listed for ep = {ep}", source)
    seen: set[int] = set()
    for rank, experts in enumerate(gpus):
        if len(set(experts)) != len(experts):
            raise InputError.single(f"{where}.gpus[{rank}]", "an expert appears twice on one GPU", source)
        bad = [e for e in experts if not 0 <= e < num_experts]
        if bad:
            raise InputError.single(
                f"{where}.gpus[{rank}]", f"expert {bad[0]} is out of range 0..{num_experts - 1}", source
            )
        seen.update(experts)
    if len(seen) != num_experts:
        missing = sorted(set(range(num_experts)) - seen)[:5]
        raise InputError.single(f"{where}.gpus", f"experts {missing} have no slot", source)
