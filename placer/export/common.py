"""What every engine export shares: the plan's facts in engine-neutral form, the expert slots,
the hostfile, and writing the files (atomically, with the warnings in ``NOTES.md``).

An engine module turns an :class:`ExportInput` into an :class:`EngineExport`: the command line,
environment, extra files, and a warning for every part of the plan the engine cannot express.
Nothing is dropped silently: a warning is printed, written to ``NOTES.md`` and to ``export.json``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.catalogue.engines import Usage, unsupported, unverified
from placer.costmodel.traffic import contiguous_map
from placer.evaluator import plan_expert_maps
from placer.problem import Problem
from placer.schema import Plan
from placer.topology import RankLayout, default_layout

MODEL_PLACEHOLDER = "MODEL_PATH"


@dataclass(frozen=True)
class ExportInput:
    """The plan with what the engines need from the problem."""

    problem: Problem
    plan: Plan
    hosts: tuple[str, ...] = ()

    @property
    def layout(self) -> RankLayout:
        return default_layout(self.plan.parallelism, self.problem.fabric, self.plan.rank_to_node)

    @property
    def layers_per_stage(self) -> list[int]:
        return [stage.num_layers for stage in self.plan.stages]

    @property
    def is_moe(self) -> bool:
        return self.problem.model.moe is not None

    @property
    def usage(self) -> Usage:
        """What the plan asks of an engine, as the capability table reads it."""
        return Usage(
            self.plan.parallelism,
            self.is_moe,
            tuple(self.layers_per_stage),
            self.problem.workload.decode_tokens_per_step,
        )

    def nodes_per_replica(self) -> int:
        """Nodes of replica 0 (every replica spans as many under the default layout)."""
        width = self.plan.parallelism.pp * self.plan.parallelism.stage_width
        return len(set(self.layout.node_of[:width]))

    def host(self, node: int) -> str:
        return self.hosts[node] if node < len(self.hosts) else f"node-{node:03d}"


@dataclass
class EngineExport:
    """One engine's launch: argv, environment, files, and what it cannot express."""

    engine: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # name -> text
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # flag -> where its name was checked

    def command_line(self) -> str:
        return shell_line(self.argv, self.env)


def shell_line(argv: list[str], env: dict[str, str]) -> str:
    """The shell line; ``${VAR}`` arguments stay expandable, everything else is quoted."""
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    words = [f'"{a}"' if a.startswith("${") and a.endswith("}") else shlex.quote(a) for a in argv]
    return (assignments + " " if assignments else "") + " ".join(words)


def capability_findings(engine: str, data: ExportInput) -> tuple[list[str], list[str]]:
    """Warnings for what the plan needs and the engine lacks, and notes for what it needs that the
    capability table (``placer.catalogue.engines``, the one the search reads) could not verify."""
    usage = data.usage
    warnings = [f.message() for f in unsupported(engine, usage)]
    notes = [f.message() for f in unverified(engine, usage)]
    return warnings, notes


def expert_slots(data: ExportInput) -> dict[int, list[list[int]]]:
    """MoE layer -> logical experts on each EP rank (the plan's map, else the contiguous default)."""
    maps = plan_expert_maps(data.problem, data.plan)
    return {layer: [list(rank) for rank in maps[layer]] for layer in sorted(maps)}


def has_custom_expert_map(data: ExportInput) -> bool:
    """Whether any layer's placement differs from the contiguous default every engine uses."""
    moe = data.problem.model.moe
    if moe is None:
        return False
    default = [list(r) for r in contiguous_map(moe.num_experts, data.plan.parallelism.ep)]
    return any(slots != default for slots in expert_slots(data).values())


def redundant_slots(data: ExportInput) -> int | None:
    """Physical slots beyond the logical experts, if equal in every MoE layer (else None)."""
    moe = data.problem.model.moe
    if moe is None:
        return 0
    counts = {sum(len(r) for r in slots) - moe.num_experts for slots in expert_slots(data).values()}
    return counts.pop() if len(counts) == 1 else None


def equal_slots_per_rank(data: ExportInput) -> bool:
    return all(len({len(r) for r in slots}) == 1 for slots in expert_slots(data).values())


def hostfile(data: ExportInput) -> tuple[str, list[str]]:
    """MPI-style hostfile (``host slots=N``) in rank order, which keeps every TP and EP group on
    consecutive ranks and therefore inside a node; warnings if the plan's rank-to-node map is not
    a sequence of contiguous blocks (then ``ranks.json`` is the authority)."""
    node_of = data.layout.node_of
    order: list[int] = []
    counts: dict[int, int] = {}
    warnings = []
    for rank, node in enumerate(node_of):
        if node not in counts:
            order.append(node)
            counts[node] = 0
        elif order[-1] != node:
            warnings.append(
                f"rank_to_node interleaves nodes (rank {rank} returns to node {node}); a hostfile cannot say this — "
                "place ranks with ranks.json"
            )
            break
        counts[node] += 1
    lines = [f"{data.host(node)} slots={counts[node]}" for node in order]
    return "\n".join(lines) + "\n", warnings


def ranks_document(data: ExportInput) -> list[dict[str, Any]]:
    """Every rank: its node and host, replica, stage, attention (dp, tp) and MoE (ep, tp) ranks."""
    par = data.plan.parallelism
    width = par.stage_width
    rows = []
    for rank, node in enumerate(data.layout.node_of):
        replica, rest = divmod(rank, par.pp * width)
        stage, w = divmod(rest, width)
        rows.append(
            {
                "rank": rank,
                "node": node,
                "host": data.host(node),
                "replica": replica,
                "stage": stage,
                "attention_dp_rank": w // par.tp,
                "attention_tp_rank": w % par.tp,
                "ep_rank": w // par.tp_moe,
                "moe_tp_rank": w % par.tp_moe,
            }
        )
    return rows


def common_notes(data: ExportInput) -> list[str]:
    par = data.plan.parallelism
    notes = [
        f"Plan {data.plan.name or '(unnamed)'}: {data.plan.gpus} GPUs = {par.replicas} replica(s) x pp {par.pp} x "
        f"(tp {par.tp} x dp_attn {par.dp_attn} = ep {par.ep} x tp_moe {par.tp_moe}); stages "
        + ", ".join(f"{s.first}-{s.last}" for s in data.plan.stages)
        + ".",
        f"Replace {MODEL_PLACEHOLDER} with the model's path or name.",
    ]
    if par.replicas > 1:
        notes.append(
            f"{par.replicas} replicas: launch one server per replica on its own nodes (see hostfile / ranks.json) "
            "and put a load balancer in front; the arguments below are per replica."
        )
    return notes


def write_export(export: EngineExport, data: ExportInput, out_dir: str | Path) -> list[Path]:
    """Write the engine's files, ``launch.sh``, ``hostfile``, ``ranks.json``, ``export.json`` and
    ``NOTES.md`` into ``out_dir``, each atomically."""
    from placer.files import write_atomic

    out = Path(out_dir)
    host_text, host_warnings = hostfile(data)
    for warning in host_warnings:
        if warning not in export.warnings:
            export.warnings.append(warning)
    files = dict(export.files)
    files["hostfile"] = host_text
    files["ranks.json"] = json.dumps(ranks_document(data), indent=1) + "\n"
    files["launch.sh"] = (
        "#!/usr/bin/env bash\n# generated by placer export; see NOTES.md\nset -euo pipefail\n"
        + export.command_line()
        + "\n"
    )
    files["export.json"] = (
        json.dumps(
            {
                "engine": export.engine,
                "plan": data.plan.name,
                "argv": export.argv,
                "env": export.env,
                "files": sorted(set(files) | {"export.json", "NOTES.md"}),
                "warnings": export.warnings,
                "sources": export.sources,
            },
            indent=2,
        )
        + "\n"
    )
    files["NOTES.md"] = notes_markdown(export)
    paths = []
    for name, text in files.items():
        path = out / name
        write_atomic(path, text)
        paths.append(path)
    (out / "launch.sh").chmod(0o755)
    return paths


def notes_markdown(export: EngineExport) -> str:
    lines = [f"# {export.engine} launch for this plan", ""]
    if export.warnings:
        lines += ["## What the engine cannot express", ""] + [f"- **{w}**" for w in export.warnings] + [""]
    lines += ["## Command", "", "```bash", export.command_line(), "```", ""]
    if export.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in export.notes] + [""]
    lines += notes_table(export.sources)
    return "\n".join(lines) + "\n"


def notes_table(sources: dict[str, str]) -> list[str]:
    """The NOTES.md table of where each flag name was checked."""
    lines = ["## Where each flag name was checked", "", "| flag | source |", "|---|---|"]
    return lines + [f"| `{flag}` | {source} |" for flag, source in sources.items()]
