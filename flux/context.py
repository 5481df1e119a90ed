"""`ExecutionContext`: what a workflow receives, and what a run returns."""

from __future__ import annotations

import datetime as dt
import enum
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Generic

if sys.version_info >= (3, 13):
    from typing import TypeVar
else:  # TypeVar defaults (PEP 696)
    from typing_extensions import TypeVar

from flux.domain.events import ExecutionEvent, ExecutionEventType, ExecutionState, events_from_records

if TYPE_CHECKING:
    import logging

__all__ = ["ExecutionContext"]

T = TypeVar("T")
Out = TypeVar("Out", default=Any)  # the workflow's output: `ExecutionContext[str]` leaves it Any

# The context of the workflow running in this asyncio task (and the tasks it started), for
# `ExecutionContext.get()`. Set when the workflow's body starts; copied into every branch.
_current: ContextVar[ExecutionContext[Any] | None] = ContextVar("flux_execution_context", default=None)

_STATES = {
    "created": ExecutionState.CREATED,
    "running": ExecutionState.RUNNING,
    "paused": ExecutionState.PAUSED,
    "completed": ExecutionState.COMPLETED,
    "failed": ExecutionState.FAILED,
    "cancelled": ExecutionState.CANCELLED,
}
_FINAL = (
    ExecutionEventType.WORKFLOW_COMPLETED, ExecutionEventType.WORKFLOW_FAILED, ExecutionEventType.WORKFLOW_CANCELLED
)


class ExecutionContext(Generic[T, Out]):
    """The state of one execution.

    Inside a running workflow (and its tasks, through `await ExecutionContext.get()`) it carries
    the execution id, the workflow's name and input, the events so far and whether the run
    replays recorded history; the context a run returns also carries the state, the output (the
    result, or the exception of a failed run) and every event.

    `ExecutionContext(workflow_id, workflow_namespace, workflow_name, input, execution_id)`
    makes a context for a new execution: `await some_workflow(ctx)` runs it in the default
    store and fills this context in.
    """

    def __init__(
        self,
        workflow_id: str = "",
        workflow_namespace: str = "default",
        workflow_name: str = "",
        input: T | None = None,
        execution_id: str | None = None,
        state: ExecutionState | str | None = None,
        events: list[ExecutionEvent] | None = None,
        checkpoint: Callable[[ExecutionContext[T]], Any] | None = None,
        requests: Any = None,
        current_worker: str | None = None,
        progress_callback: Callable[..., Any] | None = None,
        name: str | None = None,
    ) -> None:
        self._workflow_id = workflow_id or f"{workflow_namespace or 'default'}/{workflow_name}"
        self._namespace = workflow_namespace or "default"
        self._name = workflow_name or name or ""
        self._input = input
        self._execution_id = execution_id or uuid.uuid4().hex
        if isinstance(state, str):
            state = ExecutionState(state.upper())
        self._state_given = state
        self._status = "created" if state in (None, ExecutionState.CREATED) else str(state.value).lower()
        self._output: Any = None
        self._records: Sequence[dict[str, Any]] = []
        self._given_events = list(events or [])
        self._events: list[ExecutionEvent] | None = None
        self._resolve: Any = None
        self._schedule: dict[str, Any] | None = None  # the schedule fire that started it (SPEC.md 14)
        self._executor: Any = None  # the executor while the workflow runs
        self._checkpoint = checkpoint
        self._progress_callback = progress_callback
        self.requests = requests
        self.current_worker = current_worker or ""
        self.journal_path = ""

    @classmethod
    def _of(cls, execution_id: str, name: str, input: T, namespace: str = "default") -> ExecutionContext[T]:
        return cls(f"{namespace}/{name}", namespace, name, input, execution_id)

    def _attach(self, executor: Any) -> None:
        """The workflow starts running under `executor`: events, replay state and progress
        come from it until the run ends."""
        self._executor = executor
        self._status = "running"
        executor.context = self
        if self._progress_callback is not None:
            self._bind_progress()

    def _settle(self, status: str, output: Any, records: Sequence[dict[str, Any]], resolve: Any) -> None:
        self._status = status
        self._state_given = None
        self._output = output
        self._records = records
        self._events = None
        self._resolve = resolve
        self._executor = None

    # -- the running workflow's context -------------------------------------------------------

    @staticmethod
    async def get() -> ExecutionContext[Any]:
        """The context of the workflow running here (in its code or in one of its tasks).

        Raises:
            ExecutionError: outside a running workflow.
        """
        ctx = _current.get()
        if ctx is None:
            from flux._engine.errors import ExecutionError

            raise ExecutionError(
                message="no workflow is running here: ExecutionContext.get() works inside a workflow or its tasks"
            )
        return ctx

    @staticmethod
    def set(ctx: ExecutionContext[Any]) -> Token[ExecutionContext[Any] | None]:
        return _current.set(ctx)

    @staticmethod
    def reset(token: Token[ExecutionContext[Any] | None]) -> None:
        _current.reset(token)

    # -- identity ------------------------------------------------------------------------------

    @property
    def execution_id(self) -> str:
        return self._execution_id

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self._name

    @property
    def workflow_name(self) -> str:
        return self._name

    @property
    def workflow_namespace(self) -> str:
        return self._namespace

    @property
    def workflow_id(self) -> str:
        """`namespace/name`: the workflow's qualified name (this engine has no catalog of ids)."""
        return self._workflow_id

    @property
    def input(self) -> T:
        return self._input  # type: ignore[return-value]  # None only for a workflow run without input

    # -- state ---------------------------------------------------------------------------------

    @property
    def schedule(self) -> str | None:
        """The name of the schedule whose fire started this execution, or None."""
        return None if self._schedule is None else str(self._schedule.get("name"))

    @property
    def scheduled_at(self) -> dt.datetime | None:
        """The fire time (UTC) of the schedule fire that started this execution, or None. It is
        recorded in the journal's header, so every replay reads the same time (SPEC.md "Schedules")."""
        if self._schedule is None:
            return None
        return dt.datetime.fromisoformat(str(self._schedule["at"]))

    @property
    def status(self) -> str:
        """One of created, running, paused, completed, failed, cancelled."""
        return self._status

    @property
    def state(self) -> ExecutionState:
        """The status as Flux names it; CANCELLING while a requested cancellation unwinds the
        workflow."""
        if self._state_given is not None:
            return self._state_given
        if self._status == "running" and self.is_cancelling:
            return ExecutionState.CANCELLING
        return _STATES.get(self._status, ExecutionState.RUNNING)

    @property
    def events(self) -> list[ExecutionEvent]:
        """What happened so far, derived from the journal (SPEC.md 2.4); while the workflow
        runs, the events of the records written so far."""
        executor = self._executor
        if executor is not None:
            records = executor.records
            return events_from_records(records, executor.recorded_value_of) if len(records) else []
        if self._events is None:
            if self._records:
                self._events = events_from_records(self._records, self._resolve)
            else:
                self._events = list(self._given_events)
        return self._events

    def _last_workflow_event(self) -> ExecutionEventType | None:
        for event in reversed(self.events):
            if event.type.value.startswith("WORKFLOW_"):
                return event.type
        return None

    @property
    def has_started(self) -> bool:
        return self._status != "created" or any(e.type == ExecutionEventType.WORKFLOW_STARTED for e in self.events)

    @property
    def has_finished(self) -> bool:
        return self._status in ("completed", "failed", "cancelled") or self._last_workflow_event() in _FINAL

    @property
    def has_succeeded(self) -> bool:
        return self._status == "completed"

    @property
    def has_failed(self) -> bool:
        return self._status == "failed"

    @property
    def is_cancelled(self) -> bool:
        return self._status == "cancelled"

    @property
    def is_paused(self) -> bool:
        return self._status == "paused"

    @property
    def is_cancelling(self) -> bool:
        """A requested cancellation is unwinding the workflow."""
        executor = self._executor
        if executor is not None:
            return bool(executor.cancelling)
        return self._last_workflow_event() == ExecutionEventType.WORKFLOW_CANCELLING

    @property
    def is_resuming(self) -> bool:
        """This run answers a pause, and that pause has not returned its answer yet."""
        executor = self._executor
        return executor is not None and executor.answering is not None

    @property
    def has_resumed(self) -> bool:
        """The execution's last workflow event is WORKFLOW_RESUMED: it runs again after a pause
        (or a crash) and has not paused or finished since."""
        return self._last_workflow_event() == ExecutionEventType.WORKFLOW_RESUMED

    @property
    def is_replaying(self) -> bool:
        """True while the workflow's code goes through recorded history again (before it asks
        for anything the journal does not hold); False in task bodies and once the run is live.
        Side effects in workflow code (printing, metrics) can be skipped while it is True."""
        from flux._engine import traps

        executor = self._executor
        if executor is None:
            return False
        return traps.replaying() if traps.current_executor() is executor else bool(executor.replaying())

    @property
    def is_scheduled(self) -> bool:
        return False

    @property
    def is_claimed(self) -> bool:
        return False

    @property
    def output(self) -> Out:
        """The workflow's result; the exception of a failed run (check `has_failed`); None
        while it has not finished. With a workflow-level `output_storage`, an
        `OutputStorageReference`."""
        return self._output  # type: ignore[no-any-return]

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger for workflow code that stays silent while the run replays (`flux.logger`)."""
        from flux.replay_log import logger

        return logger

    # -- progress and checkpoints --------------------------------------------------------------

    def set_progress_callback(self, callback: Callable[..., Any]) -> ExecutionContext[T]:
        """`callback(execution_id, task_id, task_name, value)` hears every `progress()` of this
        run's tasks (it may be async). Progress is never recorded."""
        self._progress_callback = callback
        if self._executor is not None:
            self._bind_progress()
        return self

    def _bind_progress(self) -> None:
        callback = self._progress_callback
        assert callback is not None
        execution_id = self._execution_id

        def listener(call_id: str, name: str, value: Any) -> Any:
            return callback(execution_id, call_id, name, value)

        self._executor.progress_listener = listener

    async def emit_progress(self, task_id: str, task_name: str, value: Any) -> None:
        if self._progress_callback is not None:
            result = self._progress_callback(self._execution_id, task_id, task_name, value)
            if isinstance(result, Awaitable):
                await result

    def set_checkpoint(self, checkpoint: Callable[[ExecutionContext[T]], Any]) -> ExecutionContext[T]:
        """Kept for programs that set one: every record is made durable by the engine itself, so a
        checkpoint function is called by `checkpoint()` only."""
        self._checkpoint = checkpoint
        return self

    async def checkpoint(self) -> None:
        if self._checkpoint is not None:
            result = self._checkpoint(self)
            if isinstance(result, Awaitable):
                await result

    # -- versioning ----------------------------------------------------------------------------

    def patched(self, change_id: str) -> bool:
        """True when this execution should take the new code path of change `change_id`.

        New executions (and executions that reach this point after the change was deployed)
        get True, and a marker in the journal keeps it so on every replay. Executions recorded
        before the change replay the old path (False). See SPEC.md "Versioning" for the life
        cycle: introduce, wait for old executions to finish, remove.
        """
        from flux._engine import traps

        return traps.patched(change_id)

    # -- as data -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The context as JSON-ready data: `workflow_id`, `workflow_namespace`, `workflow_name`,
        `execution_id`, `input`, `output`, `state`, `current_worker` and `events` (each `type`,
        `name`, `source_id`, `value`, `subject`, `time`, `id`). Values JSON cannot hold are
        shown as text; an exception as `{"type", "message"}` (an ExecutionError as the one it
        wraps)."""
        loaded: dict[str, Any] = json.loads(self.to_json())
        return loaded

    def to_json(self) -> str:
        data = {
            "workflow_id": self.workflow_id,
            "workflow_namespace": self.workflow_namespace,
            "workflow_name": self.workflow_name,
            "execution_id": self.execution_id,
            "input": self.input,
            "output": self.output,
            "state": self.state,
            "current_worker": self.current_worker,
            "events": [e.to_dict() for e in self.events],
        }
        return json.dumps(data, indent=4, default=_jsonable)

    def summary(self) -> dict[str, Any]:
        """`to_dict()` without the events."""
        return {k: v for k, v in self.to_dict().items() if k != "events"}

    def __repr__(self) -> str:
        return f"ExecutionContext(execution_id={self._execution_id!r}, name={self._name!r}, status={self._status!r})"


def _jsonable(value: Any) -> Any:
    from flux._engine.errors import ExecutionError

    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, BaseException):
        if isinstance(value, ExecutionError) and value.inner_exception is not None:
            value = value.inner_exception
        return {"type": type(value).__name__, "message": str(value)}
    if isinstance(value, ExecutionEvent):
        return value.to_dict()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    if hasattr(value, "__dict__"):
        return vars(value)
    return str(value)
