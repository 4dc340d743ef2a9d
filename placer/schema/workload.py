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


class LengthDistribution(StrictModel):
    """A length distribution (serving kinds): a histogram of ``[tokens, weight]`` pairs, or a
    ``file`` of lengths (JSON list, or text/CSV with one length a line), read relative to the
    instance's folder at load (:mod:`placer.workload_files`) into ``histogram``. The serving model
    takes the weighted mean; the simulator samples from it."""

    histogram: (
        list[tuple[Annotated[PositiveInt, AtMost("MAX_TOKENS")], Annotated[PositiveFloat, Field(allow_inf_nan=False)]]]
        | None
    ) = Field(None, description="[tokens, weight] pairs; weights > 0, need not sum to 1")
    file: str | None = Field(None, description="path of a file of lengths (JSON list, or one length a line)")

    @model_validator(mode="after")
    def _check(self) -> LengthDistribution:
        if self.histogram is None and self.file is None:
            raise ValueError("histogram: give a histogram of [tokens, weight] pairs or a file of lengths")
        if self.histogram is not None:
            if not self.histogram:
                raise ValueError("histogram: empty")
            seen: set[int] = set()
            for tokens, _ in self.histogram:
                if tokens in seen:
                    raise ValueError(f"histogram: {tokens} tokens appears more than once")
                seen.add(tokens)
        return self

    @property
    def mean(self) -> float:
        assert self.histogram is not None, "a file distribution is read at load (placer.problem)"
        total = sum(w for _, w in self.histogram)
        return sum(t * w for t, w in self.histogram) / total

    @property
    def lowest(self) -> int:
        assert self.histogram is not None
        return min(t for t, _ in self.histogram)

    @property
    def highest(self) -> int:
        assert self.histogram is not None
        return max(t for t, _ in self.histogram)


class ArrivalTrace(StrictModel):
    """Arrival times of a ``rate`` workload (seconds from the trace's start, non-decreasing), with
    optional per-request prompt and output lengths; from a ``file`` (CSV ``arrival_s[,prompt_tokens,
    output_tokens]`` a line, or a JSON list of numbers or of objects with those keys), read relative
    to the instance's folder at load into the lists below, or given inline."""

    file: str | None = Field(None, description="path of a trace file")
    arrival_s: list[Annotated[float, Field(ge=0), AtMost("MAX_SECONDS")]] | None = Field(
        None, description="arrival times, s, non-decreasing"
    )
    prompt_tokens: list[Annotated[PositiveInt, AtMost("MAX_TOKENS")]] | None = None
    output_tokens: list[Annotated[PositiveInt, AtMost("MAX_TOKENS")]] | None = None

    @model_validator(mode="after")
    def _check(self) -> ArrivalTrace:
        if self.arrival_s is None:
            if self.file is None:
                raise ValueError("arrival_s: give a trace file or the arrival times")
            if self.prompt_tokens is not None or self.output_tokens is not None:
                raise ValueError("prompt_tokens: per-request lengths come with arrival_s (or in the file)")
            return self
        times = self.arrival_s
        if len(times) < 2:
            raise ValueError(f"arrival_s: {len(times)} arrivals; a rate needs at least 2")
        for index in range(1, len(times)):
            if times[index] < times[index - 1]:
                raise ValueError(
                    f"arrival_s: not non-decreasing at request {index} ({times[index]:g} < {times[index - 1]:g})"
                )
        if times[-1] <= times[0]:
            raise ValueError("arrival_s: every arrival at the same time; the trace has no rate")
        if (self.prompt_tokens is None) != (self.output_tokens is None):
            raise ValueError("prompt_tokens: give both per-request lengths (prompt and output) or neither")
        for name in ("prompt_tokens", "output_tokens"):
            values = getattr(self, name)
            if values is not None and len(values) != len(times):
                raise ValueError(f"{name}: {len(values)} lengths for {len(times)} arrivals")
        return self

    @property
    def has_lengths(self) -> bool:
        return self.prompt_tokens is not None

    @property
    def mean_rate_rps(self) -> float:
        """(n - 1) arrivals over the span from the first to the last: the mean inter-arrival gap's inverse."""
        assert self.arrival_s is not None, "a trace file is read at load (placer.problem)"
        return (len(self.arrival_s) - 1) / (self.arrival_s[-1] - self.arrival_s[0])


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
    demand_output_tokens_per_s: Annotated[PositiveFloat, AtMost("MAX_TOKENS_PER_MS_PER_GPU")] | None = Field(
        None,
        description="kind rate: the demand in output tokens/s on the whole deployment; rate_rps = demand / mean "
        "output length",
    )
    arrival_trace: ArrivalTrace | None = Field(
        None, description="kind rate: arrival times (and lengths) to replay; the mean rate sets the analytic load"
    )
    prompt_tokens: PromptTokens
    output_tokens: Annotated[PositiveInt, AtMost("MAX_TOKENS")]
    prompt_length_distribution: LengthDistribution | None = Field(
        None, description="serving kinds: prompt lengths, within [prompt_tokens.min, prompt_tokens.max]"
    )
    output_length_distribution: LengthDistribution | None = Field(
        None, description="serving kinds: output lengths, within [1, output_tokens]"
    )
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
        loads = [
            name
            for name in ("rate_rps", "demand_output_tokens_per_s", "arrival_trace")
            if getattr(self, name) is not None
        ]
        if self.kind == "rate" and not loads:
            raise ValueError(
                "rate_rps: required for kind 'rate' (Poisson arrivals, requests/s), unless "
                "demand_output_tokens_per_s or arrival_trace gives the load"
            )
        if self.kind == "rate" and len(loads) > 1:
            raise ValueError(
                f"{loads[-1]}: kind 'rate' needs exactly one of rate_rps, demand_output_tokens_per_s, "
                f"arrival_trace; got {', '.join(loads)}"
            )
        for name in loads:
            if self.kind != "rate":
                raise ValueError(f"{name}: only meaningful for kind 'rate', not {self.kind!r}")
        self._check_lengths()
        if self.kind != "concurrency" and self.concurrency is not None:
            raise ValueError(f"concurrency: only meaningful for kind 'concurrency', not {self.kind!r}")
        if self.kind == "burst":
            for name in (
                "max_batch_size",
                "output_tokens_mean",
                "prompt_length_distribution",
                "output_length_distribution",
            ):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only meaningful for the serving kinds, not 'burst'")
            if self.prompt_tokens.mean is not None:
                raise ValueError("prompt_tokens.mean: only meaningful for the serving kinds, not 'burst'")
        if self.output_tokens_mean is not None and self.output_tokens_mean > self.output_tokens:
            raise ValueError(
                f"output_tokens_mean: {self.output_tokens_mean:g} is larger than output_tokens {self.output_tokens}"
            )
        return self

    def _check_lengths(self) -> None:
        """A length is stated once (a mean, a distribution, or a trace's own lengths), and every
        length stays within the range the burst figures and KV admission take as the peak."""
        trace = self.arrival_trace
        trace_lengths = trace is not None and trace.has_lengths
        prompt_dist, output_dist = self.prompt_length_distribution, self.output_length_distribution
        for name, dist, mean in (
            ("prompt_length_distribution", prompt_dist, self.prompt_tokens.mean),
            ("output_length_distribution", output_dist, self.output_tokens_mean),
        ):
            if dist is None:
                continue
            if mean is not None:
                other = "prompt_tokens.mean" if name.startswith("prompt") else "output_tokens_mean"
                raise ValueError(f"{name}: give a distribution or {other}, not both")
            if trace_lengths:
                raise ValueError(f"{name}: the arrival trace gives per-request lengths already")
        if trace_lengths and (self.prompt_tokens.mean is not None or self.output_tokens_mean is not None):
            raise ValueError(
                "arrival_trace: gives per-request lengths; leave prompt_tokens.mean/output_tokens_mean out"
            )
        low, high = self.prompt_tokens.min, self.prompt_tokens.max
        if prompt_dist is not None and prompt_dist.histogram is not None:
            if prompt_dist.lowest < low or prompt_dist.highest > high:
                raise ValueError(
                    f"prompt_length_distribution: lengths {prompt_dist.lowest}-{prompt_dist.highest} outside "
                    f"prompt_tokens [min, max] = [{low}, {high}]"
                )
        if output_dist is not None and output_dist.histogram is not None and output_dist.highest > self.output_tokens:
            raise ValueError(
                f"output_length_distribution: lengths up to {output_dist.highest}, above output_tokens "
                f"{self.output_tokens}"
            )
        if trace is not None and trace.prompt_tokens is not None and trace.output_tokens is not None:
            if min(trace.prompt_tokens) < low or max(trace.prompt_tokens) > high:
                raise ValueError(
                    f"arrival_trace.prompt_tokens: lengths {min(trace.prompt_tokens)}-{max(trace.prompt_tokens)} "
                    f"outside prompt_tokens [min, max] = [{low}, {high}]"
                )
            if max(trace.output_tokens) > self.output_tokens:
                raise ValueError(
                    f"arrival_trace.output_tokens: lengths up to {max(trace.output_tokens)}, above output_tokens "
                    f"{self.output_tokens}"
                )

    @property
    def fixed_lengths(self) -> bool:
        """Every request has the same prompt and output length (no mean, distribution or trace lengths)."""
        spread = (
            self.prompt_tokens.mean,
            self.output_tokens_mean,
            self.prompt_length_distribution,
            self.output_length_distribution,
        )
        trace = self.arrival_trace
        return all(v is None for v in spread) and not (trace is not None and trace.has_lengths)

    @property
    def serving_prompt_tokens(self) -> float:
        """ISL of the serving model: the trace's mean prompt, the distribution's mean, the mean
        prompt when given, else the longest."""
        trace = self.arrival_trace
        if trace is not None and trace.prompt_tokens is not None:
            return sum(trace.prompt_tokens) / len(trace.prompt_tokens)
        if self.prompt_length_distribution is not None:
            return self.prompt_length_distribution.mean
        return self.prompt_tokens.mean or float(self.prompt_tokens.max)

    @property
    def serving_output_tokens(self) -> float:
        """OSL of the serving model: the trace's mean output, the distribution's mean, the mean
        output when given, else ``output_tokens``."""
        trace = self.arrival_trace
        if trace is not None and trace.output_tokens is not None:
            return sum(trace.output_tokens) / len(trace.output_tokens)
        if self.output_length_distribution is not None:
            return self.output_length_distribution.mean
        return self.output_tokens_mean or float(self.output_tokens)

    @property
    def serving_rate_rps(self) -> float | None:
        """Arrival rate of kind ``rate`` on the whole deployment, requests/s: ``rate_rps``, else the
        demand over the mean output length, else the trace's mean rate."""
        if self.rate_rps is not None:
            return self.rate_rps
        if self.demand_output_tokens_per_s is not None:
            return self.demand_output_tokens_per_s / self.serving_output_tokens
        if self.arrival_trace is not None:
            return self.arrival_trace.mean_rate_rps
        return None

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
    disaggregation: Literal["off", "allow", "only"] = Field(
        "off",
        description="serving kinds: 'off' solves aggregated plans (every GPU runs prefill and decode); 'allow' "
        "also considers prefill/decode disaggregation (a prefill pool and a decode pool, the KV cache sent "
        "between them) and keeps the better; 'only' considers disaggregated plans alone",
    )
