"""Steady-state continuous batching: step times of one replica, and the analytic serving point.

Every time here comes from the evaluator's cost model, never from new formulas: a decode step
of ``b`` sequences is the evaluator's decode step of the plan under a ``burst`` copy of the
workload with ``b`` sequences per replica, and the prefill cost per token is the evaluator's
prefill of one prompt per attention-DP rank divided by its tokens. The simulator
(:mod:`placer.simulate`) drives the same :class:`StepTimer`, so analytic model and simulation
differ only in how requests are scheduled, which is what the comparison is meant to test.

Equations (Q1)-(Q9) of ``docs/cost-model.md`` ("Serving workloads").
"""

from __future__ import annotations

import math

from placer.costmodel.memory import usable_memory_bytes
from placer.evaluator import evaluate
from placer.problem import Problem
from placer.schema import Plan, PromptTokens


def _burst(problem: Problem, batch_size: int, prompt_tokens: int | None = None) -> Problem:
    """``problem`` with a burst workload of ``batch_size`` sequences (optionally another prompt length)."""
    w = problem.workload
    changes: dict[str, object] = {
        "kind": "burst",
        "batch_size": batch_size,
        "concurrency": None,
        "rate_rps": None,
        "max_batch_size": None,
        "output_tokens_mean": None,
    }
    prompt = w.prompt_tokens.max if prompt_tokens is None else prompt_tokens
    changes["prompt_tokens"] = PromptTokens(min=min(w.prompt_tokens.min, prompt), max=prompt)
    if w.decode_context_tokens is None:
        # the decode context stays the workload's, whatever prompt length the probe uses
        changes["decode_context_tokens"] = w.decode_context
    return problem.replace(workload=w.model_copy(update=changes))


class StepTimer:
    """Wall time of one engine step of one replica of ``plan``, from the evaluator's cost model.

    Assumptions (stated in ``docs/cost-model.md``, Q1-Q2):

    - a decode step of ``b`` sequences takes the evaluator's decode step (TPOT x tokens emitted
      per step) at ``b`` sequences per replica and the workload's decode context; memoised on ``b``;
    - prefill costs ``prefill_s_per_token`` per prompt token, the evaluator's prefill of one
      prompt of the serving length (ISL) on every attention-DP rank, divided by the tokens; so a
      chunk late in a prompt is charged the prompt's average attention span, and a pure-prefill
      step pays its share of the weight reads;
    - interference is additive: a chunk of prefill rides in the same forward as the decode batch,
      and the step takes the decode time plus the chunk's prefill time (no overlap credit).
    """

    def __init__(self, problem: Problem, plan: Plan) -> None:
        self.problem = problem
        self.plan = plan
        par = plan.parallelism
        w = problem.workload
        self.replicas: int = par.replicas
        self.dp_attn: int = par.dp_attn
        #: Prefill token budget of one replica step: the per-DP-rank chunk times the DP ranks.
        self.chunk_tokens: int = (w.prefill_chunk_tokens or problem.params.default_prefill_chunk_tokens) * par.dp_attn
        #: Tokens one decode step emits per sequence (1, or more with MTP / speculative drafts).
        self.tokens_per_decode_step: float = w.output_tokens_per_step
        self.prompt_tokens: int = max(1, round(w.serving_prompt_tokens))
        self._decode_s: dict[int, float] = {0: 0.0}

        probe = _burst(problem, par.replicas * par.dp_attn, self.prompt_tokens)
        ev = evaluate(probe, plan)
        #: Seconds of replica step per prompt token of chunked prefill (Q2).
        self.prefill_s_per_token: float = ev.ttft_s / (par.dp_attn * self.prompt_tokens)
        self.kv_capacity_tokens: int = self._kv_capacity(probe, ev)

    def _kv_capacity(self, probe: Problem, ev: object) -> int:
        """(Q3) KV tokens one replica can hold: on each stage's fullest GPU, usable HBM less
        weights, workspace and runtime reserve, over the KV bytes a token takes on that GPU
        (from the probe's one sequence per DP rank at its full context); the tightest stage
        decides, times the DP ranks that each hold their own sequences."""
        usable = usable_memory_bytes(probe)
        context = probe.workload.max_context_tokens
        per_rank = math.inf
        for stage in ev.stages:  # type: ignore[attr-defined]
            mem = stage.memory
            kv_per_token = mem.kv_cache_bytes / context
            free = usable - mem.weights_bytes - mem.activation_bytes - mem.runtime_reserve_bytes
            if kv_per_token > 0:
                per_rank = min(per_rank, max(0.0, free) / kv_per_token)
        if not math.isfinite(per_rank):
            return 0
        return int(per_rank) * self.dp_attn

    def decode_s(self, decode_seqs: int) -> float:
        """Seconds of a decode step of ``decode_seqs`` sequences on one replica (memoised)."""
        if decode_seqs < 0:
            raise ValueError(f"decode_seqs: {decode_seqs} is negative")
        t = self._decode_s.get(decode_seqs)
        if t is None:
            ev = evaluate(_burst(self.problem, decode_seqs * self.replicas), self.plan)
            t = self._decode_s[decode_seqs] = ev.tpot_s * self.tokens_per_decode_step
        return t

    def decode_s_real(self, decode_seqs: float) -> float:
        """:meth:`decode_s` at a fractional batch, linear between the two integers around it
        (the analytic model's batch is a mean, not a count)."""
        lo = math.floor(decode_seqs)
        frac = decode_seqs - lo
        t_lo = self.decode_s(lo)
        return t_lo if frac == 0 else t_lo + frac * (self.decode_s(lo + 1) - t_lo)

    def prefill_s(self, prefill_tokens: float) -> float:
        """Seconds of ``prefill_tokens`` prompt tokens of chunked prefill on one replica (Q2)."""
        return prefill_tokens * self.prefill_s_per_token

    def step_s(self, decode_seqs: int, prefill_tokens: int) -> float:
        """Wall time of one engine step of ONE replica: ``decode_seqs`` sequences each emitting a
        token (at the workload's decode context) plus ``prefill_tokens`` prompt tokens of chunked
        prefill, added (Q1)."""
        if prefill_tokens < 0:
            raise ValueError(f"prefill_tokens: {prefill_tokens} is negative")
        return self.decode_s(decode_seqs) + self.prefill_s(prefill_tokens)
