"""The sweep's table: one row per point, in grid order, every input axis and every figure a column.

Rows are ordered by the point's place in the grid, never by when it finished, and no wall-clock
figure is in the table (solve times go to ``timings.csv``), so the same sweep writes the same
``table.csv`` byte for byte whichever executor ran it. Parquet (``table.parquet``) needs pyarrow
(``pip install 'placer[sweep]'``); the CSV is always written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from placer.errors import InputError
from placer.files import write_atomic
from placer.problem import Problem
from placer.sweep.grid import Point
from placer.sweep.point import FIGURE_COLUMNS, PointAnswer

#: columns every row has before the axes
LEAD_COLUMNS = ("point", "key")
#: what each point resolved to (inputs, whichever axes set them), after the axes
RESOLVED_COLUMNS = (
    "instance_name",
    "model_name",
    "hardware_name",
    "gpus_per_node",
    "engine_name",
    "workload_kind",
    "demand_output_tokens_per_s",
    "max_gpus",
    "slo_ttft_s",
    "slo_tpot_ms",
    "price_per_gpu_hour_usd",
)
RESERVED_COLUMNS = frozenset(LEAD_COLUMNS + RESOLVED_COLUMNS + FIGURE_COLUMNS)


def check_axis_names(names: Sequence[str], source: str) -> None:
    """An axis column must not shadow a column the table always has."""
    clash = [n for n in names if n in RESERVED_COLUMNS]
    if clash:
        reason = f"{', '.join(clash)} would clash with a table column; name the dotted instance field"
        raise InputError.single("axes", reason, source)


def demand_output_tokens_per_s(problem: Problem) -> float | None:
    """The demand a ``rate`` workload puts on the deployment, in output tokens/s (None otherwise)."""
    w = problem.workload
    if w.kind != "rate":
        return None
    if w.demand_output_tokens_per_s is not None:
        return w.demand_output_tokens_per_s
    if w.rate_rps is not None:
        return w.rate_rps * (w.output_tokens_mean or w.output_tokens)
    return None


def resolved_inputs(problem: Problem) -> dict[str, Any]:
    return {
        "instance_name": problem.name,
        "model_name": problem.model.name,
        "hardware_name": problem.hardware.name,
        "gpus_per_node": problem.fabric.gpus_per_node,
        "engine_name": problem.engine,
        "workload_kind": problem.workload.kind,
        "demand_output_tokens_per_s": demand_output_tokens_per_s(problem),
        "max_gpus": problem.slo.max_gpus,
        "slo_ttft_s": problem.slo.ttft_s,
        "slo_tpot_ms": problem.slo.tpot_ms,
        "price_per_gpu_hour_usd": problem.hardware.price_per_gpu_hour_usd,
    }


def table_rows(points: Sequence[Point], answers: dict[str, PointAnswer]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and the rows, one per point in grid order (a point without an answer is left out)."""
    axis_names = list(dict.fromkeys(name for p in points for name in p.inputs))
    columns = [*LEAD_COLUMNS, *axis_names, *RESOLVED_COLUMNS, *FIGURE_COLUMNS]
    rows = []
    for point in points:
        answer = answers.get(point.key)
        if answer is None:
            continue
        row = {"point": point.index, "key": point.key, **point.inputs, **resolved_inputs(point.problem)}
        row.update({name: answer.figures.get(name) for name in FIGURE_COLUMNS})
        rows.append({c: row.get(c) for c in columns})
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return buffer.getvalue()


def _arrow_column(values: list[Any]) -> tuple[Any, Any]:
    """Values and an Arrow type for one column: bool, int64, float64, else text."""
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return values, pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return values, pa.int64()
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return [None if v is None else float(v) for v in values], pa.float64()
    return [None if v is None else (v if isinstance(v, str) else _cell(v)) for v in values], pa.string()


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def write_parquet(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for column in columns:
        values, kind = _arrow_column([row[column] for row in rows])
        arrays[column] = pa.array(values, type=kind)
    table = pa.table(arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(out: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Path]:
    """``table.csv`` and, with pyarrow, ``table.parquet``; the paths written."""
    written = [out / "table.csv"]
    write_atomic(written[0], csv_text(columns, rows))
    if parquet_available():
        written.append(out / "table.parquet")
        write_parquet(written[1], columns, rows)
    return written


def write_timings(out: Path, points: Sequence[Point], answers: dict[str, PointAnswer], solved: set[str]) -> Path:
    """``timings.csv``: each point's solve wall time and whether this run solved it (or found it cached)."""
    columns = ["point", "key", "solve_wall_s", "solved_this_run"]
    rows = [
        {"point": p.index, "key": p.key, "solve_wall_s": round(answers[p.key].wall_s, 4),
         "solved_this_run": p.key in solved}
        for p in points
        if p.key in answers
    ]  # fmt: skip
    path = out / "timings.csv"
    write_atomic(path, csv_text(columns, rows))
    return path
