"""Rich rendering of a determinism check (`flux check`); reads a CheckReport, never files."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from flux.testing import PROPERTIES, CheckReport

__all__ = ["render_check"]

_STATUS = {"pass": "[green]PASS[/green]", "fail": "[red]FAIL[/red]", "skip": "[yellow]SKIP[/yellow]"}


def render_check(report: CheckReport) -> Table:
    """One row per property: PASS / FAIL / SKIP, the runs it made and what it found."""
    table = Table(box=None, pad_edge=False)
    table.add_column("property", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("runs", justify="right")
    table.add_column("details", overflow="fold")  # paths and messages stay whole
    for result in report.results:
        detail = result.detail if result.status == "fail" else (result.detail or PROPERTIES[result.name])
        table.add_row(result.name, _STATUS[result.status], str(result.runs), escape(detail))
    return table
