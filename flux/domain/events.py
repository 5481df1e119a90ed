"""Execution events: the user's view of journal records (`ExecutionContext.events`).

The journal is ours (SPEC.md 2.1); events are derived from it, one record giving one or a few
events, in the shapes Flux programs expect (SPEC.md 2.4): a pause shows as a task of its own
(`TASK_STARTED`, `TASK_PAUSED`, then `WORKFLOW_PAUSED`; after a resume `WORKFLOW_RESUMING`,
`WORKFLOW_RESUMED`, `TASK_RESUMED`, `TASK_COMPLETED`), retries carry their attempt, delay and
backoff, and recorded values and durable sleeps show as the tasks they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import re
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from flux._engine import records as R
from flux._engine.codec import decode
from flux._engine.errors import ExecutionError

__all__ = ["ExecutionEvent", "ExecutionEventType", "ExecutionState", "events_from_records"]


class ExecutionState(str, Enum):
    """Where an execution stands, as `ExecutionContext.state` says it.

    Here an execution is CREATED (only its header), RUNNING, PAUSED, COMPLETED, FAILED or
    CANCELLED, and CANCELLING while a requested cancellation unwinds it; the other members name
    states of a server that hands executions to workers, which this engine does not have.
    """

    CREATED = "CREATED"
    SCHEDULED = "SCHEDULED"
    CLAIMED = "CLAIMED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    PAUSED = "PAUSED"
    RESUMING = "RESUMING"
    RESUME_SCHEDULED = "RESUME_SCHEDULED"
    RESUME_CLAIMED = "RESUME_CLAIMED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


class ExecutionEventType(str, Enum):
    WORKFLOW_SCHEDULED = "WORKFLOW_SCHEDULED"
    WORKFLOW_CLAIMED = "WORKFLOW_CLAIMED"
    WORKFLOW_STARTED = "WORKFLOW_STARTED"
    WORKFLOW_COMPLETED = "WORKFLOW_COMPLETED"
    WORKFLOW_FAILED = "WORKFLOW_FAILED"
    WORKFLOW_PAUSED = "WORKFLOW_PAUSED"
    WORKFLOW_RESUMING = "WORKFLOW_RESUMING"
    WORKFLOW_RESUMED = "WORKFLOW_RESUMED"
    WORKFLOW_RESUME_SCHEDULED = "WORKFLOW_RESUME_SCHEDULED"
    WORKFLOW_RESUME_CLAIMED = "WORKFLOW_RESUME_CLAIMED"
    WORKFLOW_CANCELLING = "WORKFLOW_CANCELLING"
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"
    TASK_STARTED = "TASK_STARTED"
    TASK_COMPLETED = "TASK_COMPLETED"
    TASK_FAILED = "TASK_FAILED"
    TASK_CANCELLED = "TASK_CANCELLED"
    TASK_PAUSED = "TASK_PAUSED"
    TASK_RESUMED = "TASK_RESUMED"
    TASK_PROGRESS = "TASK_PROGRESS"
    TASK_AWAITING_APPROVAL = "TASK_AWAITING_APPROVAL"
    TASK_APPROVED = "TASK_APPROVED"
    TASK_REJECTED = "TASK_REJECTED"
    TASK_RETRY_STARTED = "TASK_RETRY_STARTED"
    TASK_RETRY_COMPLETED = "TASK_RETRY_COMPLETED"
    TASK_RETRY_FAILED = "TASK_RETRY_FAILED"
    TASK_FALLBACK_STARTED = "TASK_FALLBACK_STARTED"
    TASK_FALLBACK_COMPLETED = "TASK_FALLBACK_COMPLETED"
    TASK_FALLBACK_FAILED = "TASK_FALLBACK_FAILED"
    TASK_ROLLBACK_STARTED = "TASK_ROLLBACK_STARTED"
    TASK_ROLLBACK_COMPLETED = "TASK_ROLLBACK_COMPLETED"
    TASK_ROLLBACK_FAILED = "TASK_ROLLBACK_FAILED"


class ExecutionEvent:
    """One thing that happened: `source_id` is the execution id, or the call id of a task.

    `seq` is the journal record the event was derived from (-1 for one made by hand) and
    `attempt` the retry an event of a retry is about. Two events are equal when their `id` and
    `type` are.
    """

    __slots__ = ("attempt", "id", "name", "seq", "source_id", "subject", "time", "type", "value")

    def __init__(
        self,
        type: ExecutionEventType,
        source_id: str,
        name: str,
        value: Any = None,
        time: dt.datetime | str | None = None,
        id: str | None = None,
        subject: str | None = None,
        *,
        seq: int = -1,
        attempt: int | None = None,
    ) -> None:
        if isinstance(time, str):
            time = dt.datetime.fromisoformat(time)
        if time is None:
            time = dt.datetime.now(dt.UTC)
        elif time.tzinfo is None:
            time = time.replace(tzinfo=dt.UTC)
        self.type = type
        self.source_id = source_id
        self.name = name
        self.value = value
        self.time = time
        self.subject = subject
        self.seq = seq
        self.attempt = attempt
        self.id = id if id is not None else self._make_id()

    def _make_id(self) -> str:
        text = f"{self.type.value}\x00{self.source_id}\x00{self.name}\x00{self.seq}\x00{self.time.isoformat()}"
        return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionEvent):
            return NotImplemented
        return self.id == other.id and self.type == other.type

    def __hash__(self) -> int:
        return hash((self.id, self.type))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "source_id": self.source_id,
            "value": self.value,
            "subject": self.subject,
            "time": self.time,
            "id": self.id,
        }

    def __repr__(self) -> str:
        return (
            f"ExecutionEvent({self.type.value}, source_id={self.source_id!r}, name={self.name!r}, "
            f"value={self.value!r})"
        )


# -- the view ------------------------------------------------------------------------------------

# Task functions by task name (a name may be a format string such as "ship_{order_id}"), so that
# TASK_STARTED can name the arguments the journal holds by position. Several modules may define
# tasks of one name: the workflow's own module is preferred, then the latest defined.
_PARAMS: dict[str, list[Callable[..., Any]]] = {}
_PATTERNS: dict[str, re.Pattern[str]] = {}


def register_task_function(name: str, fn: Callable[..., Any]) -> None:
    """Called for every task made: the view names recorded arguments by its parameters."""
    known = _PARAMS.setdefault(name, [])
    where = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None))
    known[:] = [f for f in known if (getattr(f, "__module__", None), getattr(f, "__qualname__", None)) != where]
    known.append(fn)


def _pick(candidates: list[Callable[..., Any]], module: str | None) -> Callable[..., Any]:
    own = [fn for fn in candidates if module is not None and getattr(fn, "__module__", None) == module]
    return (own or candidates)[-1]


def _function_named(name: str, module: str | None = None) -> Callable[..., Any] | None:
    candidates = _PARAMS.get(name)
    if candidates:
        return _pick(candidates, module)
    for template, found in _PARAMS.items():
        if "{" not in template:
            continue
        pattern = _PATTERNS.get(template)
        if pattern is None:
            parts = re.split(r"\{[^{}]*\}", template)
            pattern = _PATTERNS[template] = re.compile(".*".join(re.escape(p) for p in parts) + r"\Z", re.S)
        if found and pattern.match(name):
            return _pick(found, module)
    return None


def arguments_by_name(
    name: str, args: list[Any], kwargs: dict[str, Any], module: str | None = None
) -> dict[str, Any]:
    """The arguments of a task call by parameter name; positions beyond the known parameters (or
    of a task not loaded in this process) are named `args[i]`. `module`, the workflow's module,
    picks among tasks of the same name defined in several modules."""
    fn = _function_named(name, module)
    names: list[str] = []
    if fn is not None:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            params = []  # type: ignore[assignment]
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out = {(names[i] if i < len(names) else f"args[{i}]"): a for i, a in enumerate(args)}
    out.update(kwargs)
    return out


def _time(record: dict[str, Any]) -> dt.datetime | None:
    at = record.get("at")
    return dt.datetime.fromisoformat(at) if isinstance(at, str) else None


def _wake_iso(wake_at: Any) -> str | None:
    if not isinstance(wake_at, (int, float)):
        return None
    return dt.datetime.fromtimestamp(wake_at, dt.UTC).isoformat()


def _as_execution_error(exc: Any) -> Any:
    if isinstance(exc, BaseException) and not isinstance(exc, ExecutionError):
        return ExecutionError(exc)
    return exc


def events_from_records(records: Sequence[dict[str, Any]], load: Any = None) -> list[ExecutionEvent]:
    """Turns journal records into events, in the order of the records (SPEC.md 2.4).

    `load` decodes a recorded value (the executor's, which also reads output storage)."""
    load = load or decode
    header = records[0]
    execution_id = str(header.get("execution_id", ""))
    workflow = str(header.get("workflow", ""))
    code = header.get("code")
    module = code.get("module") if isinstance(code, dict) and isinstance(code.get("module"), str) else None
    E = ExecutionEventType
    out: list[ExecutionEvent] = []
    names: dict[str, str] = {}  # call id -> task name
    pauses: dict[str, dict[str, Any]] = {}  # call id -> its workflow_paused record
    retry: dict[str, dict[str, Any]] = {}  # call id -> its last attempt_failed record
    cancelling = False

    def emit(
        kind: ExecutionEventType, source: str, name: str, value: Any, r: dict[str, Any], attempt: Any = None
    ) -> None:
        out.append(ExecutionEvent(kind, source, name, value, _time(r) or _created, seq=r["seq"], attempt=attempt))

    def wf(kind: ExecutionEventType, value: Any, r: dict[str, Any]) -> None:
        emit(kind, execution_id, workflow, value, r)

    def retry_value(failed: dict[str, Any] | None, attempt: int) -> dict[str, Any]:
        failed = failed or {}
        return {
            "current_attempt": attempt,
            "max_attempts": failed.get("max_attempts"),
            "current_delay": failed.get("delay") if attempt else 0,
            "backoff": failed.get("backoff"),
        }

    created = header.get("created")
    _created = dt.datetime.fromisoformat(created) if isinstance(created, str) else None
    for r in records[1:]:
        kind = r["kind"]
        if kind == R.STARTED:
            wf(E.WORKFLOW_STARTED, load(header.get("input")), r)
        elif kind == R.TASK_STARTED:
            cid = r["call_id"]
            names[cid] = r["name"]
            value = arguments_by_name(r["name"], load(r.get("args", [])), load(r.get("kwargs", {})), module)
            emit(E.TASK_STARTED, cid, r["name"], value, r)
        elif kind == R.TASK_COMPLETED:
            cid = r["call_id"]
            name = names.get(cid, "")
            value = load(r["value"])
            attempt = r.get("attempt")
            if attempt:
                failed = retry.get(cid)
                emit(E.TASK_RETRY_COMPLETED, cid, name, {**retry_value(failed, attempt), "output": value}, r, attempt)
            if r.get("fallback"):
                emit(E.TASK_FALLBACK_COMPLETED, cid, name, value, r)
            emit(E.TASK_COMPLETED, cid, name, value, r)
        elif kind == R.TASK_FAILED:
            cid = r["call_id"]
            emit(E.TASK_FAILED, cid, names.get(cid, ""), _as_execution_error(load(r["error"])), r)
        elif kind == R.ATTEMPT_FAILED:
            cid = r["call_id"]
            attempt = r["attempt"]
            previous = retry.get(cid)
            retry[cid] = r
            retried = r["max_attempts"] > 0 if "max_attempts" in r else (attempt > 0 or r.get("retry_at") is not None)
            if retried:
                value = {
                    "current_attempt": attempt,
                    "max_attempts": r.get("max_attempts"),
                    "current_delay": (previous or {}).get("delay") if attempt else 0,
                    "backoff": r.get("backoff"),
                }
                if not attempt:
                    value["original_attempt"] = True
                emit(E.TASK_RETRY_FAILED, cid, names.get(cid, ""), value, r, attempt)
        elif kind == R.RETRY_STARTED:
            cid = r["call_id"]
            value = retry_value(retry.get(cid), r["attempt"])
            emit(E.TASK_RETRY_STARTED, cid, names.get(cid, ""), value, r, r["attempt"])
        elif kind in (R.FALLBACK_STARTED, R.ROLLBACK_STARTED):
            cid = r["call_id"]
            started = next((x for x in out if x.source_id == cid and x.type == E.TASK_STARTED), None)
            event = E.TASK_FALLBACK_STARTED if kind == R.FALLBACK_STARTED else E.TASK_ROLLBACK_STARTED
            emit(event, cid, names.get(cid, ""), started.value if started is not None else None, r)
        elif kind in (R.FALLBACK_FAILED, R.ROLLBACK_FAILED):
            cid = r["call_id"]
            event = E.TASK_FALLBACK_FAILED if kind == R.FALLBACK_FAILED else E.TASK_ROLLBACK_FAILED
            emit(event, cid, names.get(cid, ""), load(r["error"]), r)
        elif kind == R.ROLLBACK_COMPLETED:
            cid = r["call_id"]
            emit(E.TASK_ROLLBACK_COMPLETED, cid, names.get(cid, ""), None, r)
        elif kind == R.VALUE:
            cid = r["call_id"]
            emit(E.TASK_STARTED, cid, r["name"], {}, r)
            emit(E.TASK_COMPLETED, cid, r["name"], load(r["value"]), r)
        elif kind == R.TIMER_STARTED:
            cid = r["call_id"]
            names[cid] = "sleep"
            emit(E.TASK_STARTED, cid, "sleep", {"wake_at": _wake_iso(r.get("wake_at"))}, r)
        elif kind == R.TIMER_FIRED:
            emit(E.TASK_COMPLETED, r["call_id"], "sleep", None, r)
        elif kind == R.PAUSED:
            cid = r["call_id"]
            pauses[cid] = r
            output = load(r["output"]) if "output" in r else None
            emit(E.TASK_STARTED, cid, "pause", {"name": r["name"], "output": output}, r)
            if r["name"].startswith("approval:") and isinstance(output, dict):
                emit(E.TASK_AWAITING_APPROVAL, cid, r["name"][9:], {
                    "task_call_id": cid, "workflow_name": workflow, "task_name": output.get("task_name"),
                    "target_value": output.get("target_value"),
                }, r)
            emit(E.TASK_PAUSED, cid, "pause", r["name"], r)
            shown: dict[str, Any] = {"name": r["name"], "output": output}
            if "wake_at" in r:
                shown["wake_at"] = _wake_iso(r["wake_at"])
            if "on_complete" in r:
                shown["wake_on_complete"] = r["on_complete"]
            wf(E.WORKFLOW_PAUSED, shown, r)
        elif kind == R.SUSPENDED:
            first = next((w for w in r["waiting"] if type(w) is str and w in pauses), None)
            paused = pauses.get(first) if first is not None else None
            if paused is not None:
                wf(E.WORKFLOW_PAUSED, {"name": paused["name"], "output": load(paused.get("output"))}, r)
            else:
                wf(E.WORKFLOW_PAUSED, {"name": None, "output": None}, r)
        elif kind == R.RESUMED:
            answer = load(r["input"]) if "input" in r else None
            wf(E.WORKFLOW_RESUMING, answer, r)
            wf(E.WORKFLOW_RESUMED, answer, r)
            cid = r.get("call_id")
            paused = pauses.pop(cid, None) if cid is not None else None
            if cid is not None and paused is not None:
                if paused["name"].startswith("approval:"):
                    approved = answer is True or (isinstance(answer, dict) and answer.get("approved") is True)
                    emit(E.TASK_APPROVED if approved else E.TASK_REJECTED, cid, paused["name"][9:], answer, r)
                emit(E.TASK_RESUMED, cid, "pause", {"name": paused["name"], "input": answer}, r)
                emit(E.TASK_COMPLETED, cid, "pause", answer, r)
        elif kind == R.CANCEL_REQUESTED:
            cancelling = True
            wf(E.WORKFLOW_CANCELLING, None, r)
        elif kind == R.CANCELLED:
            if not cancelling:
                wf(E.WORKFLOW_CANCELLING, None, r)
            wf(E.WORKFLOW_CANCELLED, None, r)
        elif kind == R.TASK_CANCELLED:
            cid = r["call_id"]
            emit(E.TASK_CANCELLED, cid, names.get(cid, ""), None, r)
        elif kind == R.COMPLETED:
            wf(E.WORKFLOW_COMPLETED, load(r["value"]), r)
        elif kind == R.FAILED:
            wf(E.WORKFLOW_FAILED, load(r["error"]), r)
    return out
