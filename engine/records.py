"""The record kinds of a journal, and what an execution's state is after a list of records.

Every kind is written by the executor and read back by `ReplayIndex` (engine/replay.py);
SPEC.md, section "Records", lists their fields.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ATTEMPT_FAILED",
    "CANCELLED",
    "CANCEL_REQUESTED",
    "FINAL_STATUSES",
    "LIFECYCLE",
    "PATCHED",
    "TASK_CANCELLED",
    "TIMER_FIRED",
    "TIMER_STARTED",
    "VALUE",
    "COMPLETED",
    "FALLBACK_FAILED",
    "FALLBACK_STARTED",
    "RETRY_STARTED",
    "ROLLBACK_COMPLETED",
    "ROLLBACK_FAILED",
    "ROLLBACK_STARTED",
    "FAILED",
    "HEADER",
    "KINDS",
    "PAUSED",
    "RESUMED",
    "STARTED",
    "STATUSES",
    "TASK_COMPLETED",
    "TASK_FAILED",
    "TASK_STARTED",
    "status_of",
]

HEADER = "header"
STARTED = "workflow_started"
RESUMED = "workflow_resumed"
PAUSED = "workflow_paused"
COMPLETED = "workflow_completed"
FAILED = "workflow_failed"
TASK_STARTED = "task_started"
TASK_COMPLETED = "task_completed"
TASK_FAILED = "task_failed"
ATTEMPT_FAILED = "attempt_failed"
RETRY_STARTED = "retry_started"
FALLBACK_STARTED = "fallback_started"
FALLBACK_FAILED = "fallback_failed"
ROLLBACK_STARTED = "rollback_started"
ROLLBACK_COMPLETED = "rollback_completed"
ROLLBACK_FAILED = "rollback_failed"
TASK_CANCELLED = "task_cancelled"
VALUE = "value_recorded"
TIMER_STARTED = "timer_started"
TIMER_FIRED = "timer_fired"
CANCELLED = "workflow_cancelled"
PATCHED = "patched"
CANCEL_REQUESTED = "cancel_requested"

KINDS = (
    HEADER, STARTED, RESUMED, PAUSED, COMPLETED, FAILED, TASK_STARTED, TASK_COMPLETED, TASK_FAILED,
    ATTEMPT_FAILED, RETRY_STARTED, FALLBACK_STARTED, FALLBACK_FAILED, ROLLBACK_STARTED, ROLLBACK_COMPLETED,
    ROLLBACK_FAILED, TASK_CANCELLED, VALUE, TIMER_STARTED, TIMER_FIRED, CANCELLED, PATCHED,
    CANCEL_REQUESTED,
)

# created: only the header. running: started or resumed, not yet ended (a live owner holds the
# lock, or the process died: "interrupted" when nobody holds it).
STATUSES = ("created", "running", "interrupted", "paused", "completed", "failed", "cancelled")
FINAL_STATUSES = ("completed", "failed", "cancelled")

LIFECYCLE = {
    STARTED: "running",
    RESUMED: "running",
    CANCEL_REQUESTED: "running",  # still running until the cancellation has unwound it
    PAUSED: "paused",
    COMPLETED: "completed",
    FAILED: "failed",
    CANCELLED: "cancelled",
}


def status_of(records: list[dict[str, Any]]) -> str:
    """The status the records leave the execution in ("running" if it has not ended)."""
    for record in reversed(records):
        status = LIFECYCLE.get(record["kind"])
        if status is not None:
            return status
    return "created"
