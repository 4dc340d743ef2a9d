"""Cluster fabric: resolved link figures, the rank layout, and the networkx topology graph.

Ranks are laid out replica-major, then stage, then position inside the stage
(``rank = (replica * pp + stage) * width + w``), filling nodes in order. Inside a stage,
``w = dp_rank * tp + tp_rank`` for attention and ``w = ep_rank * tp_moe + moe_tp_rank`` for the
MoE block, so TP groups and MoE-TP groups are runs of consecutive ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx

from placer.schema import ClusterSpec, HardwareProfile, Parallelism


@dataclass(frozen=True)
class Fabric:
    """Link figures in SI units, per GPU and per direction, with utilisation applied."""

    gpus_per_node: int
    num_nodes: int | None
    nvlink_domain_gpus: int
    scaleup_bytes_per_s: float
    scaleup_latency_s: float
    scaleout_bytes_per_s: float
    scaleout_latency_s: float

    @property
    def max_gpus(self) -> int | None:
        return None if self.num_nodes is None else self.num_nodes * self.gpus_per_node


def resolve_fabric(hardware: HardwareProfile, cluster: ClusterSpec) -> Fabric:
    """Combine the hardware profile with the cluster's overrides into effective link rates."""
    eff = hardware.efficiency
    gpus_per_node = cluster.gpus_per_node or hardware.gpus_per_node
    domain = cluster.nvlink_domain_gpus or hardware.nvlink_domain_gpus or gpus_per_node
    scaleup_gb = cluster.scaleup_bandwidth_gb_per_s or hardware.scaleup_bandwidth_gb_per_s
    if cluster.scaleout_bandwidth_gb_per_s is not None:
        scaleout_gb = cluster.scaleout_bandwidth_gb_per_s
    elif cluster.scaleout_bandwidth_gb_per_s_per_node is not None:
        scaleout_gb = cluster.scaleout_bandwidth_gb_per_s_per_node / gpus_per_node
    else:
        scaleout_gb = hardware.scaleout_bandwidth_gb_per_s
    scaleout_gb /= cluster.scaleout_oversubscription
    up_lat = cluster.scaleup_latency_us if cluster.scaleup_latency_us is not None else hardware.scaleup_latency_us
    out_lat = cluster.scaleout_latency_us if cluster.scaleout_latency_us is not None else hardware.scaleout_latency_us
    return Fabric(
        gpus_per_node=gpus_per_node,
        num_nodes=cluster.num_nodes,
        nvlink_domain_gpus=domain,
        scaleup_bytes_per_s=scaleup_gb * 1e9 * eff.scaleup_bandwidth_utilisation,
        scaleup_latency_s=up_lat * 1e-6,
        scaleout_bytes_per_s=scaleout_gb * 1e9 * eff.scaleout_bandwidth_utilisation,
        scaleout_latency_s=out_lat * 1e-6,
    )


@dataclass(frozen=True)
class RankLayout:
    """Where each logical rank of a plan sits. ``node_of[rank]`` is a node index."""

    parallelism: Parallelism
    node_of: tuple[int, ...]
    #: NVLink domain of each rank (a node, or a rack-scale domain such as NVL72)
    domain_of: tuple[int, ...]
    #: ``D`` when rank ``i`` sits in domain ``i // D`` (the default fill order), else ``None``:
    #: a stage's domain pattern then depends only on where it starts within a domain.
    regular_domain_gpus: int | None = None

    def rank(self, replica: int, stage: int, w: int) -> int:
        par = self.parallelism
        return (replica * par.pp + stage) * par.stage_width + w

    def stage_domains(self, replica: int, stage: int) -> list[int]:
        """NVLink domain of every GPU of one stage, by position ``w``."""
        width = self.parallelism.stage_width
        return [self.domain_of[self.rank(replica, stage, w)] for w in range(width)]

    @property
    def num_nodes(self) -> int:
        return len(set(self.node_of))

    def groups_in_one_domain(self, group: int) -> bool:
        """Whether every run of ``group`` consecutive ranks starting at a multiple of ``group`` (a TP
        or MoE-TP group) sits in one NVLink domain."""
        gpus = self.parallelism.gpus
        if self.regular_domain_gpus is not None:
            return _regular_groups_in_one_domain(gpus, group, self.regular_domain_gpus)
        domain_of = self.domain_of
        return all(len(set(domain_of[i : i + group])) == 1 for i in range(0, gpus, group))


@lru_cache(maxsize=65536)
def _regular_groups_in_one_domain(gpus: int, group: int, domain: int) -> bool:
    """Rank ``i`` in domain ``i // domain``: domains rise with the rank, so a run is in one domain
    when its first and last rank are."""
    return all(i // domain == (min(i + group, gpus) - 1) // domain for i in range(0, gpus, group))


@lru_cache(maxsize=1024)
def _filled_in_order(gpus: int, gpus_per_node: int, nodes_per_domain: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Node and domain of each rank when consecutive ranks fill nodes in order (shared, immutable)."""
    nodes = tuple(rank // gpus_per_node for rank in range(gpus))
    return nodes, tuple(node // nodes_per_domain for node in nodes)


def default_layout(parallelism: Parallelism, fabric: Fabric, rank_to_node: list[int] | None = None) -> RankLayout:
    """Consecutive ranks fill nodes in order, unless the plan gives its own ``rank_to_node``."""
    # Several nodes may share one NVLink domain (GB200 NVL72: the domain is the rack).
    nodes_per_domain = max(1, fabric.nvlink_domain_gpus // fabric.gpus_per_node)
    if rank_to_node is None:
        nodes, domains = _filled_in_order(parallelism.gpus, fabric.gpus_per_node, nodes_per_domain)
        return RankLayout(parallelism, nodes, domains, fabric.gpus_per_node * nodes_per_domain)
    nodes = tuple(rank_to_node)
    return RankLayout(parallelism, nodes, tuple(node // nodes_per_domain for node in nodes), None)


def nodes_needed(gpus: int, fabric: Fabric) -> int:
    return math.ceil(gpus / fabric.gpus_per_node)


def topology_graph(fabric: Fabric, num_nodes: int) -> nx.Graph:
    """The cluster as a graph: one vertex per GPU, one NVSwitch vertex per NVLink domain, one
    network-switch vertex; edge attribute ``bytes_per_s`` is the effective per-direction rate.

    Later layers route all-to-all traffic over it and find the busiest link.
    """
    graph = nx.Graph()
    graph.add_node("fabric", kind="scaleout_switch")
    nodes_per_domain = max(1, fabric.nvlink_domain_gpus // fabric.gpus_per_node)
    for node in range(num_nodes):
        domain = node // nodes_per_domain
        switch = f"nvswitch{domain}"
        if switch not in graph:
            graph.add_node(switch, kind="scaleup_switch", domain=domain)
        for local in range(fabric.gpus_per_node):
            gpu = node * fabric.gpus_per_node + local
            graph.add_node(gpu, kind="gpu", node=node, domain=domain)
            graph.add_edge(gpu, switch, kind="scaleup", bytes_per_s=fabric.scaleup_bytes_per_s)
            # one rail per GPU: each GPU has its own NIC into the scale-out network
            graph.add_edge(gpu, "fabric", kind="scaleout", bytes_per_s=fabric.scaleout_bytes_per_s)
    return graph
