"""KV-cache transfer between the prefill and the decode pool of a disaggregated deployment.

Equations (K1)-(K5) of ``docs/cost-model.md`` ("Disaggregated prefill and decode"). Units: bytes,
seconds, bytes per second per GPU per direction (the fabric's figures, utilisation applied).

(K1) bytes per request = KV bytes per token (all layers, unsplit; MLA's compressed latent as it
     is cached) x prompt tokens.
(K2) lanes: the GPUs that hold *distinct* parts of one request's KV and send them in parallel:
     pp stages x the TP shards of the KV (GQA heads split over TP; MLA's latent is replicated on
     every TP rank, so 1). The receiving side has its own lanes; the fewer bound the transfer.
(K3) the path: NVLink when both pools sit inside one NVLink domain, else the scale-out NICs.
(K4) one transfer alone: ``latency + bytes / (lanes x link bytes/s)``.
(K5) many transfers share the links: every lane of the pool is a processor-sharing server, loaded
     ``rho = rate x bytes / (total lanes x link bytes/s)`` (the busier side); the mean transfer time
     of an M/G/1-PS queue is the lone time over ``1 - rho``, and at ``rho >= 1`` the links cannot
     carry the load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from placer.costmodel.layers import attention_dims, kv_bytes_per_token
from placer.schema import ModelSpec, Parallelism
from placer.topology import Fabric


def kv_bytes_per_request(model: ModelSpec, prompt_tokens: float) -> float:
    """(K1) Bytes of KV cache one request's prompt leaves behind, sent whole to the decode pool."""
    return kv_bytes_per_token(model) * prompt_tokens


def kv_shards(model: ModelSpec, tp: int) -> int:
    """TP ranks that hold distinct parts of a sequence's KV: GQA splits KV heads over TP (up to the
    KV heads), MLA's latent is replicated on every rank."""
    whole = attention_dims(model, 1).kv_bytes_per_token
    per_rank = attention_dims(model, tp).kv_bytes_per_token
    return max(1, round(whole / per_rank)) if per_rank > 0 else 1


def lanes_per_request(model: ModelSpec, par: Parallelism) -> int:
    """(K2) GPUs of one pool that send (or receive) distinct parts of one request's KV at once."""
    return par.pp * kv_shards(model, par.tp)


def lanes_in_pool(model: ModelSpec, par: Parallelism) -> int:
    """(K5) All such lanes in the pool: one per attention group and stage and KV shard."""
    return par.replicas * par.dp_attn * lanes_per_request(model, par)


@dataclass(frozen=True)
class KvPath:
    """Where the KV travels: ``nvlink`` (one NVLink domain holds both pools) or ``scaleout``."""

    kind: str
    bytes_per_s: float  # per GPU per direction
    latency_s: float

    @property
    def crosses_nodes(self) -> bool:
        return self.kind == "scaleout"


def kv_path(fabric: Fabric, nodes_prefill: list[int], nodes_decode: list[int]) -> KvPath:
    """(K3) NVLink when every node of both pools lies in one NVLink domain (a node, or a rack-scale
    domain of ``nvlink_domain_gpus`` GPUs), else the scale-out fabric."""
    per_domain = max(1, fabric.nvlink_domain_gpus // fabric.gpus_per_node)
    domains = {node // per_domain for node in [*nodes_prefill, *nodes_decode]}
    if len(domains) <= 1:
        return KvPath("nvlink", fabric.scaleup_bytes_per_s, fabric.scaleup_latency_s)
    return KvPath("scaleout", fabric.scaleout_bytes_per_s, fabric.scaleout_latency_s)


@dataclass(frozen=True)
class KvTransfer:
    """The KV transfer of one request and the load all of them put on the path (K1-K5)."""

    path: KvPath
    bytes_per_request: float
    lanes: int  # min of the two sides' lanes per request
    link_utilisation: float  # rho of the busier side's lanes
    alone_s: float  # (K4)
    mean_s: float  # (K5), infinite at rho >= 1

    @property
    def stable(self) -> bool:
        return self.link_utilisation < 1

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path.kind,
            "bytes_per_request": self.bytes_per_request,
            "lanes": self.lanes,
            "link_utilisation": self.link_utilisation,
            "alone_ms": self.alone_s * 1e3,
            "mean_ms": self.mean_s * 1e3,
        }


def kv_transfer(
    model: ModelSpec,
    prefill: Parallelism,
    decode: Parallelism,
    path: KvPath,
    prompt_tokens: float,
    rate_rps: float,
) -> KvTransfer:
    """(K1)-(K5) for ``rate_rps`` requests per second of ``prompt_tokens`` prompt tokens."""
    size = kv_bytes_per_request(model, prompt_tokens)
    lanes = min(lanes_per_request(model, prefill), lanes_per_request(model, decode))
    alone = path.latency_s + size / (lanes * path.bytes_per_s)
    capacity = min(lanes_in_pool(model, prefill), lanes_in_pool(model, decode)) * path.bytes_per_s
    rho = rate_rps * size / capacity
    mean = alone / (1 - rho) if rho < 1 else math.inf
    return KvTransfer(path, size, lanes, rho, alone, mean)
