"""Workload, service-level objectives and objective."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from placer.schema.base import StrictModel
from placer.schema.limits import AtMost


class PromptTokens(StrictModel):
    """Prompt length range, in tokens. Burst TTFT and prefill throughput are taken at ``max``; the
    serving model (kinds other than ``burst``) at ``mean`` when given, else at ``max``."""

    min: Annotated[PositiveInt, AtMost("MAX_TOKENS")]
    max: Annotated[PositiveInt, AtMost("MAX_TOKENS")]
    mean: Annotated[PositiveFloat, AtMost("MAX_TOKENS")] | None = Field(
        None, description="mean prompt length (serving kinds); default max"
    )

    @model_validator(mode="after")
    def _check(self) -> PromptTokens:
        if self.min > self.max:
            raise ValueError(f"min: {self.min} is larger than max {self.max}")
        if self.mean is not None and not self.min <= self.mean <= self.max:
            raise ValueError(f"mean: {self.mean:g} is outside [min, max] = [{self.min}, {self.max}]")
        return self


#: How requests reach the deployment (``docs/cost-model.md``, "Serving workloads").
WorkloadKind = Literal["burst", "offline", "concurrency", "rate"]

#: Which statistic of a per-request latency an SLO bounds.
Percentile = Literal["mean", "p50", "p90", "p99"]


class Workload(StrictModel):
    """How requests arrive, and their lengths.

    ``kind``:

    - ``burst`` (the default, and the meaning of every ``placer.instance/1`` file): ``batch_size``
      sequences arrive at once and stay resident through decode; TTFT is the prefill of the wave.
    - ``offline``: as many requests in flight per replica as KV memory (and ``max_batch_size``)
      allow; the figure of merit is throughput (trtllm-bench, MLPerf Offline).
    - ``concurrency``: a closed loop of ``concurrency`` requests in flight on the whole deployment,
      each replaced when it finishes (``benchmark_serving --max-concurrency``).
    - ``rate``: open-loop Poisson arrivals at ``rate_rps`` requests/s (MLPerf Server).

    For the serving kinds ``batch_size`` is optional: it sizes only the burst-mode figures that
    the solver still uses (memory per GPU at that many resident sequences); when absent it is
    ``concurrency`` for ``concurrency`` and 1 otherwise (the serving model checks KV memory itself).
    """

    kind: WorkloadKind = Field("burst", description="burst | offline | concurrency | rate")
    batch_size: Annotated[PositiveInt, AtMost("MAX_BATCH_SIZE")] = Field(
        description="concurrent sequences (required for kind burst)"
    )
    concurrency: Annotated[PositiveInt, AtMost("MAX_BATCH_SIZE")] | None = Field(
        None, description="requests in flight on the whole deployment (kind concurrency)"
    )
    rate_rps: Annotated[PositiveFloat, AtMost("MAX_TOKENS_PER_MS_PER_GPU")] | None = Field(
        None, description="Poisson arrival rate on the whole deployment, requests/s (kind rate)"
    )
    max_batch_size: Annotated[PositiveInt, AtMost("MAX_BATCH_SIZE")] | None = Field(
        None, description="engine's maximum of running requests per replica (serving kinds)"
    )
    output_tokens_mean: Annotated[PositiveFloat, AtMost("MAX_TOKENS")] | None = Field(
        None, description="mean output length (serving kinds); default output_tokens"
    )
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

    @model_validator(mode="before")
    @classmethod
    def _default_batch(cls, data: Any) -> Any:
        """Serving kinds may omit ``batch_size`` (see the class docstring for its default)."""
        if isinstance(data, dict) and data.get("kind", "burst") != "burst" and data.get("batch_size") is None:
            concurrency = data.get("concurrency")
            kind = data.get("kind")
            fill = concurrency if kind == "concurrency" and isinstance(concurrency, int) else 1
            data = {**data, "batch_size": fill}
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> Workload:
        if self.kind == "concurrency" and self.concurrency is None:
            raise ValueError("concurrency: required for kind 'concurrency' (requests in flight on the deployment)")
        if self.kind == "rate" and self.rate_rps is None:
            raise ValueError("rate_rps: required for kind 'rate' (Poisson arrivals, requests/s)")
        if self.kind != "concurrency" and self.concurrency is not None:
            raise ValueError(f"concurrency: only meaningful for kind 'concurrency', not {self.kind!r}")
        if self.kind != "rate" and self.rate_rps is not None:
            raise ValueError(f"rate_rps: only meaningful for kind 'rate', not {self.kind!r}")
        if self.kind == "burst":
            for name in ("max_batch_size", "output_tokens_mean"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only meaningful for the serving kinds, not 'burst'")
            if self.prompt_tokens.mean is not None:
                raise ValueError("prompt_tokens.mean: only meaningful for the serving kinds, not 'burst'")
        if self.output_tokens_mean is not None and self.output_tokens_mean > self.output_tokens:
            raise ValueError(
                f"output_tokens_mean: {self.output_tokens_mean:g} is larger than output_tokens {self.output_tokens}"
            )
        return self

    @property
    def serving_prompt_tokens(self) -> float:
        """ISL of the serving model: the mean prompt when given, else the longest."""
        return self.prompt_tokens.mean or float(self.prompt_tokens.max)

    @property
    def serving_output_tokens(self) -> float:
        """OSL of the serving model: the mean output when given, else ``output_tokens``."""
        return self.output_tokens_mean or float(self.output_tokens)

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
    ttft_percentile: Percentile = Field(
        "mean", description="statistic of per-request TTFT that ttft_s bounds (serving kinds)"
    )
    tpot_percentile: Percentile = Field(
        "mean", description="statistic of per-request TPOT that tpot_ms bounds (serving kinds)"
    )


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
    concurrency: Literal["given", "auto"] = Field(
        "given",
        description="kind concurrency: 'given' serves workload.concurrency requests in flight; 'auto' lets "
        "placer solve choose the largest concurrency per replica that meets the SLOs, workload.concurrency "
        "then being the most on the deployment",
    )
