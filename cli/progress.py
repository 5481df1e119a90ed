"""The live line `flux exec` and `flux resume` show on a terminal while a run goes on: calls done,
the calls running, retries and waits. A record listener (SPEC.md 4.11): it hears each record the
run appends and redraws one status line on standard error; when standard error is not a
terminal it is never made."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from flux._cli.render import printable
from flux._engine.clock import iso
from flux._engine.listeners import RunInfo

__all__ = ["Progress"]


class Progress:
    """`with Progress(console) as progress:` around a run given `observer=progress`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.done = 0
        self.failed = 0
        self.retries = 0
        self.running: dict[tuple[str, str], str] = {}  # (execution id, call id) -> name
        self.waiting = ""
        self.started = time.monotonic()
        self._live = Live(Text(""), console=console, transient=True, refresh_per_second=8)

    def __enter__(self) -> Progress:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def recorded(self, run: RunInfo, record: dict[str, Any]) -> None:
        kind = record["kind"]
        key = (run.execution_id, str(record.get("call_id", "")))
        if kind == "task_started":
            self.running[key] = str(record.get("name", "?"))
            self.waiting = ""
        elif kind in ("task_completed", "task_failed"):
            self.running.pop(key, None)
            if kind == "task_completed":
                self.done += 1
            else:
                self.failed += 1
        elif kind == "attempt_failed" and record.get("retry_at") is not None:
            self.retries += 1
            name = self.running.get(key, "a task")
            self.waiting = f"retrying {name} at {iso(record['retry_at'])[11:19]}"
        elif kind == "timer_started":
            self.waiting = f"sleeping until {iso(record['wake_at'])[11:19]}"
        elif kind == "timer_fired":
            self.waiting = ""
        elif kind == "workflow_paused":
            self.waiting = f"paused at {record.get('name')!r}"
        self._live.update(self.line())

    def line(self) -> Text:
        seconds = time.monotonic() - self.started
        parts = [f"{self.done} calls done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.retries:
            parts.append(f"{self.retries} retries")
        if self.running:
            names = list(self.running.values())
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            parts.append(f"running {shown}")
        if self.waiting:
            parts.append(self.waiting)
        text = Text(printable(" · ".join(parts)), style="dim")
        text.append(f"  {seconds:.1f} s", style="dim")
        return text
