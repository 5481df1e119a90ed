"""The calls of a journal, one row per call id: a pure function of its records (SPEC.md 4.12).

`flux show`, `flux replay` and `flux diff` read journals through this view; it reads records
only, never files or code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallRow", "error_summary", "timeline"]

# Outcome records that end a call, and what each says about it.
_ENDS = {
    "task_completed": "completed",
    "task_failed": "failed",
    "workflow_resumed": "resumed",
    "timer_fired": "fired",
}
_FLAGS = ("fallback_started", "fallback_failed", "rollback_started", "rollback_completed", "rollback_failed")


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
    outcome: str = "open"  # completed, failed, resumed, recorded, fired; open: nothing recorded yet
    value: Any = None  # the result (or the input a pause was resumed with), as recorded
    error: Any = None  # the recorded exception tree of a failed call
    attempts: int = 1  # 1 + the retries recorded
    duration_ms: float | None = None  # from the opening record to the outcome
    end_seq: int | None = None
    notes: list[str] = field(default_factory=list)  # cached, fallback, rollback_failed, cancelled, ...
    started_at: str | None = None

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
        }
        if self.outcome in ("completed", "resumed", "recorded"):
            row["value"] = self.value
        if self.error is not None:
            row["error"] = error_summary(self.error)
        if self.notes:
            row["notes"] = self.notes
        return row


def error_summary(tree: Any) -> dict[str, str]:
    """The type and message of a recorded exception tree (its traceback left out)."""
    if not isinstance(tree, dict):
        return {"type": "?", "message": str(tree)}
    return {"type": str(tree.get("$error", "?")).rpartition(":")[2], "message": str(tree.get("msg", ""))}


def _ms(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        delta = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
    except ValueError:
        return None
    return round(delta.total_seconds() * 1000, 3)


def timeline(records: list[dict[str, Any]]) -> list[CallRow]:
    """One row per call id, in the order the calls were first recorded. Reads records only."""
    rows: dict[str, CallRow] = {}
    for record in records:
        call_id = record.get("call_id")
        if call_id is None:
            continue
        kind = record["kind"]
        seq = record["seq"]
        if kind == "task_started":
            rows[call_id] = CallRow(
                call_id, "child" if "child" in record else "task", record.get("name", ""), seq,
                record.get("src", ""), record.get("args"), record.get("kwargs"), started_at=record.get("at"),
            )
        elif kind == "workflow_paused":
            rows[call_id] = CallRow(
                call_id, "pause", record.get("name", ""), seq, record.get("src", ""), started_at=record.get("at"),
                kwargs={"wake_at": record["wake_at"]} if "wake_at" in record else None,
            )
        elif kind == "value_recorded":
            rows[call_id] = CallRow(
                call_id, "value", record.get("name", ""), seq, record.get("src", ""), outcome="recorded",
                value=record.get("value"), duration_ms=0.0, end_seq=seq, started_at=record.get("at"),
            )
        elif kind == "timer_started":
            rows[call_id] = CallRow(
                call_id, "timer", record.get("name", "sleep"), seq, record.get("src", ""),
                kwargs={"wake_at": record.get("wake_at")}, started_at=record.get("at"),
            )
        else:
            row = rows.get(call_id)
            if row is None:
                continue
            ended = _ENDS.get(kind)
            if ended is not None:
                row.outcome = ended
                row.end_seq = seq
                row.duration_ms = _ms(row.started_at, record.get("at"))
                if kind == "task_completed":
                    row.value = record.get("value")
                    row.notes += [flag for flag in ("cached", "fallback") if record.get(flag)]
                elif kind == "task_failed":
                    row.error = record.get("error")
                elif kind == "workflow_resumed":
                    row.value = record.get("input")
            elif kind == "retry_started":
                row.attempts += 1
            elif kind == "task_cancelled":
                row.notes.append("cancelled")
            elif kind in _FLAGS:
                row.notes.append(kind)
    return list(rows.values())
