"""What the engine exports of a disaggregated plan share: where each pool's ranks sit (node and
GPU), the pool's engine instances, and writing the per-pool launch scripts, hostfiles and ranks.

A disaggregated plan runs two pools (prefill, decode); each pool's ``parallelism.replicas`` are
its engine instances (the x of xPyD). A pool's ranks fill its nodes in order, as
:func:`placer.serving_disagg.pool_nodes` places them; on a node both pools share, the decode pool
takes the GPUs after the prefill pool's. Every instance therefore has a head host (its first
rank's node), and each engine module turns an instance into one launch line per node plus the
router (or proxy) that sends each request to a prefill instance and then a decode instance.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from placer.costmodel.kvtransfer import KvPath, kv_path
from placer.errors import InputError
from placer.export.common import ExportInput, hostfile, notes_table, ranks_document, shell_line
from placer.problem import Problem
from placer.schema import DisaggregatedPlan
from placer.serving_disagg import pool_nodes

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class PoolInstance:
    """One engine instance of a pool: the nodes its ranks occupy (in rank order), how many ranks
    sit on each and the local GPU of the first, and ``slot``: how many earlier instances (of
    either pool) already run on one of its nodes, which every port of the instance is offset by."""

    phase: str
    index: int
    nodes: tuple[int, ...]
    ranks_on_node: tuple[int, ...]
    first_gpu: tuple[int, ...]
    slot: int

    @property
    def head(self) -> int:
        return self.nodes[0]

    def whole_nodes(self, gpus_per_node: int) -> bool:
        return all(n == gpus_per_node for n in self.ranks_on_node)

    def local_gpus(self, k: int) -> str:
        """The ``CUDA_VISIBLE_DEVICES`` list of the instance's GPUs on its ``k``-th node."""
        return ",".join(str(self.first_gpu[k] + i) for i in range(self.ranks_on_node[k]))


@dataclass(frozen=True)
class DisaggInput:
    """A disaggregated plan with what the engines need from the problem."""

    problem: Problem
    plan: DisaggregatedPlan
    hosts: tuple[str, ...] = ()

    def host(self, node: int) -> str:
        return self.hosts[node] if node < len(self.hosts) else f"node-{node:03d}"

    @property
    def gpus_per_node(self) -> int:
        return self.problem.fabric.gpus_per_node

    @cached_property
    def places(self) -> dict[str, list[tuple[int, int]]]:
        """Phase -> (node, local GPU) of every rank of the pool. Raises :class:`InputError` naming
        ``<phase>.nodes`` when a pool's GPUs do not fit its nodes or a node is not in the cluster."""
        fabric = self.problem.fabric
        gpn = fabric.gpus_per_node
        nodes = dict(zip(PHASES, pool_nodes(self.plan, fabric), strict=True))
        taken: dict[int, int] = {}
        places: dict[str, list[tuple[int, int]]] = {}
        for phase in PHASES:
            gpus = self.plan.pool(phase).gpus
            out: list[tuple[int, int]] = []
            for node in nodes[phase]:
                if fabric.num_nodes is not None and node >= fabric.num_nodes:
                    reason = f"node {node} does not exist (the cluster has {fabric.num_nodes} nodes)"
                    raise InputError.single(f"{phase}.nodes", reason)
                used = taken.get(node, 0)
                count = min(gpn - used, gpus - len(out))
                out += [(node, used + i) for i in range(count)]
                taken[node] = used + count
            if len(out) < gpus:
                reason = (
                    f"{gpus} GPUs do not fit on nodes {nodes[phase]} ({gpn} GPUs each, less what the prefill pool "
                    "takes on a shared node)"
                )
                raise InputError.single(f"{phase}.nodes", reason)
            places[phase] = out
        return places

    def pool_input(self, phase: str) -> ExportInput:
        """The pool as an aggregated export input whose ``rank_to_node`` holds its real nodes."""
        plan = self.plan.pool_plan(phase)
        plan = plan.model_copy(update={"rank_to_node": [node for node, _ in self.places[phase]]})
        return ExportInput(self.problem, plan, self.hosts)

    @cached_property
    def _instances(self) -> dict[str, list[PoolInstance]]:
        found: dict[str, list[PoolInstance]] = {}
        per_node: dict[int, int] = {}  # instances so far with a rank on each node
        for phase in PHASES:
            par = self.plan.pool(phase).parallelism
            width = par.pp * par.stage_width
            places = self.places[phase]
            found[phase] = []
            for index in range(par.replicas):
                ranks = places[index * width : (index + 1) * width]
                nodes: list[int] = []
                counts: dict[int, int] = {}
                first: dict[int, int] = {}
                for node, gpu in ranks:
                    if node not in counts:
                        nodes.append(node)
                        counts[node], first[node] = 0, gpu
                    counts[node] += 1
                slot = max(per_node.get(node, 0) for node in nodes)
                for node in nodes:
                    per_node[node] = per_node.get(node, 0) + 1
                found[phase].append(
                    PoolInstance(
                        phase,
                        index,
                        tuple(nodes),
                        tuple(counts[n] for n in nodes),
                        tuple(first[n] for n in nodes),
                        slot,
                    )
                )
        return found

    def instances(self, phase: str) -> list[PoolInstance]:
        return self._instances[phase]

    def router_host(self) -> str:
        """Where the router is written to run: the first prefill instance's head host."""
        return self.host(self.instances("prefill")[0].head)


@dataclass
class Launch:
    """One process to start: on ``host``, for instance ``instance`` of ``phase`` (``router`` for
    the router/proxy), as node ``node_rank`` of that instance."""

    phase: str
    instance: int
    host: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    node_rank: int = 0

    def command_line(self) -> str:
        return shell_line(self.argv, self.env)

    def title(self) -> str:
        if self.phase == "router":
            return f"router on {self.host}"
        return f"{self.phase} instance {self.instance}, node rank {self.node_rank}, on {self.host}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "instance": self.instance,
            "host": self.host,
            "node_rank": self.node_rank,
            "argv": self.argv,
            "env": self.env,
        }


@dataclass
class DisaggExport:
    """One engine's launch of a disaggregated plan: a line per node of every pool instance, the
    router, the engine's files (per-pool ones under ``prefill/`` and ``decode/``), and what the
    engine cannot express."""

    engine: str
    launches: list[Launch]
    router: Launch
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        """The router's argv (the one command clients talk to)."""
        return self.router.argv

    @property
    def env(self) -> dict[str, str]:
        return self.router.env

    def pool(self, phase: str) -> list[Launch]:
        return [launch for launch in self.launches if launch.phase == phase]

    def command_line(self) -> str:
        """Every launch, each under a comment naming its pool, instance, node rank and host."""
        blocks = [f"# {launch.title()}\n{launch.command_line()}" for launch in [*self.launches, self.router]]
        return "\n".join(blocks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "mode": "disaggregated",
            "launches": [launch.to_dict() for launch in self.launches],
            "router": self.router.to_dict(),
            "files": sorted(self.files),
            "warnings": self.warnings,
            "sources": self.sources,
        }


def pool_findings(phase: str, warnings: list[str], notes: list[str], result: DisaggExport) -> None:
    """Add a pool's own export findings to the whole, each naming the pool."""
    result.warnings += [f"{phase} pool: {w}" for w in warnings if f"{phase} pool: {w}" not in result.warnings]
    result.notes += [f"{phase} pool: {n}" for n in notes if f"{phase} pool: {n}" not in result.notes]


def pool_files(phase: str, files: dict[str, str], argv: list[str], result: DisaggExport) -> list[str]:
    """Put a pool's files under ``<phase>/`` and point the argv's references at them."""
    for name, text in files.items():
        result.files[f"{phase}/{name}"] = text
    return [f"{phase}/{word}" if word in files else word for word in argv]


def summary_notes(data: DisaggInput) -> list[str]:
    """The plan's pools, instances and hosts, and the model placeholder."""
    from placer.export.common import MODEL_PLACEHOLDER

    plan = data.plan
    notes = [f"Plan {plan.name or '(unnamed)'}: disaggregated, {plan.gpus} GPUs."]
    for phase in PHASES:
        pool = plan.pool(phase)
        par = pool.parallelism
        hosts = ", ".join(
            f"#{inst.index}: " + "+".join(data.host(n) for n in inst.nodes) for inst in data.instances(phase)
        )
        notes.append(
            f"{phase} pool: {pool.gpus} GPUs = {par.replicas} instance(s) x pp {par.pp} x (tp {par.tp} x dp_attn "
            f"{par.dp_attn} = ep {par.ep} x tp_moe {par.tp_moe}); instances on {hosts}."
        )
    path = kv_path_of(data)
    notes.append(
        f"placer priced the KV transfer over {'NVLink' if path.kind == 'nvlink' else 'the scale-out fabric'} "
        f"({path.bytes_per_s / 1e9:g} GB/s per direction); the engine's transfer backend picks its own transport, "
        "so check it uses that path."
    )
    notes.append(f"Replace {MODEL_PLACEHOLDER} with the model's path or name.")
    notes.append(
        "On every host run ./launch.sh (or launch_prefill.sh / launch_decode.sh): each starts only the lines for "
        "its own host (PLACER_HOST overrides `hostname`); router.sh starts the router, which clients talk to."
    )
    return notes


def kv_path_of(data: DisaggInput) -> KvPath:
    """The path the plan's KV transfer was priced over (between the pools' node sets)."""
    nodes = {phase: sorted({node for node, _ in data.places[phase]}) for phase in PHASES}
    return kv_path(data.problem.fabric, nodes["prefill"], nodes["decode"])


def _pool_script(phase: str, launches: list[Launch]) -> str:
    """A bash script that starts, on the host it runs on, that host's lines of the pool."""
    by_host: dict[str, list[Launch]] = {}
    for launch in launches:
        by_host.setdefault(launch.host, []).append(launch)
    lines = [
        "#!/usr/bin/env bash",
        f"# generated by placer export: the {phase} pool; run on each of its hosts (see NOTES.md)",
        "set -euo pipefail",
        'cd "$(dirname "$0")"  # the config files are named relative to this folder',
        'HOST="${PLACER_HOST:-$(hostname)}"',
        'case "$HOST" in',
    ]
    for host, group in by_host.items():
        lines.append(f"  {shlex.quote(host)})")
        for launch in group:
            lines += [f"    # {launch.title()}", f"    {launch.command_line()} &"]
        lines.append("    ;;")
    lines += ["  *) ;;", "esac", "wait", ""]
    return "\n".join(lines)


def _launch_script(router: Launch) -> str:
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            "# generated by placer export: run on every host; starts that host's prefill and decode lines,",
            "# and the router on the router's host (see NOTES.md)",
            "set -euo pipefail",
            'HERE="$(cd "$(dirname "$0")" && pwd)"',
            'HOST="${PLACER_HOST:-$(hostname)}"',
            '"$HERE/launch_prefill.sh" &',
            '"$HERE/launch_decode.sh" &',
            f'if [ "$HOST" = {shlex.quote(router.host)} ]; then "$HERE/router.sh" & fi',
            "wait",
            "",
        ]
    )


def disagg_ranks(data: DisaggInput, phase: str) -> list[dict[str, Any]]:
    """The pool's ranks (as for an aggregated plan, ``replica`` being the instance) with each
    rank's local GPU on its node."""
    rows = ranks_document(data.pool_input(phase))
    for row, (_, gpu) in zip(rows, data.places[phase], strict=True):
        row["gpu"] = gpu
    return rows


def notes_markdown(export: DisaggExport) -> str:
    lines = [f"# {export.engine} launch for this disaggregated plan", ""]
    if export.warnings:
        lines += ["## What the engine cannot express", ""] + [f"- **{w}**" for w in export.warnings] + [""]
    for phase in PHASES:
        lines += [f"## {phase.capitalize()} pool", "", "```bash"]
        for launch in export.pool(phase):
            lines += [f"# {launch.title()}", launch.command_line()]
        lines += ["```", ""]
    lines += ["## Router", "", "```bash", export.router.command_line(), "```", ""]
    if export.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in export.notes] + [""]
    lines += notes_table(export.sources)
    return "\n".join(lines) + "\n"


def write_disagg_export(export: DisaggExport, data: DisaggInput, out_dir: str | Path) -> list[Path]:
    """Write the engine's files, ``launch.sh``, ``launch_prefill.sh``, ``launch_decode.sh``,
    ``router.sh``, per pool ``<phase>/hostfile`` and ``<phase>/ranks.json``, ``export.json`` and
    ``NOTES.md`` into ``out_dir``, each atomically."""
    from placer.files import write_atomic

    out = Path(out_dir)
    files = dict(export.files)
    for phase in PHASES:
        host_text, host_warnings = hostfile(data.pool_input(phase))
        for warning in host_warnings:
            if f"{phase} pool: {warning}" not in export.warnings:
                export.warnings.append(f"{phase} pool: {warning}")
        files[f"{phase}/hostfile"] = host_text
        files[f"{phase}/ranks.json"] = json.dumps(disagg_ranks(data, phase), indent=1) + "\n"
        files[f"launch_{phase}.sh"] = _pool_script(phase, export.pool(phase))
    router = export.router
    files["router.sh"] = (
        "#!/usr/bin/env bash\n# generated by placer export: the router; see NOTES.md\nset -euo pipefail\n"
        + 'cd "$(dirname "$0")"\n'
        + router.command_line()
        + "\n"
    )
    files["launch.sh"] = _launch_script(router)
    document = export.to_dict()
    document["plan"] = data.plan.name
    document["files"] = sorted(set(files) | {"export.json", "NOTES.md"})
    files["export.json"] = json.dumps(document, indent=2) + "\n"
    files["NOTES.md"] = notes_markdown(export)
    paths = []
    for name, text in files.items():
        path = out / name
        write_atomic(path, text)
        paths.append(path)
        if name.endswith(".sh"):
            path.chmod(0o755)
    return paths
