"""How a workload divides over a plan's degrees: sequences and tokens per micro-batch and rank.

Equations (S1)-(S6) of ``docs/cost-model.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from placer.schema import CostParameters, Parallelism, Workload


@dataclass(frozen=True)
class PhaseShape:
    """Work of one pipeline micro-batch on one stage.

    ``seqs_per_rank`` and ``tokens_per_rank`` are for the busiest attention-DP rank (ceil);
    ``tokens_per_stage`` is what the MoE block of the stage sees from all DP ranks together.
    """

    phase: str  # "prefill" or "decode"
    micro_batches: int
    seqs_per_rank: int
    tokens_per_rank: int
    tokens_per_stage: int
    context_tokens: int  # attention span: prompt length (prefill) or KV length (decode)
    forwards_per_micro_batch: int  # chunked prefill: weights are read once per forward
    seqs_per_replica: int

    @property
    def tokens_per_replica(self) -> int:
        """Tokens a replica processes per pass of the whole batch (S6)."""
        per_seq = self.context_tokens if self.phase == "prefill" else self.tokens_per_rank / self.seqs_per_rank
        return int(self.seqs_per_replica * per_seq)


def seqs_per_replica(workload: Workload, par: Parallelism) -> int:
    """(S1) ``ceil(B / replicas)``."""
    return math.ceil(workload.batch_size / par.replicas)


def seqs_per_dp_rank(workload: Workload, par: Parallelism) -> int:
    """(S2) ``ceil(ceil(B / replicas) / dp_attn)``: sequences resident on one attention-DP rank."""
    return math.ceil(seqs_per_replica(workload, par) / par.dp_attn)


def _micro_batches(requested: int | None, par: Parallelism, seqs_rank: int) -> int:
    """(S3) ``min(requested or pp, sequences per DP rank)``: a micro-batch holds whole sequences."""
    return max(1, min(requested or par.pp, seqs_rank))


def prefill_shape(workload: Workload, par: Parallelism, params: CostParameters) -> PhaseShape:
    """Prefill of the whole batch at the longest prompt (S4)."""
    s_rep = seqs_per_replica(workload, par)
    s_rank = seqs_per_dp_rank(workload, par)
    m = _micro_batches(params.prefill_micro_batches, par, s_rank)
    seqs_mb = math.ceil(s_rank / m)
    length = workload.prompt_tokens.max
    tokens_rank = seqs_mb * length
    chunk = workload.prefill_chunk_tokens or params.default_prefill_chunk_tokens
    forwards = math.ceil(tokens_rank / chunk)
    tokens_stage = math.ceil(s_rep / m) * length
    return PhaseShape("prefill", m, seqs_mb, tokens_rank, tokens_stage, length, forwards, s_rep)


def decode_shape(workload: Workload, par: Parallelism, params: CostParameters) -> PhaseShape:
    """One decode step of the resident batch at the decode context (S5)."""
    s_rep = seqs_per_replica(workload, par)
    s_rank = seqs_per_dp_rank(workload, par)
    m = _micro_batches(params.decode_micro_batches, par, s_rank)
    seqs_mb = math.ceil(s_rank / m)
    per_seq = workload.decode_tokens_per_step  # with MTP / speculative drafts every sequence runs several
    tokens_stage = math.ceil(s_rep / m) * per_seq
    return PhaseShape("decode", m, seqs_mb, seqs_mb * per_seq, tokens_stage, workload.decode_context, 1, s_rep)


def activation_tokens_per_rank(workload: Workload, par: Parallelism, params: CostParameters) -> int:
    """Tokens one forward holds activations for on a DP rank: the prefill chunk (S7).

    With two-batch overlap a forward runs as two half micro-batches whose large intermediates
    are not live at the same time, so the workspace is sized for half the chunk (the memory
    saving SGLang reports for its two-batch overlap).
    """
    shape = prefill_shape(workload, par, params)
    tokens = min(shape.tokens_per_rank, workload.prefill_chunk_tokens or params.default_prefill_chunk_tokens)
    return math.ceil(tokens / 2) if params.two_batch_overlap else tokens
