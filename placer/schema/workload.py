"""Workload, service-level objectives and objective."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from placer.schema.base import StrictModel
from placer.schema.limits import AtMost


class PromptTokens(StrictModel):
    """Prompt length range, in tokens. TTFT and prefill throughput are taken at ``max``."""

    min: Annotated[PositiveInt, AtMost("MAX_TOKENS")]
    max: Annotated[PositiveInt, AtMost("MAX_TOKENS")]

    @model_validator(mode="after")
    def _check(self) -> PromptTokens:
        if self.min > self.max:
            raise ValueError(f"min: {self.min} is larger than max {self.max}")
        return self


class Workload(StrictModel):
    """Concurrent sequences and their lengths.

    ``batch_size`` sequences arrive at once and stay resident through decode.
    """

    batch_size: Annotated[PositiveInt, AtMost("MAX_BATCH_SIZE")] = Field(description="concurrent sequences")
    prompt_tokens: PromptTokens
    output_tokens: Annotated[PositiveInt, AtMost("MAX_TOKENS")]
    decode_context_tokens: Annotated[PositiveInt, AtMost("MAX_TOKENS")] | None = Field(
        None, description="context at which TPOT and decode throughput are judged; default prompt max + output"
    )
    prefill_chunk_tokens: Annotated[PositiveInt, AtMost("MAX_TOKENS")] | None = Field(
        None,
        description="tokens per prefill forward per attention-DP rank (chunked prefill); "
        "default cost_parameters.default_prefill_chunk_tokens",
    )
    decode_tokens_per_step: Annotated[PositiveInt, AtMost("MAX_TOKENS_PER_STEP")] = Field(
        1,
        description="tokens each sequence runs through the model per decode step: 1, or 1 + draft tokens "
        "with speculative decoding / multi-token prediction (MTP)",
    )
    draft_acceptance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that a draft token is accepted; a step emits 1 + (tokens_per_step - 1) x "
        "acceptance tokens per sequence (DeepSeek-V3 reports 0.85-0.9 for its one MTP token)",
    )

    @property
    def max_context_tokens(self) -> int:
        return self.prompt_tokens.max + self.output_tokens

    @property
    def decode_context(self) -> int:
        return self.decode_context_tokens or self.max_context_tokens

    @property
    def output_tokens_per_step(self) -> float:
        """Tokens a decode step emits per sequence (D1 of the cost model): with drafts, the expected
        accepted run plus the token the verifying pass always yields."""
        return 1.0 + (self.decode_tokens_per_step - 1) * self.draft_acceptance


class SLOs(StrictModel):
    """Bounds every plan must meet. ``null`` means unconstrained."""

    ttft_s: Annotated[PositiveFloat, AtMost("MAX_SECONDS")] | None = Field(
        None, description="upper bound on time to first token"
    )
    tpot_ms: Annotated[PositiveFloat, AtMost("MAX_MILLISECONDS")] | None = Field(
        None, description="upper bound on time per output token"
    )
    min_prefill_tokens_per_ms_per_gpu: Annotated[PositiveFloat, AtMost("MAX_TOKENS_PER_MS_PER_GPU")] | None = None
    min_decode_tokens_per_ms_per_gpu: Annotated[PositiveFloat, AtMost("MAX_TOKENS_PER_MS_PER_GPU")] | None = None
    max_gpus: Annotated[PositiveInt, AtMost("MAX_GPUS")] | None = Field(None, description="GPU budget")


PrimaryObjective = Literal["min_gpus", "max_throughput_per_gpu", "min_cost_per_token"]
# Every tie-break here is a term of the formulation (J1)-(J4); a name the optimiser cannot honour
# is refused at load time rather than silently ignored.
TieBreak = Literal["min_cross_node_traffic", "min_gpus", "max_throughput_per_gpu", "min_ttft"]


class Objective(StrictModel):
    """Lexicographic objective: ``primary`` first, then each of ``tie_breaks`` in order."""

    primary: PrimaryObjective = "min_gpus"
    throughput_phase: Literal["prefill", "decode"] = Field(
        "decode", description="phase used by max_throughput_per_gpu and min_cost_per_token"
    )
    tie_breaks: list[TieBreak] = Field(default_factory=lambda: ["max_throughput_per_gpu", "min_cross_node_traffic"])
