"""Collective communication times, alpha-beta (equations C1-C4 of ``docs/cost-model.md``)."""

from __future__ import annotations

import math

from placer.topology import Fabric


def link_rate(fabric: Fabric, crosses_domain: bool) -> tuple[float, float]:
    """(bytes per second, latency in seconds) of the link class a group uses."""
    if crosses_domain:
        return fabric.scaleout_bytes_per_s, fabric.scaleout_latency_s
    return fabric.scaleup_bytes_per_s, fabric.scaleup_latency_s


def allreduce_time_s(message_bytes: float, group: int, fabric: Fabric, crosses_domain: bool, algorithm: str) -> float:
    """(C1) Ring: ``2 (p-1)/p * M / bw + 2 (p-1) alpha``; tree: ``2 M / bw + 2 log2(p) alpha``.

    (C1a) ``custom``: the engines' own all-reduce inside one NVLink domain (vLLM's and SGLang's
    ``cross_device_reduce_1stage`` / ``_2stage``, TensorRT-LLM's one-shot / two-shot), which read
    the peers' buffers directly: one-shot ``(p-1) M / bw + 2 alpha`` (every GPU reads all peers'
    inputs; a barrier before and after), two-shot ``2 (p-1)/p * M / bw + 3 alpha`` (reduce-scatter
    and all-gather by peer reads, three barriers), whichever is faster (the engines switch at a
    message size); across domains the ring."""
    if group <= 1 or message_bytes <= 0:
        return 0.0
    rate, latency = link_rate(fabric, crosses_domain)
    if algorithm == "tree":
        return 2.0 * message_bytes / rate + 2.0 * math.log2(group) * latency
    ring = 2.0 * (group - 1) / group * message_bytes / rate + 2.0 * (group - 1) * latency
    if algorithm == "custom" and not crosses_domain:
        one_shot = (group - 1) * message_bytes / rate + 2.0 * latency
        two_shot = 2.0 * (group - 1) / group * message_bytes / rate + 3.0 * latency
        return min(one_shot, two_shot)
    return ring


def allgather_time_s(message_bytes: float, group: int, fabric: Fabric, crosses_domain: bool) -> float:
    """(C2) Ring all-gather (or reduce-scatter) of a ``M``-byte result: ``(p-1)/p * M / bw + (p-1) alpha``."""
    if group <= 1 or message_bytes <= 0:
        return 0.0
    rate, latency = link_rate(fabric, crosses_domain)
    return (group - 1) / group * message_bytes / rate + (group - 1) * latency


def alltoall_time_s(scaleup_bytes: float, scaleout_bytes: float, fabric: Fabric) -> float:
    """(C3) One all-to-all leg: the slower link class decides, plus one latency of the slowest used.

    NVLink and the NICs run concurrently, so the time is ``max(up / bw_up, out / bw_out)``.
    """
    if scaleup_bytes <= 0 and scaleout_bytes <= 0:
        return 0.0
    latency = fabric.scaleout_latency_s if scaleout_bytes > 0 else fabric.scaleup_latency_s
    return max(scaleup_bytes / fabric.scaleup_bytes_per_s, scaleout_bytes / fabric.scaleout_bytes_per_s) + latency


def p2p_time_s(message_bytes: float, fabric: Fabric, crosses_domain: bool) -> float:
    """(C4) Point-to-point send between pipeline stages: ``M / bw + alpha``."""
    if message_bytes <= 0:
        return 0.0
    rate, latency = link_rate(fabric, crosses_domain)
    return message_bytes / rate + latency
