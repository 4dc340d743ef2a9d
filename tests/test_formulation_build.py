"""The fast formulation build gives the figures of costing each configuration afresh, to the bit.

The build shares work between configurations (value-keyed memos, rules before costs, regular-layout
shortcuts for R3, R5 and the pipeline sends); these tests recompute the same coefficients the slow,
direct way (per-layer tables over every layer, every (replica, stage) pattern walked) and compare.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from placer.costmodel.dispatch import copy_bytes_per_token
from placer.costmodel.phase import PHASES, PerPhase
from placer.costmodel.tables import (
    boundary_crossings,
    default_expert_maps,
    edge_costs,
    edge_costs_key,
    layer_costs,
    phase_shapes,
    stage_domain_patterns,
    stage_pattern,
)
from placer.formulation.data import (
    ConfigCoster,
    build_config,
    build_formulation,
    enumerate_parallelisms,
    layer_classes,
    memory_lower_bound_ok,
)
from placer.problem import load_problem
from placer.topology import default_layout

ROOT = Path(__file__).resolve().parents[1]


def direct_config_figures(problem, par) -> dict[str, object]:
    """Coefficients from the per-layer tables, every layer and every (replica, stage) walked."""
    classes, names = layer_classes(problem)
    maps = default_expert_maps(problem, par)
    layout = default_layout(par, problem.fabric)
    costs = layer_costs(problem, par, stage_pattern(layout, 0, 0), maps)
    edges = edge_costs(problem, par, maps)
    firsts = [classes.index(k) for k in range(len(names))]
    sends = dict.fromkeys(PHASES, 0.0)
    for s in range(par.pp - 1):
        crosses = any(stage_pattern(layout, r, s).next_stage_crosses for r in range(par.replicas))
        for phase in PHASES:
            sends[phase] += (edges.send_cross_s if crosses else edges.send_s)[phase]
    traffic = [t for t in costs.traffic if t is not None]
    cross = copy_bytes_per_token(problem) * float(np.mean([t.dedup_scaleout for t in traffic])) if traffic else 0.0
    return {
        "layer_bytes": tuple(float(costs.weight_bytes[i] + costs.kv_bytes[i]) for i in firsts),
        "layer_s": PerPhase(
            tuple(float(costs.prefill_s[i]) for i in firsts), tuple(float(costs.decode_s[i]) for i in firsts)
        ),
        "embed_bytes": edges.embed_weight_bytes,
        "head_bytes": edges.head_weight_bytes + edges.logits_bytes,
        "fixed_bytes": edges.workspace_bytes + problem.hardware.runtime_reserve_gb * 1e9,
        "embed_s": edges.embed_s,
        "head_s": edges.head_s,
        "sends_s": PerPhase(sends["prefill"], sends["decode"]),
        "cross_node_bytes_per_token": cross,
    }


@pytest.mark.parametrize("instance", ["mixtral-8x7b-h100", "ep64-128gpu"])
def test_shared_work_gives_the_direct_figures(instance: str) -> None:
    problem = load_problem(ROOT / "instances" / f"{instance}.json")
    coster = ConfigCoster(problem)
    pars = enumerate_parallelisms(problem, 64)
    # every 7th degree tuple: all widths, pp and replica counts, with the memo warm from the others
    outcomes = set()
    for par in pars[::7]:
        config = coster.config(par)
        direct = direct_config_figures(problem, par)
        assert {name: getattr(config, name) for name in direct} == direct, par
        # the build checks rules, then bytes, before timing: it admits exactly what the full figures admit
        admits = config.admissible and memory_lower_bound_ok(coster.usable_bytes, coster.class_counts, config)
        assert (coster.admitted(par) == config) if admits else (coster.admitted(par) is None), par
        outcomes.add((config.admissible, admits))
    assert outcomes == {(True, True), (True, False), (False, False)}  # rules and the memory bound both bite


def test_regular_layout_shortcuts_match_the_walk() -> None:
    """R3, R5 and the boundary crossings from the regular-layout shortcuts equal the rank-by-rank
    walk over the same layout given as an explicit rank-to-node list."""
    problem = load_problem(ROOT / "instances" / "deepseek-v3-h800.json")
    # 3-node (24-GPU) domains: power-of-two stages straddle them in every way
    fabric = dataclasses.replace(problem.fabric, gpus_per_node=8, nvlink_domain_gpus=24)
    seen = set()
    for par in enumerate_parallelisms(problem, 96)[::5]:
        regular = default_layout(par, fabric)
        walked = default_layout(par, fabric, [rank // fabric.gpus_per_node for rank in range(par.gpus)])
        assert regular.regular_domain_gpus == 24 and walked.regular_domain_gpus is None
        assert regular.domain_of == walked.domain_of
        for group in (par.tp, par.tp_moe):
            assert regular.groups_in_one_domain(group) == walked.groups_in_one_domain(group), par
        patterns = stage_domain_patterns(regular)
        assert patterns == stage_domain_patterns(walked), par
        crossings = boundary_crossings(regular)
        assert crossings == boundary_crossings(walked), par
        seen |= {("aligned", len(patterns) == 1), ("tp in domain", regular.groups_in_one_domain(par.tp))}
        seen |= {("crosses", c) for c in crossings}
    assert len(seen) == 6, seen  # both outcomes of every check were exercised


def test_build_config_reuses_a_coster_only_for_its_problem() -> None:
    problem = load_problem(ROOT / "instances" / "mixtral-8x7b-h100.json")
    other = load_problem(ROOT / "instances" / "mixtral-8x7b-h100.json")
    classes, names = layer_classes(problem)
    par = enumerate_parallelisms(problem, 8)[3]
    coster = ConfigCoster(problem)
    assert build_config(problem, par, classes, len(names), coster) == build_config(problem, par, classes, len(names))
    with pytest.raises(AssertionError):
        build_config(other, par, classes, len(names), coster)


def test_a_stopped_build_keeps_what_it_costed() -> None:
    problem = load_problem(ROOT / "instances" / "mixtral-8x7b-h100.json")
    full = build_formulation(problem, 16)
    asked = 0

    def after_100() -> bool:
        nonlocal asked
        asked += 1
        return asked > 100

    part = build_formulation(problem, 16, should_stop=after_100)
    assert full.complete and not part.complete
    assert part.considered == 100 and part.considered < full.considered
    assert part.configs == full.configs[: len(part.configs)]
    assert len(part.configs) + part.presolved_out == 100


@pytest.mark.parametrize("instance", ["mixtral-8x7b-h100", "deepseek-v3-h800"])
def test_edge_costs_key_holds_everything_edge_costs_reads(instance: str) -> None:
    """Degree tuples with equal keys (different pp, replicas, micro-batch counts) get equal edge costs."""
    problem = load_problem(ROOT / "instances" / f"{instance}.json")
    groups: dict[tuple[int | bool, ...], list] = {}
    for par in enumerate_parallelisms(problem, 64):
        groups.setdefault(edge_costs_key(par, *phase_shapes(problem, par)), []).append(par)
    shared = [pars for pars in groups.values() if len(pars) > 1]
    assert len(shared) >= 10  # the key does share work
    for pars in shared[::3]:
        first = edge_costs(problem, pars[0], default_expert_maps(problem, pars[0]))
        for par in pars[1:4]:
            assert edge_costs(problem, par, default_expert_maps(problem, par)) == first, (pars[0], par)
