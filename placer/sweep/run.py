"""The sweep loop: expand the grid, take what the cache already holds, solve the rest on an
executor, file each answer as it arrives, and gather the table in grid order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.executors import Executor, LocalExecutor
from placer.sweep.grid import Point, expand, solve_settings
from placer.sweep.point import PointAnswer, PointJob, error_figures, solve_point
from placer.sweep.spec import SweepSpec
from placer.sweep.store import PointStore
from placer.sweep.table import check_axis_names, table_rows, write_table, write_timings


@dataclass
class SweepOutcome:
    """What a run did: every point, the answers known (cached or solved), and which keys it solved."""

    spec: SweepSpec
    points: list[Point]
    answers: dict[str, PointAnswer]
    solved: list[str] = field(default_factory=list)  # keys solved by this run, in the order they finished
    cached: list[str] = field(default_factory=list)  # keys found in the cache
    written: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(p.key in self.answers for p in self.points)

    @property
    def failed(self) -> list[Point]:
        return [p for p in self.points if p.key in self.answers and self.answers[p.key].failed]

    def table(self) -> tuple[list[str], list[dict[str, Any]]]:
        return table_rows(self.points, self.answers)


def run_sweep(
    spec: SweepSpec,
    spec_path: str | Path,
    out: str | Path | None = None,
    executor: Executor | None = None,
    cache: str | Path | None = None,
    max_solves: int | None = None,
    retry_errors: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[PointAnswer], None] | None = None,
) -> SweepOutcome:
    """Solve every point of ``spec`` not already in the cache (``cache``, default ``<out>/points``).

    ``max_solves`` stops after that many solves (the rest stay for a rerun); ``on_start`` gets the
    number of solves about to run, ``on_done`` each answer as it arrives. With ``out``, a complete
    sweep writes ``table.csv``, ``table.parquet`` and ``timings.csv`` there."""
    points = expand(spec, spec_path)
    check_axis_names([name for name in spec.axes], str(spec_path))
    out_path = Path(out) if out is not None else None
    folder = Path(cache) if cache is not None else (out_path / "points" if out_path is not None else None)
    store = PointStore(folder) if folder is not None else None
    settings = solve_settings(spec)
    outcome = SweepOutcome(spec, points, {})
    todo: list[PointJob] = []
    first_of_key = {}
    for point in points:  # points resolving to the same instance are solved once
        first_of_key.setdefault(point.key, point)
    for point in first_of_key.values():
        answer = store.get(point.key) if store is not None else None
        if answer is not None and not (retry_errors and answer.failed):
            outcome.answers[point.key] = answer
            outcome.cached.append(point.key)
        else:
            todo.append(PointJob(point.key, point.problem, settings))
    if max_solves is not None:
        todo = todo[:max_solves]
    if on_start is not None:
        on_start(len(todo))
    executor = executor if executor is not None else LocalExecutor()
    for index, answer, error in executor.map_unordered(solve_point, todo):
        if error is not None:  # the worker itself failed (solve_point never raises): not cached, retried next run
            answer = PointAnswer(todo[index].key, error_figures(error), 0.0)
        elif store is not None:
            store.put(answer)
        outcome.answers[answer.key] = answer
        outcome.solved.append(answer.key)
        if on_done is not None:
            on_done(answer)
    if out_path is not None and outcome.complete:
        columns, rows = outcome.table()
        outcome.written = write_table(out_path, columns, rows)
        outcome.written.append(write_timings(out_path, points, outcome.answers, set(outcome.solved)))
    return outcome
