"""A deterministic corpus of broken inputs: mutants of the shipped instances, plans, models and routing files.

Every mutant is one mistake a user (or a fuzzer) could make, written so that the right answer is
known in advance: ``placer`` must exit 2 with a message naming the field or the file, and no
traceback. ``benchmarks/fuzz.py`` runs all of them through the CLI; ``tests/test_fuzz_corpus.py``
runs a fixed sample. Nothing here depends on the code under test; the corpus only depends on the
shipped files and :data:`SEED`.

Operators: type swaps, booleans for numbers, negative / huge / NaN / Infinity numbers, deleted
required keys, misspelt keys, duplicate keys, deep nesting, unknown enum values, garbage bytes,
truncated and non-UTF-8 files, and for routing: corrupt archives, ``.npy`` for ``.npz``, object /
NaN / empty / out-of-range / repeated-id traces, ragged or string SGLang counts, counts that carry
no information, oversized synthetic draws. ``plan-physical`` mutants are plans that parse but
cannot exist on the instance's cluster (the evaluator's checks).
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 20_261_203

#: Keys of a plan that are output only (ignored on input): not mutated.
_PLAN_OUTPUT_KEYS = {"claimed", "metrics", "slo", "status", "solver", "evaluation", "objective", "search", "timings"}
#: Free-text keys: any string is valid there.
_FREE_TEXT = {"description", "source", "assumptions"}

_REQUIRED = {
    "instance": [
        "name",
        "model",
        "hardware",
        "workload",
        "workload.batch_size",
        "workload.prompt_tokens",
        "workload.prompt_tokens.min",
        "workload.output_tokens",
    ],
    "plan": ["gpus", "parallelism", "stages", "stages[0].layers"],
    "model": ["num_layers", "hidden_size", "attention", "vocab_size", "attention.kind", "attention.num_heads"],
}

_ENUMS = {
    "schema_version": "placer.instance/9",
    "objective.primary": "max_fun",
    "objective.throughput_phase": "both",
    "objective.tie_breaks[0]": "min_joules",
    "hardware": "h1000",
    "model.attention.kind": "sparse",
    "model.precision.weights": "fp3",
    "attention.kind": "sparse",
    "precision.weights": "fp3",
}


@dataclass(frozen=True)
class Mutant:
    """One broken input: the files to write, the CLI arguments (``{dir}`` is the folder they are
    written to) and the strings of which at least one the error message must contain."""

    name: str
    group: str
    files: tuple[tuple[str, bytes], ...]
    args: tuple[str, ...]
    expect: tuple[str, ...]
    cheap: bool = True

    def materialise(self, folder: Path) -> list[str]:
        """Write the files into ``folder``; the CLI arguments with ``{dir}`` filled in."""
        for name, content in self.files:
            (folder / name).write_bytes(content)
        return [arg.replace("{dir}", str(folder)) for arg in self.args]


# -- JSON helpers -----------------------------------------------------------------------------


def _load(relative: str) -> Any:
    return json.loads((ROOT / relative).read_text())


def _absolute_refs(instance: dict[str, Any]) -> dict[str, Any]:
    """An instance whose file references work from any folder."""
    doc = json.loads(json.dumps(instance))
    for key in ("model", "hardware", "reference_plan"):
        value = doc.get(key)
        if isinstance(value, str) and (ROOT / value).is_file():
            doc[key] = str(ROOT / value)
    return doc


def _path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _leaves(doc: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Scalar leaves (and nulls), in document order; only the first element of a list."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(doc, list):
        if doc:
            yield from _leaves(doc[0], (*path, 0))
    else:
        yield path, doc


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _parse_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for chunk in text.split("."):
        name, _, rest = chunk.partition("[")
        parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.removeprefix("[")
    return tuple(parts)


def _dumps(doc: Any, duplicate: tuple[str | int, ...] | None = None) -> bytes:
    """JSON text (NaN and Infinity written as such); ``duplicate``: the key at that path is written twice."""

    def write(value: Any, path: tuple[str | int, ...]) -> str:
        if isinstance(value, dict):
            parts = []
            for key, item in value.items():
                parts.append(f"{json.dumps(key)}: {write(item, (*path, key))}")
                if duplicate == (*path, key):
                    parts.append(f"{json.dumps(key)}: {write(item, (*path, key))}")
            return "{" + ", ".join(parts) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(write(item, (*path, i)) for i, item in enumerate(value)) + "]"
        return json.dumps(value)

    return write(doc, ()).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# -- document mutants ---------------------------------------------------------------------------


def _value_mutations(path: tuple[str | int, ...], value: Any) -> Iterator[tuple[str, Any]]:
    """(operator, new value) pairs that are invalid wherever ``value`` stood."""
    if isinstance(value, bool):
        yield "number-for-bool", 3
        yield "text-for-bool", "yes"
    elif isinstance(value, (int, float)):
        yield "true", True
        yield "text", "lots"
        yield "negative", -7
        yield "huge", 1e30
        yield "nan", float("nan")
        yield "infinity", float("inf")
        yield "object", {"value": value}
    elif value is None:
        yield "true", True
        yield "negative", -7
    elif isinstance(value, str):
        yield "number", 7
        yield "false", False
        yield "list", [value]


def _document_mutants(
    group: str,
    label: str,
    doc: dict[str, Any],
    filename: str,
    make_args: Any,
    extra_files: tuple[tuple[str, bytes], ...] = (),
    kind: str = "instance",
    skip: set[str] = frozenset(),  # type: ignore[assignment]
    cheap: bool = True,
) -> Iterator[Mutant]:
    """Every operator on every leaf of ``doc`` (written as ``filename``), plus whole-file operators."""
    rng = random.Random(f"{SEED}-{label}")
    args = make_args(f"{{dir}}/{filename}")

    def mutant(op: str, where: str, content: bytes, expect: tuple[str, ...]) -> Mutant:
        return Mutant(
            f"{group}/{label}/{where or 'file'}/{op}", group, ((filename, content), *extra_files), args, expect, cheap
        )

    for path, value in _leaves(doc):
        where = _path_text(path)
        key_path = path
        while isinstance(key_path[-1], int):
            key_path = key_path[:-1]  # the field holding this list element
        field = _path_text(key_path)
        top = str(path[0])
        if top in skip or top in _FREE_TEXT or str(path[-1]) in _FREE_TEXT or where in ("name",):
            continue
        for op, new in _value_mutations(path, value):
            if op == "list" and where in ("model", "hardware"):
                continue  # a list there is refused too, but the message names the branch, not the field
            yield mutant(op, where, _dumps(_set(doc, path, new)), (where, field))
        if where in _ENUMS and kind != "plan":
            yield mutant("unknown-enum", where, _dumps(_set(doc, path, _ENUMS[where])), (where, field))
        if key_path == path:
            yield mutant("duplicate-key", where, _dumps(doc, duplicate=path), (where,))
        deep = _dumps(_set(doc, path, "@@")).replace(b'"@@"', _nested(80).encode())
        yield mutant("nested-80", where, deep, (where, field))
    for where in _REQUIRED.get(kind, ()):
        path = _parse_path(where)
        try:
            _get(doc, path)
        except (KeyError, IndexError, TypeError):
            continue
        trimmed = json.loads(json.dumps(doc))
        del _get(trimmed, path[:-1])[path[-1]]
        yield mutant("missing", where, _dumps(trimmed), (where,))
    for section in [k for k, v in doc.items() if isinstance(v, dict) and k not in skip][:4]:
        key = next(iter(doc[section]), "x")
        typo = _set(doc, (section, key + "_typo"), 1)
        yield mutant("unknown-key", section, _dumps(typo), (f"{section}.{key}_typo",))
    text = _dumps(doc)
    yield mutant("truncated", "", text[: rng.randrange(1, len(text) - 1)], (filename,))
    yield mutant("garbage", "", bytes(rng.randrange(256) for _ in range(200)), (filename,))
    yield mutant("utf16", "", json.dumps(doc).encode("utf-16"), (filename,))
    yield mutant("empty", "", b"", (filename,))
    yield mutant("nested-3000", "", _nested(3000).encode(), (filename,))
    yield mutant("top-level-list", "", b"[1, 2, 3]", (filename,) if kind != "plan" else (filename, "gpus"))


# -- routing files --------------------------------------------------------------------------------

_MOE10B_LAYERS, _MOE10B_EXPERTS, _MOE10B_TOPK = 16, 16, 2


def _traces(rng: np.random.Generator, tokens: int = 64) -> list[np.ndarray]:
    return [
        np.argsort(rng.random((tokens, _MOE10B_EXPERTS)), axis=1)[:, :_MOE10B_TOPK].astype(np.int64)
        for _ in range(_MOE10B_LAYERS)
    ]


def _npz(arrays: list[np.ndarray], pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{f"layer_{i}": a for i, a in enumerate(arrays)}, allow_pickle=pickle)
    return buffer.getvalue()


def _routing_instance(routing: dict[str, Any]) -> bytes:
    doc = _absolute_refs(_load("instances/moe10b.json"))
    doc["routing"] = routing
    return _dumps(doc)


def _routing_mutants() -> Iterator[Mutant]:
    rng = np.random.default_rng(SEED)
    plan = str(ROOT / "plans" / "seed000-tp2-ep4-pp4.json")
    args = ("evaluate", "{dir}/instance.json", plan)

    def file_mutant(op: str, fmt: str, content: bytes, filename: str = "routing.bin") -> Mutant:
        # the path is relative: it must be found next to the instance, whatever the cwd
        instance = _routing_instance({"kind": "file", "path": filename, "format": fmt})
        group = "routing-npz" if fmt == "npz_topk" else "routing-sglang"
        return Mutant(
            f"{group}/{op}",
            group,
            (("instance.json", instance), (filename, content)),
            args,
            ("routing.path",),
        )

    good = _traces(rng)
    npz_cases: dict[str, bytes] = {
        "garbage": bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
        "text": b"this is not an archive\n",
        "truncated": _npz(good)[:700],
        "empty-file": b"",
        "npy-not-npz": (lambda b: (np.save(b, good[0]), b.getvalue())[1])(io.BytesIO()),
        "object-array": _npz([np.array([[0, 1]] * 4, dtype=object)] * _MOE10B_LAYERS, pickle=True),
        "nan": _npz([np.full((8, 2), np.nan)] * _MOE10B_LAYERS),
        "fractional-ids": _npz([t + 0.5 for t in good]),
        "zero-tokens": _npz([np.zeros((0, 2), dtype=np.int64)] * _MOE10B_LAYERS),
        "repeated-expert": _npz([np.column_stack([t[:, 0], t[:, 0]]) for t in good]),
        "out-of-range": _npz([t + _MOE10B_EXPERTS for t in good]),
        "negative-ids": _npz([t - _MOE10B_EXPERTS for t in good]),
        "wrong-top-k": _npz([np.column_stack([t, t[:, :1]]) for t in good]),
        "one-dimensional": _npz([t[:, 0] for t in good]),
        "too-few-layers": _npz(good[:3]),
        "too-many-layers": _npz(good + good),
        "strings": _npz([t.astype(str) for t in good]),
        "booleans": _npz([t > 3 for t in good]),
        "no-arrays": _npz([]),
    }
    for op, content in npz_cases.items():
        yield file_mutant(op, "npz_topk", content, "routing.npz")
    yield file_mutant("npz-as-sglang", "sglang_logical_count", _npz(good), "counts.json")
    counts = rng.integers(1, 1000, (_MOE10B_LAYERS, _MOE10B_EXPERTS)).tolist()
    sglang_cases: dict[str, bytes] = {
        "truncated": json.dumps({"logical_count": counts}).encode()[:150],
        "ragged": json.dumps({"logical_count": [row[: 1 + i % 5] for i, row in enumerate(counts)]}).encode(),
        "strings": json.dumps({"logical_count": [[str(c) for c in row] for row in counts]}).encode(),
        "booleans": json.dumps({"logical_count": [[True] * _MOE10B_EXPERTS] * _MOE10B_LAYERS}).encode(),
        "missing-key": json.dumps({"counts": counts}).encode(),
        "all-zero": json.dumps({"logical_count": [[0] * _MOE10B_EXPERTS] * _MOE10B_LAYERS}).encode(),
        "one-layer-zero": json.dumps({"logical_count": [[0] * _MOE10B_EXPERTS, *counts[1:]]}).encode(),
        "negative": json.dumps({"logical_count": [[-c for c in row] for row in counts]}).encode(),
        "nan": _dumps({"logical_count": [[float("nan")] * _MOE10B_EXPERTS] * _MOE10B_LAYERS}),
        "infinity": _dumps({"logical_count": [[float("inf")] * _MOE10B_EXPERTS] * _MOE10B_LAYERS}),
        "wrong-experts": json.dumps({"logical_count": [row[:-1] for row in counts]}).encode(),
        "wrong-layers": json.dumps({"logical_count": counts[:5]}).encode(),
        "scalar": b"42",
        "string": b'"logical_count"',
        "null-count": b'{"logical_count": null}',
        "deep": ('{"logical_count": ' + _nested(2000) + "}").encode(),
        "duplicate-key": _dumps({"logical_count": counts}, duplicate=("logical_count",)),
        "garbage": bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
        "latin1": '{"logical_count": "caf\xe9"}'.encode("latin-1"),
        "empty": b"",
    }
    for op, content in sglang_cases.items():
        yield file_mutant(op, "sglang_logical_count", content, "counts.json")
    yield Mutant(
        "routing-file/missing-file",
        "routing-file",
        (("instance.json", _routing_instance({"kind": "file", "path": "nowhere.npz", "format": "npz_topk"})),),
        args,
        ("routing.path",),
    )
    yield Mutant(
        "routing-file/unknown-format",
        "routing-file",
        (("instance.json", _routing_instance({"kind": "file", "path": "r.npz", "format": "parquet"})),),
        args,
        ("routing.format",),
    )
    loads = rng.integers(1, 100, (_MOE10B_LAYERS, _MOE10B_EXPERTS)).tolist()
    loads_cases: dict[str, tuple[Any, str]] = {
        "infinity": ([[float("inf")] * _MOE10B_EXPERTS, *loads[1:]], "routing.loads[0]"),
        "nan": ([[float("nan")] * _MOE10B_EXPERTS, *loads[1:]], "routing.loads[0]"),
        "all-zero": ([[0] * _MOE10B_EXPERTS] * _MOE10B_LAYERS, "routing.loads[0]"),
        "one-row-zero": ([*loads[:3], [0.0] * _MOE10B_EXPERTS, *loads[4:]], "routing.loads[3]"),
        "negative": ([[-1] * _MOE10B_EXPERTS, *loads[1:]], "routing.loads[0]"),
        "strings": ([["x"] * _MOE10B_EXPERTS, *loads[1:]], "routing.loads[0]"),
        "booleans": ([[True] * _MOE10B_EXPERTS, *loads[1:]], "routing.loads[0]"),
        "too-few-rows": (loads[:4], "routing.loads"),
        "short-row": ([loads[0][:3], *loads[1:]], "routing.loads[0]"),
        "empty": ([], "routing.loads"),
        "flat": (loads[0], "routing.loads"),
        "huge": ([[1e309] * _MOE10B_EXPERTS, *loads[1:]], "routing.loads[0]"),
    }
    for op, (value, expect) in loads_cases.items():
        instance = _routing_instance({"kind": "loads", "loads": value})
        yield Mutant(f"routing-loads/{op}", "routing-loads", (("instance.json", instance),), args, (expect,))
    synthetic_cases: dict[str, tuple[dict[str, Any], str]] = {
        "tokens-1e9": ({"tokens": 1_000_000_000}, "routing.tokens"),
        "tokens-zero": ({"tokens": 0}, "routing.tokens"),
        "tokens-true": ({"tokens": True}, "routing.tokens"),
        "clusters-1000": ({"coactivation_clusters": 1000}, "routing.coactivation_clusters"),
        "clusters-negative": ({"coactivation_clusters": -2}, "routing.coactivation_clusters"),
        "zipf-huge": ({"zipf_exponent": 1e308}, "routing.zipf_exponent"),
        "zipf-negative": ({"zipf_exponent": -1}, "routing.zipf_exponent"),
        "affinity-2": ({"cluster_affinity": 2.0}, "routing.cluster_affinity"),
        "seed-negative": ({"seed": -1}, "routing.seed"),
        "seed-huge": ({"seed": 1e30}, "routing.seed"),
        "seed-text": ({"seed": "seven"}, "routing.seed"),
        "group-limited-number": ({"group_limited": 3}, "routing.group_limited"),
        "unknown-key": ({"tokenz": 5}, "routing.tokenz"),
        "unknown-kind": ({"kind": "measured"}, "routing"),
    }
    for op, (fields, expect) in synthetic_cases.items():
        instance = _routing_instance({"kind": "synthetic", **fields})
        yield Mutant(f"routing-synthetic/{op}", "routing-synthetic", (("instance.json", instance),), args, (expect,))


# -- plans that parse but cannot exist ----------------------------------------------------------------


def _physical_mutants() -> Iterator[Mutant]:
    instance = str(ROOT / "instances" / "moe10b.json")
    plan = _load("plans/seed000-tp2-ep4-pp4.json")
    gpus = plan["gpus"]
    contiguous = [{"layer": layer, "gpus": [[4 * r + i for i in range(4)] for r in range(4)]} for layer in range(16)]
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "rank-to-node-all-zero": ({"rank_to_node": [0] * gpus}, "rank_to_node"),
        "rank-to-node-99": ({"rank_to_node": [99] * gpus}, "rank_to_node"),
        "rank-to-node-negative": ({"rank_to_node": [-1] * gpus}, "rank_to_node"),
        "rank-to-node-short": ({"rank_to_node": [0, 1]}, "rank_to_node"),
        "nodes-1": ({"nodes": 1}, "nodes"),
        "nodes-400": ({"nodes": 400}, "nodes"),
        "expert-map-layer-99": ({"expert_map": [*contiguous[:-1], {**contiguous[-1], "layer": 99}]}, "expert_map"),
        "expert-map-layer-twice": ({"expert_map": [*contiguous[:-1], contiguous[0]]}, "expert_map"),
        "expert-map-fractional": ({"expert_map": [{"layer": 0, "gpus": [[0.5, 1, 2, 3]] * 4}]}, "expert_map"),
        "expert-map-bool": ({"expert_map": [{"layer": 0, "gpus": [[True, 1, 2, 3]] * 4}]}, "expert_map"),
        "replicas-1e6": ({"parallelism": {**plan["parallelism"], "replicas": 10**6}, "gpus": 32 * 10**6}, "gpus"),
        "gpus-1e6": ({"gpus": 10**6}, "gpus"),
        "stages-too-long": ({"stages": [*plan["stages"][:-1], {"layers": [12, 99]}]}, "stages"),
    }
    for op, (changes, expect) in cases.items():
        yield Mutant(
            f"plan-physical/{op}",
            "plan-physical",
            (("plan.json", _dumps({**plan, **changes})),),
            ("evaluate", instance, "{dir}/plan.json"),
            (expect,),
        )


def _workload_file_mutants() -> Iterator[Mutant]:
    """Broken length files and arrival traces named by a ``rate`` workload (``placer/workload_files.py``)."""
    instance = _absolute_refs(_load("instances/moe10b.json"))
    plan = str(ROOT / "plans" / "seed000-tp2-ep4-pp4.json")
    lengths = "workload.prompt_length_distribution"
    trace = "workload.arrival_trace"
    cases: dict[str, tuple[str, str, bytes | None, str]] = {
        "lengths-missing": (lengths, "lengths.txt", None, lengths),
        "lengths-word": (lengths, "lengths.txt", b"128\nmany\n", lengths),
        "lengths-negative": (lengths, "lengths.txt", b"128\n-5\n", lengths),
        "lengths-empty": (lengths, "lengths.txt", b"", lengths),
        "lengths-not-utf8": (lengths, "lengths.txt", b"\xff\xfe\x00", lengths),
        "lengths-json-object": (lengths, "lengths.json", b'{"a": 1}', lengths),
        "lengths-above-max": (lengths, "lengths.txt", b"99999999\n", lengths),
        "trace-decreasing": (trace, "trace.csv", b"0\n2\n1\n", trace),
        "trace-ragged": (trace, "trace.csv", b"0,128,8\n1,128\n", trace),
        "trace-inf": (trace, "trace.csv", b"0\ninf\n", trace),
        "trace-one-arrival": (trace, "trace.csv", b"0\n", trace),
    }
    for op, (field, filename, content, expect) in cases.items():
        workload = {k: v for k, v in instance["workload"].items() if k not in ("batch_size", "kind")}
        workload |= {"kind": "rate", field.split(".")[1]: {"file": filename}}
        if field != trace:
            workload["rate_rps"] = 1.0
        doc = {**instance, "schema_version": "placer.instance/2", "workload": workload}
        files = [("instance.json", _dumps(doc))]
        if content is not None:
            files.append((filename, content))
        yield Mutant(
            f"workload-file/{op}", "workload-file", tuple(files), ("evaluate", "{dir}/instance.json", plan), (expect,)
        )


# -- the corpus ------------------------------------------------------------------------------------


_PLAN_FOR = {
    "moe10b": "plans/seed000-tp2-ep4-pp4.json",
    "moe10b-decode": "plans/seed000-tp2-ep4-pp4.json",
    "ep64-128gpu": "plans/seed002-ep64-tp2.json",
}


def mutants() -> list[Mutant]:
    """The whole corpus, in a fixed order (names are unique)."""
    corpus: list[Mutant] = []
    for path in sorted((ROOT / "instances").glob("*.json")):
        doc = _absolute_refs(_load(f"instances/{path.name}"))
        plan = str(ROOT / _PLAN_FOR.get(path.stem, "plans/seed000-tp2-ep4-pp4.json"))
        cheap = path.stem in ("moe10b", "moe10b-decode", "mixtral-8x7b-h100")
        corpus += _document_mutants(
            "instance", path.stem, doc, "instance.json", lambda f, p=plan: ("evaluate", f, p), cheap=cheap
        )
    embedded = _absolute_refs(_load("instances/moe10b.json"))
    embedded["model"] = _load("models/moe10b.json")
    plan = str(ROOT / "plans" / "seed000-tp2-ep4-pp4.json")
    corpus += [
        m
        for m in _document_mutants(
            "instance", "embedded-model", embedded, "instance.json", lambda f: ("evaluate", f, plan)
        )
        if "/model." in m.name
    ]
    for path in sorted((ROOT / "models").glob("*.json")):
        doc = _load(f"models/{path.name}")
        corpus += _document_mutants("model", path.stem, doc, "model.json", lambda f: ("model", "show", f), kind="model")
    for path in sorted((ROOT / "plans").glob("*.json")):
        doc = _load(f"plans/{path.name}")
        instance = str(ROOT / "instances" / ("ep64-128gpu.json" if "ep64" in path.stem else "moe10b.json"))
        corpus += _document_mutants(
            "plan",
            path.stem,
            doc,
            "plan.json",
            lambda f, i=instance: ("evaluate", i, f),
            kind="plan",
            skip=_PLAN_OUTPUT_KEYS,
            cheap="ep64" not in path.stem,
        )
    corpus += _routing_mutants()
    corpus += _physical_mutants()
    corpus += _workload_file_mutants()
    names = [m.name for m in corpus]
    assert len(names) == len(set(names)), "mutant names must be unique"
    return corpus


def run_mutant(mutant: Mutant, folder: Path) -> tuple[int, str, str | None]:
    """Run one mutant through the CLI in-process: exit code, printed output, traceback if one escaped."""
    import traceback

    from typer.testing import CliRunner

    from placer.cli import app

    args = mutant.materialise(folder)
    result = CliRunner().invoke(app, args)
    output = result.output
    try:
        stderr = result.stderr
    except ValueError:
        stderr = ""  # not captured apart from stdout
    if stderr and stderr not in output:
        output += stderr
    escaped = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        escaped = "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, output, escaped
