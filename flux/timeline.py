"""The calls of a journal, one row per call id, read from its fold (SPEC.md 4.12).

`flux show`, `flux replay`, `flux diff` and the client's views read journals through this; it
reads the history of engine/history.py (and the records it points at), never files or code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flux._engine import records as R
from flux._engine.history import CallHistory, History, fold

__all__ = ["CallRow", "error_summary", "row_of", "timeline"]

_HANDLER_NOTES = (R.FALLBACK_STARTED, R.FALLBACK_FAILED, R.ROLLBACK_STARTED, R.ROLLBACK_COMPLETED, R.ROLLBACK_FAILED)


@dataclass(slots=True)
class CallRow:
    """One call of a journal: how it was asked for and how it ended."""

    call_id: str
    kind: str  # task, child (a sub-workflow), pause, value (now, uuid4, ...), timer
    name: str
    seq: int  # the record that opened the call
    src: str = ""
    args: list[Any] | None = None  # recorded JSON trees
    kwargs: dict[str, Any] | None = None
    outcome: str = "open"  # completed, failed, resumed, recorded, fired, cancelled; open: nothing recorded yet
    value: Any = None  # the result (or the input a pause was resumed with), as recorded
    error: Any = None  # the recorded exception tree of a failed call
    attempts: int = 1  # 1 + the retries recorded
    duration_ms: float | None = None  # from the opening record to the outcome
    end_seq: int | None = None
    notes: list[str] = field(default_factory=list)  # cached, fallback, rollback_failed, cancelled, ...
    started_at: str | None = None
    ended_at: str | None = None
    child: str | None = None  # the sub-workflow's execution id
    wake_at: float | None = None  # a timer's or a timed pause's wake-up time (epoch seconds)

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "call_id": self.call_id,
            "kind": self.kind,
            "name": self.name,
            "seq": self.seq,
            "src": self.src,
            "args": self.args or [],
            "kwargs": self.kwargs or {},
            "outcome": self.outcome,
            "attempts": self.attempts,
            "duration_ms": self.duration_ms,
            "end_seq": self.end_seq,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }
        if self.outcome in ("completed", "resumed", "recorded"):
            row["value"] = self.value
        if self.error is not None:
            row["error"] = error_summary(self.error)
        if self.notes:
            row["notes"] = self.notes
        if self.child is not None:
            row["child"] = self.child
        if self.wake_at is not None:
            row["wake_at"] = self.wake_at
        return row


def error_summary(tree: Any) -> dict[str, str]:
    """The type and message of a recorded exception tree (its traceback left out)."""
    if not isinstance(tree, dict):
        return {"type": "?", "message": str(tree)}
    return {"type": str(tree.get("$error", "?")).rpartition(":")[2], "message": str(tree.get("msg", ""))}


def _ms(start: Any, end: Any) -> float | None:
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        delta = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
    except ValueError:
        return None
    return round(delta.total_seconds() * 1000, 3)


def row_of(call_id: str, call: CallHistory) -> CallRow:
    """The row of one call of a fold."""
    start = call.start
    row = CallRow(
        call_id,
        "child" if call.child is not None else call.kind,
        call.name,
        call.seq,
        str(start.get("src", "")),
        call.args if call.kind == "task" else None,
        call.kwargs if call.kind == "task" else None,
        started_at=start.get("at"),
        attempts=call.attempts,
        child=call.child,
    )
    if call.kind in ("timer", "pause") and start.get("wake_at") is not None:
        row.wake_at = start["wake_at"]
    end: dict[str, Any] | None = None
    if call.kind == "value":
        row.outcome, row.value, row.end_seq, row.duration_ms = "recorded", call.value, call.seq, 0.0
        row.ended_at = row.started_at
    elif call.kind == "pause":
        if call.resumed is not None:
            end = call.resumed
            row.outcome, row.value = "resumed", call.resumed.get("input")
    elif call.end is not None:
        end = call.outcome
        assert end is not None
        if call.end == R.TASK_COMPLETED:
            row.outcome, row.value = "completed", end.get("value")
            row.notes += [flag for flag in ("cached", "fallback") if end.get(flag)]
        elif call.end == R.TASK_FAILED:
            row.outcome, row.error = "failed", end.get("error")
        else:
            row.outcome = "fired"
        if end.get("rerun"):
            row.notes.append("rerun")
    if end is not None:
        row.end_seq = end["seq"]
        row.ended_at = end.get("at")
        row.duration_ms = _ms(row.started_at, row.ended_at)
    if call.cancelled is not None:
        row.notes.append("cancelled")
        if row.outcome == "open":
            row.outcome = "cancelled"
            row.end_seq = call.cancelled["seq"]
            row.ended_at = call.cancelled.get("at")
            row.duration_ms = _ms(row.started_at, row.ended_at)
    if call.handlers:
        row.notes += [kind for kind in _HANDLER_NOTES if kind in call.handlers]
    return row


def timeline(source: History | Sequence[dict[str, Any]]) -> list[CallRow]:
    """One row per call id, in the order the calls were first recorded. Reads records only."""
    history = source if isinstance(source, History) else fold(source)
    return [row_of(call_id, call) for call_id, call in sorted(history.calls.items(), key=lambda item: item[1].seq)]
