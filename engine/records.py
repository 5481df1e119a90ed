"""The record kinds of a journal: one class per kind, its fields in the order they are written.

SPEC.md section 2.1 lists the same fields. A record travels as a plain dict (orjson writes it,
the reader checks it); the class of its kind says which fields it has, of which JSON types,
and in which order, and `parse` turns a checked dict into an instance for code that reads
journals (the fold in engine/history.py, the timeline, events, diff). Adding a kind means: a
class here, a fold step in engine/history.py, the code that writes it, and a test.

The executor writes the dicts of its commonest records directly, in the order declared here,
for speed; tests/test_records.py checks every record a run writes against its class.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

__all__ = [
    "ATTEMPT_FAILED",
    "CANCELLED",
    "CANCEL_REQUESTED",
    "COMPLETED",
    "FAILED",
    "FALLBACK_FAILED",
    "FALLBACK_STARTED",
    "FINAL_STATUSES",
    "HEADER",
    "KINDS",
    "LIFECYCLE",
    "PATCHED",
    "PAUSED",
    "RECORD_TYPES",
    "RESUMED",
    "RETRY_STARTED",
    "ROLLBACK_COMPLETED",
    "ROLLBACK_FAILED",
    "ROLLBACK_STARTED",
    "Record",
    "STARTED",
    "STATUSES",
    "SUSPENDED",
    "Status",
    "TASK_CANCELLED",
    "TASK_COMPLETED",
    "TASK_FAILED",
    "TASK_STARTED",
    "TIMER_FIRED",
    "TIMER_STARTED",
    "VALUE",
    "field_problem",
    "parse",
]


class Status(str, enum.Enum):
    """Where an execution stands. A `str`, so `Status.PAUSED == "paused"`."""

    CREATED = "created"  # only the header
    RUNNING = "running"  # started or resumed and not ended; a live owner runs it
    INTERRUPTED = "interrupted"  # running by its journal, but no process owns it: its process died
    PAUSED = "paused"  # every branch still running waits at a pause
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SLEEPING = "sleeping"  # parked: every branch waits on the clock; runnable when due (SPEC.md 13.6)
    DIVERGED = "diverged"  # the code no longer replays it: stopped, the divergence kept (SPEC.md 13.7)

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
STATUSES = tuple(Status)
FINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


# -- the kinds --------------------------------------------------------------------------------

_NUMBER = (int, float)
_ANY = None  # the field may hold any JSON value


class _Absent:
    """A field the record does not carry (unlike one that is `null`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()


class Record:
    """A checked record. `KIND` is its `kind`; `LIFECYCLE`, the status it leaves the execution in;
    `FIELDS`, its fields after `kind` in the order they are written: (name, JSON types or None for
    any value, required)."""

    KIND: ClassVar[str] = ""
    LIFECYCLE: ClassVar[Status | None] = None
    FIELDS: ClassVar[tuple[tuple[str, tuple[type, ...] | None, bool], ...]] = ()
    seq: int

    def __init__(self, seq: int, **fields: Any) -> None:
        object.__setattr__(self, "seq", seq)
        for name, _, required in self.FIELDS:
            if name not in fields and required:
                raise TypeError(f"{self.KIND} needs its {name!r} field")
            object.__setattr__(self, name, fields.pop(name, ABSENT))
        if fields:
            raise TypeError(f"{self.KIND} has no field {next(iter(fields))!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # unhashable: equal by contents

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if v is not ABSENT)
        return f"{type(self).__name__}({shown})"

    def as_dict(self) -> dict[str, Any]:
        """The record as written: `seq`, `kind`, then the fields in order, absent ones left out."""
        out: dict[str, Any] = {"seq": self.seq, "kind": self.KIND}
        for name, _, _ in self.FIELDS:
            value = getattr(self, name)
            if value is not ABSENT:
                out[name] = value
        return out


_S, _I, _B, _L, _D, _N = (str,), (int,), (bool,), (list,), (dict,), _NUMBER


class Header(Record):
    KIND = "header"
    FIELDS = (
        ("format", _I, True), ("execution_id", _S, True), ("workflow", _S, True), ("code", _D, True),
        ("input", _ANY, True), ("created", _S, True), ("parent", _D, False), ("forked_from", _D, False),
        ("schedule", _D, False),
    )
    format: int
    execution_id: str
    workflow: str
    code: dict[str, Any]
    input: Any
    created: str
    parent: dict[str, Any]  # {"execution_id", "call_id"}: a sub-workflow's caller
    forked_from: dict[str, Any]  # {"execution_id", "seq"}: a fork's source
    schedule: dict[str, Any]  # {"name", "at"}: the schedule fire that started the execution


class WorkflowStarted(Record):
    KIND = "workflow_started"
    LIFECYCLE = Status.RUNNING
    FIELDS = (("at", _S, True),)
    at: str


class WorkflowResumed(Record):
    KIND = "workflow_resumed"
    LIFECYCLE = Status.RUNNING
    FIELDS = (
        ("at", _S, True), ("call_id", _S, False), ("input", _ANY, False), ("child", _S, False), ("pid", _I, False),
        ("host", _S, False),
    )
    at: str
    call_id: str  # the pause this resume answers
    input: Any
    child: str  # the answered pause waits in this sub-workflow (its journal holds the answer)
    pid: int
    host: str


class TaskStarted(Record):
    KIND = "task_started"
    FIELDS = (
        ("at", _S, True), ("call_id", _S, True), ("name", _S, True), ("args", _L, False), ("kwargs", _D, False),
        ("src", _S, False), ("child", _S, False),
    )
    at: str
    call_id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    src: str
    child: str  # the sub-workflow's execution id, for `call`


class TaskCompleted(Record):
    KIND = "task_completed"
    FIELDS = (
        ("at", _S, True), ("call_id", _S, True), ("value", _ANY, True), ("attempt", _I, False),
        ("fallback", _B, False), ("cached", _B, False), ("rerun", _B, False),
    )
    at: str
    call_id: str
    value: Any
    attempt: int
    fallback: bool
    cached: bool
    rerun: bool


class TaskFailed(Record):
    KIND = "task_failed"
    FIELDS = (("at", _S, True), ("call_id", _S, True), ("error", _D, True), ("rerun", _B, False))
    at: str
    call_id: str
    error: dict[str, Any]
    rerun: bool


class AttemptFailed(Record):
    KIND = "attempt_failed"
    FIELDS = (
        ("at", _S, True), ("call_id", _S, True), ("attempt", _I, True), ("error", _D, True),
        ("retry_at", _N + (type(None),), True), ("delay", _N, False), ("max_attempts", _I, False),
        ("backoff", _N, False),
    )
    at: str
    call_id: str
    attempt: int
    error: dict[str, Any]
    retry_at: float | None
    delay: float  # the wait before the next attempt (after the cap and jitter), when one follows
    max_attempts: int  # the task's retry_max_attempts, when it has retries
    backoff: float  # the task's retry_backoff, when it has retries


class RetryStarted(Record):
    KIND = "retry_started"
    FIELDS = (("at", _S, True), ("call_id", _S, True), ("attempt", _I, True),)
    at: str
    call_id: str
    attempt: int


class FallbackStarted(Record):
    KIND = "fallback_started"
    FIELDS = (("at", _S, True), ("call_id", _S, True),)
    at: str
    call_id: str


class FallbackFailed(Record):
    KIND = "fallback_failed"
    FIELDS = (("at", _S, True), ("call_id", _S, True), ("error", _D, True),)
    at: str
    call_id: str
    error: dict[str, Any]


class RollbackStarted(Record):
    KIND = "rollback_started"
    FIELDS = (("at", _S, True), ("call_id", _S, True),)
    at: str
    call_id: str


class RollbackCompleted(Record):
    KIND = "rollback_completed"
    FIELDS = (("at", _S, True), ("call_id", _S, True),)
    at: str
    call_id: str


class RollbackFailed(Record):
    KIND = "rollback_failed"
    FIELDS = (("at", _S, True), ("call_id", _S, True), ("error", _D, True),)
    at: str
    call_id: str
    error: dict[str, Any]


class Patched(Record):
    KIND = "patched"
    FIELDS = (("at", _S, True), ("change_id", _S, True),)
    at: str
    change_id: str


class TaskCancelled(Record):
    KIND = "task_cancelled"
    FIELDS = (("at", _S, True), ("call_id", _S, True),)
    at: str
    call_id: str


class CancelRequested(Record):
    KIND = "cancel_requested"
    LIFECYCLE = Status.RUNNING  # still running until the cancellation has unwound it
    FIELDS = (("at", _S, True),)
    at: str


class ValueRecorded(Record):
    KIND = "value_recorded"
    FIELDS = (("at", _S, True), ("call_id", _S, True), ("name", _S, True), ("value", _ANY, True), ("src", _S, False),)
    at: str
    call_id: str
    name: str
    value: Any
    src: str


class TimerStarted(Record):
    KIND = "timer_started"
    FIELDS = (("at", _S, True), ("call_id", _S, True), ("name", _S, True), ("wake_at", _N, True), ("src", _S, False),)
    at: str
    call_id: str
    name: str
    wake_at: float
    src: str


class TimerFired(Record):
    KIND = "timer_fired"
    FIELDS = (("at", _S, True), ("call_id", _S, True),)
    at: str
    call_id: str


class WorkflowPaused(Record):
    KIND = "workflow_paused"
    LIFECYCLE = Status.PAUSED
    FIELDS = (
        ("at", _S, True), ("call_id", _S, True), ("name", _S, True), ("src", _S, False), ("wake_at", _N, False),
        ("on_complete", _S, False), ("output", _ANY, False),
    )
    at: str
    call_id: str
    name: str
    src: str
    wake_at: float
    on_complete: str  # an execution id: once it has finished, the pause may go on without input
    output: Any  # the value the pause shows (`pause(name, output)`), when not None


class WorkflowSuspended(Record):
    """The run ended with every branch still running waiting at pauses recorded before it (no
    `workflow_paused` of its own), or at a pause inside a sub-workflow."""

    KIND = "workflow_suspended"
    LIFECYCLE = Status.PAUSED
    FIELDS = (("at", _S, True), ("waiting", _L, True),)
    at: str
    waiting: list[Any]  # call ids of the waiting pauses ({"call_id", "child"} for one in a sub-workflow)


class WorkflowCancelled(Record):
    KIND = "workflow_cancelled"
    LIFECYCLE = Status.CANCELLED
    FIELDS = (("at", _S, True),)
    at: str


class WorkflowCompleted(Record):
    KIND = "workflow_completed"
    LIFECYCLE = Status.COMPLETED
    FIELDS = (("at", _S, True), ("value", _ANY, True),)
    at: str
    value: Any


class WorkflowFailed(Record):
    KIND = "workflow_failed"
    LIFECYCLE = Status.FAILED
    FIELDS = (("at", _S, True), ("error", _D, True),)
    at: str
    error: dict[str, Any]


RECORD_TYPES: dict[str, type[Record]] = {
    cls.KIND: cls
    for cls in (
        Header, WorkflowStarted, WorkflowResumed, TaskStarted, TaskCompleted, TaskFailed, AttemptFailed,
        RetryStarted, FallbackStarted, FallbackFailed, RollbackStarted, RollbackCompleted, RollbackFailed,
        Patched, TaskCancelled, CancelRequested, ValueRecorded, TimerStarted, TimerFired, WorkflowPaused,
        WorkflowSuspended, WorkflowCancelled, WorkflowCompleted, WorkflowFailed,
    )
}

HEADER = Header.KIND
STARTED = WorkflowStarted.KIND
RESUMED = WorkflowResumed.KIND
PAUSED = WorkflowPaused.KIND
SUSPENDED = WorkflowSuspended.KIND
COMPLETED = WorkflowCompleted.KIND
FAILED = WorkflowFailed.KIND
CANCELLED = WorkflowCancelled.KIND
TASK_STARTED = TaskStarted.KIND
TASK_COMPLETED = TaskCompleted.KIND
TASK_FAILED = TaskFailed.KIND
ATTEMPT_FAILED = AttemptFailed.KIND
RETRY_STARTED = RetryStarted.KIND
FALLBACK_STARTED = FallbackStarted.KIND
FALLBACK_FAILED = FallbackFailed.KIND
ROLLBACK_STARTED = RollbackStarted.KIND
ROLLBACK_COMPLETED = RollbackCompleted.KIND
ROLLBACK_FAILED = RollbackFailed.KIND
TASK_CANCELLED = TaskCancelled.KIND
VALUE = ValueRecorded.KIND
TIMER_STARTED = TimerStarted.KIND
TIMER_FIRED = TimerFired.KIND
PATCHED = Patched.KIND
CANCEL_REQUESTED = CancelRequested.KIND

KINDS = tuple(RECORD_TYPES)
LIFECYCLE: dict[str, Status] = {k: c.LIFECYCLE for k, c in RECORD_TYPES.items() if c.LIFECYCLE is not None}


# -- checking fields --------------------------------------------------------------------------

_SCHEMAS = {
    kind: {name: (accepted, required) for name, accepted, required in cls.FIELDS} for kind, cls in RECORD_TYPES.items()
}


# Epoch seconds a clock can give: the years 1 to 9999 (what times are formatted and waited on).
_TIMES = frozenset({"wake_at", "retry_at"})
_FIRST_SECOND, _AFTER_LAST_SECOND = -62_135_596_800, 253_402_300_800


def field_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a record's fields (a missing one, one of the wrong JSON type, one its
    kind does not have, a time no clock gives), or None when it is as its class declares."""
    kind = record.get("kind")
    schema = _SCHEMAS.get(kind) if type(kind) is str else None
    if schema is None:
        return f"unknown record kind {kind!r} (written by a newer Flux?)"
    for name, (accepted, required) in schema.items():
        if name not in record:
            if required:
                return f"{kind} record without its {name!r} field"
            continue
        if accepted is not None:
            value = record[name]
            # bool is an int in Python; a JSON true is never a number or a seq here.
            if not isinstance(value, accepted) or (type(value) is bool and bool not in accepted):
                return f"{kind} field {name!r} is {_json_type(value)}, not {_describe(accepted)}"
            if name in _TIMES and isinstance(value, _NUMBER) and not _FIRST_SECOND <= value < _AFTER_LAST_SECOND:
                return f"{kind} field {name!r} is {value!r}, which is not a time (epoch seconds of the years 1 to 9999)"
    for name in record:
        if name not in schema and name not in ("seq", "kind", "crc"):
            return f"{kind} record with an unknown field {name!r}"
    return None


def _json_type(value: Any) -> str:
    return {
        dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _describe(types: tuple[type, ...]) -> str:
    names = []
    for t in types:
        name = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
                float: "a number", type(None): "null"}[t]
        if name not in names:
            names.append(name)
    return " or ".join(names)


def parse(record: dict[str, Any]) -> Record:
    """The typed record of a checked dict.

    Raises:
        ValueError: naming the field when the record is not as its kind's class declares.
    """
    problem = field_problem(record)
    if problem is not None:
        raise ValueError(problem)
    cls = RECORD_TYPES[record["kind"]]
    return cls(**{k: v for k, v in record.items() if k not in ("kind", "crc")})
