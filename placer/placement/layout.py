"""Rank-to-node layout and host order.

Logical ranks are ordered replica, stage, then position ``w`` in the stage (``w = dp * tp + t``
for attention, ``w = ep * tp_moe + m`` for experts), so TP and MoE-TP groups are runs of
consecutive ranks. Filling nodes in that order keeps every TP group inside a node whenever TP
divides the GPUs per node, and puts the EP ranks of a stage on as few nodes as possible
(``ceil(W / gpus_per_node)``), which is the fewest domains an EP group of that width can span.
The host order is the list of ``node:gpu`` a launcher assigns to ranks 0, 1, 2, ...
"""

from __future__ import annotations

import numpy as np

from placer.schema import Parallelism
from placer.topology import Fabric


def rank_to_node(par: Parallelism, fabric: Fabric) -> list[int]:
    return [rank // fabric.gpus_per_node for rank in range(par.gpus)]


def host_order(par: Parallelism, fabric: Fabric) -> list[str]:
    return [f"node{rank // fabric.gpus_per_node}:gpu{rank % fabric.gpus_per_node}" for rank in range(par.gpus)]


def ep_rank_nodes(par: Parallelism, fabric: Fabric, replica: int = 0, stage: int = 0) -> np.ndarray:
    """Domain of each EP rank of one stage, relabelled 0..N-1."""
    nodes_per_domain = max(1, fabric.nvlink_domain_gpus // fabric.gpus_per_node)
    base = (replica * par.pp + stage) * par.stage_width
    raw = [((base + r * par.tp_moe) // fabric.gpus_per_node) // nodes_per_domain for r in range(par.ep)]
    relabel: dict[int, int] = {}
    return np.array([relabel.setdefault(d, len(relabel)) for d in raw])


def tp_groups_inside_nodes(par: Parallelism, fabric: Fabric) -> bool:
    nodes = rank_to_node(par, fabric)
    return all(len(set(nodes[i : i + par.tp])) == 1 for i in range(0, par.gpus, par.tp))
