"""Numbers and notices as every report prints them: shared by the terminal tables
(:mod:`placer.report.terminal`) and the disaggregated reports (:mod:`placer.report.disagg`),
which the terminal module dispatches to, so neither imports the other's printing."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.panel import Panel


def fmt(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant figures and thousands separators."""
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def warnings_panel(console: Console, warnings: Iterable[str]) -> None:
    """The model's and the evaluator's warnings in one yellow panel (nothing when there are none)."""
    items = list(warnings)
    if items:
        console.print(Panel("\n".join(f"• {w}" for w in items), title="warnings", border_style="yellow"))
