"""Read a workload's length files and arrival traces into the schema's inline form.

An instance may name a file for ``workload.prompt_length_distribution``,
``workload.output_length_distribution`` (lengths) or ``workload.arrival_trace`` (arrival times and,
optionally, per-request lengths). :func:`resolve_workload_files` reads each once, relative to the
instance's folder as routing files are, and returns the workload with the data inline (the path
kept, made absolute), validated again so the length and order rules of the schema hold for file
data too. The cost model and the simulator then never read files.

Formats:

* lengths: a JSON list of positive integers, or text with one length a line (commas also separate;
  blank lines and ``#`` comments skipped). The histogram is the count of each distinct length.
* trace: CSV/text with ``arrival_s`` or ``arrival_s,prompt_tokens,output_tokens`` a line (an
  optional header line of those names; ``#`` comments skipped), or a JSON list of numbers or of
  objects with the keys ``arrival_s`` and optionally ``prompt_tokens`` and ``output_tokens``.

Every problem (missing, unreadable, empty, not a number, a length not an integer) is an
:class:`InputError` naming the field and the file, line by line where it can.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from placer.errors import InputError
from placer.schema import Workload
from placer.validation import parse_json, validate

#: Largest lengths or trace file read, in bytes (a trace of a few million requests).
MAX_WORKLOAD_FILE_BYTES = 256 * 1024 * 1024


def resolve_path(path: str, base_dir: Path | None, field: str) -> Path:
    """Relative paths are taken from the instance's folder first, then the working directory."""
    candidate = Path(path)
    candidates = [candidate] if candidate.is_absolute() else [*([base_dir / candidate] if base_dir else []), candidate]
    for option in candidates:
        if option.is_file():
            return option.resolve()
    raise InputError.single(field, f"file not found: {path}")


def _read_text(path: Path, field: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_WORKLOAD_FILE_BYTES:
            raise InputError.single(field, f"{path}: {size:,} bytes, above {MAX_WORKLOAD_FILE_BYTES:,}")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError.single(field, f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError.single(field, f"cannot read {path}: {exc.strerror or exc}") from None


def _number(text: str, path: Path, where: str, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError.single(field, f"{path}, {where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError.single(field, f"{path}, {where}: {text.strip()!r} is not finite")
    return value


def _length(value: Any, path: Path, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise InputError.single(field, f"{path}, {where}: a length must be a positive integer, got {value!r}")
    return int(value)


def _json_kind(data: Any) -> str:
    return "an object" if isinstance(data, dict) else f"a {type(data).__name__}"


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, comma-separated cells) of the non-blank, non-comment lines."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append((number, [cell.strip() for cell in line.split(",")]))
    return rows


def read_lengths(path: Path, field: str) -> list[tuple[int, float]]:
    """A lengths file as a histogram: ``(tokens, count)`` pairs in increasing tokens."""
    text = _read_text(path, field)
    lengths: list[int] = []
    if path.suffix.lower() == ".json":
        data = parse_json(text, str(path))
        if not isinstance(data, list):
            raise InputError.single(field, f"{path}: expected a JSON list of lengths, got {_json_kind(data)}")
        lengths = [_length(v, path, f"entry {i}", field) for i, v in enumerate(data)]
    else:
        for number, cells in _rows(text):
            for cell in cells:
                if cell:
                    lengths.append(_length(_number(cell, path, f"line {number}", field), path, f"line {number}", field))
    if not lengths:
        raise InputError.single(field, f"{path}: no lengths in the file")
    return [(tokens, float(count)) for tokens, count in sorted(Counter(lengths).items())]


TRACE_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")


def read_trace(path: Path, field: str) -> dict[str, list[Any]]:
    """A trace file as ``{"arrival_s": [...], "prompt_tokens": [...], "output_tokens": [...]}``
    (the lengths only when the file gives them)."""
    text = _read_text(path, field)
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    if path.suffix.lower() == ".json":
        data = parse_json(text, str(path))
        if not isinstance(data, list):
            raise InputError.single(field, f"{path}: expected a JSON list of arrivals, got {_json_kind(data)}")
        for index, entry in enumerate(data):
            where = f"entry {index}"
            if isinstance(entry, dict):
                unknown = sorted(set(entry) - set(TRACE_COLUMNS))
                if unknown or "arrival_s" not in entry:
                    raise InputError.single(field, f"{path}, {where}: keys must be {', '.join(TRACE_COLUMNS)}")
                cells = [entry["arrival_s"], *[entry[k] for k in TRACE_COLUMNS[1:] if k in entry]]
            else:
                cells = [entry]
            _trace_row(cells, path, where, field, times, prompts, outputs)
    else:
        rows = _rows(text)
        if rows and rows[0][1][0] == "arrival_s":
            if tuple(rows[0][1]) not in (TRACE_COLUMNS[:1], TRACE_COLUMNS):
                raise InputError.single(
                    field, f"{path}, line {rows[0][0]}: header must be arrival_s[,prompt_tokens,output_tokens]"
                )
            rows = rows[1:]
        for number, cells in rows:
            _trace_row(cells, path, f"line {number}", field, times, prompts, outputs)
    if not times:
        raise InputError.single(field, f"{path}: no arrivals in the file")
    if prompts and len(prompts) != len(times):
        raise InputError.single(
            field, f"{path}: per-request lengths on some lines only; give them on every line or none"
        )
    result: dict[str, list[Any]] = {"arrival_s": times}
    if prompts:
        result |= {"prompt_tokens": prompts, "output_tokens": outputs}
    return result


def _trace_row(
    cells: list[Any], path: Path, where: str, field: str, times: list[float], prompts: list[int], outputs: list[int]
) -> None:
    if len(cells) not in (1, 3):
        raise InputError.single(
            field, f"{path}, {where}: {len(cells)} values; expected arrival_s or arrival_s,prompt_tokens,output_tokens"
        )
    time = cells[0] if isinstance(cells[0], (int, float)) and not isinstance(cells[0], bool) else None
    if time is None:
        time = _number(str(cells[0]), path, where, field)
    if not math.isfinite(time):
        raise InputError.single(field, f"{path}, {where}: arrival time {time!r} is not finite")
    times.append(float(time))
    if len(cells) == 3:
        values = [c if isinstance(c, (int, float)) else _number(str(c), path, where, field) for c in cells[1:]]
        prompts.append(_length(values[0], path, where, field))
        outputs.append(_length(values[1], path, where, field))


def resolve_workload_files(workload: Workload, base_dir: Path | None, source: str | None = None) -> Workload:
    """``workload`` with every named file read inline (see the module docstring); unchanged when it names none."""
    updates: dict[str, Any] = {}
    for name in ("prompt_length_distribution", "output_length_distribution"):
        dist = getattr(workload, name)
        if dist is None or dist.file is None:
            continue
        field = f"workload.{name}.file"
        if dist.histogram is not None:
            if Path(dist.file).is_absolute():
                continue  # read already: a resolved distribution carries its absolute path and the data
            raise InputError.single(f"workload.{name}", "give a histogram or a file, not both", source)
        path = _in_source(source, resolve_path, dist.file, base_dir, field)
        histogram = _in_source(source, read_lengths, path, field)
        updates[name] = {"file": str(path), "histogram": histogram}
    trace = workload.arrival_trace
    if trace is not None and trace.file is not None:
        field = "workload.arrival_trace.file"
        if trace.arrival_s is not None and not Path(trace.file).is_absolute():
            raise InputError.single("workload.arrival_trace", "give a file or arrival_s, not both", source)
    if trace is not None and trace.file is not None and trace.arrival_s is None:
        path = _in_source(source, resolve_path, trace.file, base_dir, field)
        updates["arrival_trace"] = {"file": str(path), **_in_source(source, read_trace, path, field)}
    if not updates:
        return workload
    data = workload.model_dump(exclude_unset=True) | updates
    return validate(Workload, data, source, prefix="workload.")


def _in_source(source: str | None, read: Any, *args: Any) -> Any:
    """``read(*args)``; an error without a file of its own is the instance's."""
    try:
        return read(*args)
    except InputError as exc:
        if exc.source is not None or source is None:
            raise
        raise InputError(exc.problems, source) from None
