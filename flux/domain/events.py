"""Execution events: the user's view of journal records (`ExecutionContext.events`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from flux._engine import records as R
from flux._engine.codec import decode

__all__ = ["ExecutionEvent", "ExecutionEventType", "events_from_records"]


class ExecutionEventType(str, Enum):
    WORKFLOW_STARTED = "WORKFLOW_STARTED"
    WORKFLOW_COMPLETED = "WORKFLOW_COMPLETED"
    WORKFLOW_FAILED = "WORKFLOW_FAILED"
    WORKFLOW_PAUSED = "WORKFLOW_PAUSED"
    WORKFLOW_RESUMED = "WORKFLOW_RESUMED"
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"
    TASK_STARTED = "TASK_STARTED"
    TASK_COMPLETED = "TASK_COMPLETED"
    TASK_FAILED = "TASK_FAILED"
    TASK_PAUSED = "TASK_PAUSED"
    TASK_CANCELLED = "TASK_CANCELLED"
    TASK_RESUMED = "TASK_RESUMED"
    TASK_RETRY_STARTED = "TASK_RETRY_STARTED"
    TASK_RETRY_COMPLETED = "TASK_RETRY_COMPLETED"
    TASK_RETRY_FAILED = "TASK_RETRY_FAILED"
    TASK_FALLBACK_STARTED = "TASK_FALLBACK_STARTED"
    TASK_FALLBACK_COMPLETED = "TASK_FALLBACK_COMPLETED"
    TASK_FALLBACK_FAILED = "TASK_FALLBACK_FAILED"
    TASK_ROLLBACK_STARTED = "TASK_ROLLBACK_STARTED"
    TASK_ROLLBACK_COMPLETED = "TASK_ROLLBACK_COMPLETED"
    TASK_ROLLBACK_FAILED = "TASK_ROLLBACK_FAILED"


@dataclass(frozen=True)
class ExecutionEvent:
    """One thing that happened: `source_id` is the execution id or the task's call id."""

    type: ExecutionEventType
    source_id: str
    name: str
    value: Any = None
    time: dt.datetime | None = None
    seq: int = -1
    attempt: int | None = None  # for retry events: which retry (1 is the first retry)


_HANDLER_EVENTS = {
    R.RETRY_STARTED: ExecutionEventType.TASK_RETRY_STARTED,
    R.FALLBACK_STARTED: ExecutionEventType.TASK_FALLBACK_STARTED,
    R.FALLBACK_FAILED: ExecutionEventType.TASK_FALLBACK_FAILED,
    R.ROLLBACK_STARTED: ExecutionEventType.TASK_ROLLBACK_STARTED,
    R.ROLLBACK_COMPLETED: ExecutionEventType.TASK_ROLLBACK_COMPLETED,
    R.ROLLBACK_FAILED: ExecutionEventType.TASK_ROLLBACK_FAILED,
}


def _time(record: dict[str, Any]) -> dt.datetime | None:
    at = record.get("at")
    return dt.datetime.fromisoformat(at) if isinstance(at, str) else None


def events_from_records(records: Sequence[dict[str, Any]], load: Any = None) -> list[ExecutionEvent]:
    """Turns journal records into events (a pause yields TASK_PAUSED then WORKFLOW_PAUSED).

    `load` decodes a recorded value (the executor's, which also reads output storage)."""
    load = load or decode
    header = records[0]
    execution_id = header.get("execution_id", "")
    workflow = header.get("workflow", "")
    names: dict[str, str] = {}
    out: list[ExecutionEvent] = []
    E = ExecutionEventType
    for r in records[1:]:
        kind = r["kind"]
        seq = r["seq"]
        t = _time(r)
        if kind == R.STARTED:
            out.append(ExecutionEvent(E.WORKFLOW_STARTED, execution_id, workflow, load(header.get("input")), t, seq))
        elif kind == R.TASK_STARTED:
            names[r["call_id"]] = r["name"]
            args = load(r.get("args", []))
            out.append(ExecutionEvent(E.TASK_STARTED, r["call_id"], r["name"], args, t, seq))
        elif kind == R.TASK_COMPLETED:
            cid = r["call_id"]
            value = load(r["value"])
            if r.get("attempt"):
                out.append(ExecutionEvent(E.TASK_RETRY_COMPLETED, cid, names.get(cid, ""), value, t, seq, r["attempt"]))
            if r.get("fallback"):
                out.append(ExecutionEvent(E.TASK_FALLBACK_COMPLETED, cid, names.get(cid, ""), value, t, seq))
            out.append(ExecutionEvent(E.TASK_COMPLETED, cid, names.get(cid, ""), value, t, seq))
        elif kind == R.TASK_FAILED:
            cid = r["call_id"]
            out.append(ExecutionEvent(E.TASK_FAILED, cid, names.get(cid, ""), load(r["error"]), t, seq))
        elif kind == R.ATTEMPT_FAILED:
            if r["attempt"]:
                cid = r["call_id"]
                error = load(r["error"])
                out.append(ExecutionEvent(E.TASK_RETRY_FAILED, cid, names.get(cid, ""), error, t, seq, r["attempt"]))
        elif kind in _HANDLER_EVENTS:
            cid = r["call_id"]
            value = load(r["error"]) if "error" in r else None
            out.append(ExecutionEvent(_HANDLER_EVENTS[kind], cid, names.get(cid, ""), value, t, seq, r.get("attempt")))
        elif kind == R.PAUSED:
            out.append(ExecutionEvent(E.TASK_PAUSED, r["call_id"], r["name"], None, t, seq))
            out.append(ExecutionEvent(E.WORKFLOW_PAUSED, execution_id, workflow, r["name"], t, seq))
        elif kind == R.SUSPENDED:
            out.append(ExecutionEvent(E.WORKFLOW_PAUSED, execution_id, workflow, None, t, seq))
        elif kind == R.RESUMED:
            out.append(ExecutionEvent(E.WORKFLOW_RESUMED, execution_id, workflow, load(r.get("input")), t, seq))
        elif kind == R.CANCELLED:
            out.append(ExecutionEvent(E.WORKFLOW_CANCELLED, execution_id, workflow, None, t, seq))
        elif kind == R.TASK_CANCELLED:
            cid = r["call_id"]
            out.append(ExecutionEvent(E.TASK_CANCELLED, cid, names.get(cid, ""), None, t, seq))
        elif kind == R.COMPLETED:
            out.append(ExecutionEvent(E.WORKFLOW_COMPLETED, execution_id, workflow, load(r["value"]), t, seq))
        elif kind == R.FAILED:
            out.append(ExecutionEvent(E.WORKFLOW_FAILED, execution_id, workflow, load(r["error"]), t, seq))
    return out
