"""The exact best partition of one configuration, by dynamic programming (no solver package).

For one configuration the partition problem is: split layers ``0..L-1`` into ``pp`` contiguous,
non-empty stages, each within memory and within the SLO bounds on stage time (F4)-(F8), minimising
the largest stage time of the objective's phase. The DP is
``f[s][j] = min_{i<j} max(f[s-1][i], t(i, j, s))`` over feasible stages ``[i, j)``.

Formulation-level mathematics shared by the exhaustive backend (which scores every configuration
with it), the warm start and the re-solve cuts (which score one configuration each).
"""

from __future__ import annotations

import math

import numpy as np

from placer.catalogue.engines import fixed_stage_starts
from placer.costmodel.phase import PHASES, Phase
from placer.formulation.data import Config, FormulationData
from placer.formulation.terms import StageBounds, objective_terms, stage_bounds, term_phase, term_value


def _stage_matrices(data: FormulationData, config: Config) -> dict[str, np.ndarray]:
    """``[i, j]`` sums over layers ``i..j-1`` of per-layer bytes and times (inf where j <= i)."""
    classes = np.asarray(data.layer_class)
    out = {}
    for name, per_class in (("bytes", config.layer_bytes), *config.layer_s.items()):
        per_layer = np.asarray(per_class)[classes]
        prefix = np.concatenate([[0.0], np.cumsum(per_layer)])
        matrix = prefix[None, :] - prefix[:, None]
        matrix[np.tril_indices_from(matrix)] = np.inf  # empty or reversed stages
        out[name] = matrix
    return out


def _edge_added(body: np.ndarray | float, config: Config, phase: Phase, first: bool, last: bool) -> np.ndarray | float:
    """Stage time(s) ``body`` plus the embedding on the first stage and the LM head on the last
    (added in that order, as every backend adds them)."""
    return body + (config.embed_s[phase] if first else 0) + (config.head_s[phase] if last else 0)


def best_partition(
    data: FormulationData, config: Config, bounds: StageBounds, phase: Phase
) -> tuple[float, float, tuple[int, ...]] | None:
    """Minimise the largest ``phase`` stage time; return (T_pre, T_dec, stage starts) or ``None``."""
    pp = config.par.pp
    length = data.num_layers
    mats = _stage_matrices(data, config)

    def stage_arrays(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        first, last = s == 0, s == pp - 1
        mem = (
            mats["bytes"]
            + config.fixed_bytes
            + (config.embed_bytes if first else 0)
            + (config.head_bytes if last else 0)
        )
        pre, dec = (_edge_added(mats[phase], config, phase, first, last) for phase in PHASES)
        ok = (mem <= data.usable_bytes) & (pre <= bounds.prefill_s) & (dec <= bounds.decode_s)
        return pre, dec, ok

    f = np.full(length + 1, np.inf)
    f[0] = 0.0
    back = []
    for s in range(pp):
        pre, dec, ok = stage_arrays(s)
        cost = (pre, dec)[PHASES.index(phase)]
        cand = np.where(ok, np.maximum(f[:, None], cost), np.inf)
        choice = np.argmin(cand, axis=0)
        f = cand[choice, np.arange(length + 1)]
        back.append(choice)
    if not math.isfinite(f[length]):
        return None
    starts = [0] * pp
    j = length
    for s in range(pp - 1, -1, -1):
        i = int(back[s][j])
        starts[s] = i
        j = i
    ends = starts[1:] + [length]
    t_pre = max(stage_arrays(s)[0][starts[s], ends[s]] for s in range(pp))
    t_dec = max(stage_arrays(s)[1][starts[s], ends[s]] for s in range(pp))
    return float(t_pre), float(t_dec), tuple(starts)


def _largest_time_keeping(data: FormulationData, config: Config, term: str | None, optimum_s: float) -> float:
    """Largest max-stage time of the term's phase that keeps the term at its optimum value.

    Holding the stage time itself would be too strict where the term does not grow with it: a
    decode step limited by the sum of stages ``S_dec`` (``TPOT = max(m T_dec, S_dec)``) leaves
    ``T_dec`` free up to ``S_dec / m``, and with one micro-batch TTFT is ``S_pre`` whatever
    ``T_pre`` is. The later passes may use that freedom, as the CP-SAT and MILP passes do.
    """
    if term == "max_throughput_per_gpu" and data.problem.objective.throughput_phase == "decode":
        return max(optimum_s, config.total_s("decode", data.class_counts) / config.micro["decode"])
    if term == "min_ttft" and config.micro["prefill"] == 1:
        return math.inf
    return optimum_s


def partition_times(
    data: FormulationData, config: Config, bounds: StageBounds, starts: tuple[int, ...]
) -> tuple[float, float] | None:
    """(T_pre, T_dec) of one given partition, or ``None`` if a stage breaks memory or a bound."""
    mats = _stage_matrices(data, config)
    ends = list(starts[1:]) + [data.num_layers]
    pp = config.par.pp
    t_pre = t_dec = 0.0
    for s, (i, j) in enumerate(zip(starts, ends, strict=True)):
        first, last = s == 0, s == pp - 1
        mem = mats["bytes"][i, j] + config.fixed_bytes
        mem += (config.embed_bytes if first else 0) + (config.head_bytes if last else 0)
        pre, dec = (_edge_added(mats[phase][i, j], config, phase, first, last) for phase in PHASES)
        if not (mem <= data.usable_bytes and pre <= bounds.prefill_s and dec <= bounds.decode_s):
            return None
        t_pre, t_dec = max(t_pre, float(pre)), max(t_dec, float(dec))
    return t_pre, t_dec


def evaluate_config(data: FormulationData, config: Config) -> tuple[tuple[float, ...], tuple[int, ...]] | None:
    """Lexicographic objective terms of a configuration's best partition, or ``None`` if none fits."""
    if not config.admissible:
        return None
    bounds = stage_bounds(data, config)
    if bounds is None:
        return None
    terms = objective_terms(data)
    phases = [p for p in (term_phase(data, t) for t in terms) if p is not None]
    first_phase = phases[0] if phases else "prefill"
    fixed = fixed_stage_starts(data.problem.engine, data.num_layers, config.par.pp)
    if fixed is not None:  # the engine splits the layers itself: the one partition to score
        times = partition_times(data, config, bounds, fixed)
        if times is None:
            return None
        return tuple(term_value(data, config, term, *times) for term in terms), fixed
    found = best_partition(data, config, bounds, first_phase)
    if found is None:
        return None
    t_pre, t_dec, starts = found
    first_term = next(t for t in terms if term_phase(data, t) == first_phase) if phases else None
    for phase in dict.fromkeys(phases[1:]):  # each further phase, the earlier term held at its optimum
        if phase == first_phase:
            continue
        limit = _largest_time_keeping(data, config, first_term, (t_pre, t_dec)[PHASES.index(first_phase)])
        if first_phase == "prefill":
            held = StageBounds(min(bounds.prefill_s, limit), bounds.decode_s)
        else:
            held = StageBounds(bounds.prefill_s, min(bounds.decode_s, limit))
        again = best_partition(data, config, held, phase)
        if again is not None:
            t_pre, t_dec, starts = again
    values = tuple(term_value(data, config, term, t_pre, t_dec) for term in terms)
    return values, starts
