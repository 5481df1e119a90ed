"""Every error Flux raises, in one tree; `flux.errors` is where users import them from.

    FluxError
    ├── ExecutionError              a task failed; `inner_exception` is what it raised
    │   ├── RetryError              every attempt of a task failed (attempts, last exception)
    │   ├── ExecutionTimeoutError   an attempt ran past its timeout (task, call id, limit)
    │   ├── PauseRequested          a pause (name, output) unwinding the workflow
    │   └── WorkflowNotFoundError   `call` named a workflow that is not loaded
    ├── ApprovalRejected            a task that needs approval was rejected (task, reason)
    ├── FallbackError               the task failed and so did its fallback (both exceptions)
    ├── RollbackError               the task failed and so did its rollback (both exceptions)
    ├── CompensationError           a saga step failed and some compensations failed too
    ├── EngineError                 engine trouble: never recorded, the journal is left untouched
    │   ├── JournalCorruptError     damage other than a torn last line (path, line, offset)
    │   ├── NondeterminismError     the code asks for another call than the journal recorded
    │   ├── ExecutionLockedError    another process owns the execution (pid, host)
    │   ├── ExecutionNotFoundError  no journal for that execution id
    │   ├── InvalidExecutionIdError an id that could name a path outside the store
    │   ├── AmbiguousExecutionIdError an id prefix that several executions' ids start with
    │   ├── DurabilityError         a write or fsync failed; the run stops
    │   │   └── OwnershipLostError  another owner took the execution over; this one's writes are refused
    │   ├── StoreError              the store cannot be used (a bad path, a FIFO, no permission)
    │   │   └── UnsafePathError     a journal that is a symbolic link or not a regular file (an OSError too)
    │   ├── BlobError               a stored output is missing or altered (names the file)
    │   ├── SecretError             a requested secret is missing, or the secrets file is not private
    │   └── WorkflowLoadError       the workflow's code cannot be found or imported
    ├── EncodeError                 a value the journal cannot hold exactly (type and where)
    │   └── RecordTooLargeError     a record over the size limit (use output storage)
    ├── DecodeError                 a recorded value cannot be rebuilt (missing class)
    ├── InvalidOptionError          a bad decorator option or argument (also a ValueError)
    ├── GraphError                  an invalid Graph (names the node; also a ValueError)
    ├── ExecutionStateError         an operation that the execution's state does not allow
    │   └── ExecutionExistsError    an execution of that id exists already (never replaced)
    ├── ScheduleNotFoundError       no schedule of that name in the store
    ├── ScheduleExistsError         a schedule of that name exists already
    ├── OutsideWorkflowError        a workflow-only call (pause, sleep, now, ...) made outside one
    └── DeterminismError            flux.testing found a workflow that is not deterministic
                                    (also an AssertionError)

Every class here reports `flux.errors` as its module, the name users import and the name a
journal records for a recorded exception (`{"$error":"flux.errors:ExecutionError",...}`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmbiguousExecutionIdError",
    "ApprovalRejected",
    "BlobError",
    "PauseRequested",
    "WorkflowNotFoundError",
    "DeterminismError",
    "ExecutionExistsError",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "GraphError",
    "OutsideWorkflowError",
    "OwnershipLostError",
    "RecordTooLargeError",
    "SecretError",
    "StoreError",
    "DecodeError",
    "DurabilityError",
    "EncodeError",
    "EngineError",
    "CompensationError",
    "ExecutionError",
    "ExecutionLockedError",
    "ExecutionTimeoutError",
    "FallbackError",
    "RetryError",
    "RollbackError",
    "UnsafePathError",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "FluxError",
    "InvalidExecutionIdError",
    "InvalidOptionError",
    "JournalCorruptError",
    "NondeterminismError",
    "RecordedError",
    "WorkflowLoadError",
]


class FluxError(Exception):
    """Base of every error raised by Flux itself."""


class ExecutionError(FluxError):
    """A task failed. The exception it raised is `inner_exception` and `__cause__`.

    An ExecutionError raised inside a task (a nested task's failure, a timeout) reaches the
    workflow as it is, not wrapped in another one.
    """

    def __init__(self, inner_exception: BaseException | None = None, message: str | None = None) -> None:
        self.inner_exception = inner_exception
        if message is None:
            if inner_exception is None:
                message = "execution failed"
            else:
                message = f"{type(inner_exception).__name__}: {inner_exception}"
        self.message = message
        # Both arguments are kept in `args`, so a recorded ExecutionError is rebuilt whole.
        super().__init__(inner_exception, message)

    def __str__(self) -> str:
        return self.message


def _describe(exc: BaseException | None) -> str:
    return "nothing" if exc is None else f"{type(exc).__name__}: {exc}"


class RetryError(ExecutionError):
    """Every attempt of a task failed.

    `retry_attempts`, `retry_delay` and `retry_backoff` are the task's retry options;
    `inner_exception` (also `last_exception`) is what the last attempt raised; `attempts` is how
    many attempts ran; `task` names the task.
    """

    def __init__(
        self,
        inner_exception: BaseException | None = None,
        attempts: int = 0,
        delay: float = 0,
        backoff: float = 0,
        task: str = "",
        attempts_made: int | None = None,
    ) -> None:
        if isinstance(inner_exception, int) and not isinstance(inner_exception, bool):
            # Journals written before RetryError took these arguments recorded
            # (attempts made, last exception, task).
            attempts_made, inner_exception, task = inner_exception, attempts, str(delay or "")
            attempts, delay, backoff = max(0, (attempts_made or 1) - 1), 0, 0
        self.retry_attempts = attempts
        self.retry_delay = delay
        self.retry_backoff = backoff
        self.task = task
        self.attempts = attempts + 1 if attempts_made is None else attempts_made
        last = _describe(inner_exception)
        super().__init__(inner_exception, f"task {task!r} failed after {self.attempts} attempts; last: {last}")
        self.args = (inner_exception, attempts, delay, backoff, task, self.attempts)

    @property
    def last_exception(self) -> BaseException | None:
        return self.inner_exception


class ExecutionTimeoutError(ExecutionError):
    """An attempt of a task (`type` "Task", `name`, call id `id`) ran longer than its `timeout`
    in seconds. `task` and `call_id` are the same as `name` and `id`."""

    def __init__(self, type: str = "Task", name: str = "", id: str = "", timeout: float = 0.0) -> None:
        if type not in ("Task", "Workflow") and isinstance(id, (int, float)) and timeout == 0.0:
            # Journals written before ExecutionTimeoutError took these arguments recorded
            # (task, call id, timeout).
            type, name, id, timeout = "Task", type, name, float(id)
        self.type = type
        self.name = name
        self.id = id
        self.timeout = timeout
        super().__init__(None, f"{type} {name} ({id}) timed out ({timeout:g}s).")
        self.args = (type, name, id, timeout)

    @property
    def task(self) -> str:
        return self.name

    @property
    def call_id(self) -> str:
        return self.id


class PauseRequested(ExecutionError):
    """Raised by `pause` in a workflow that runs without the engine (outside `run`), and the
    shape of a pause for code that looks at one: `name`, `output`, `wake_at` (ISO-8601 UTC, or
    None) and `wake_on_complete` (an execution id, or None)."""

    def __init__(
        self, name: str = "", output: Any = None, wake_at: str | None = None, wake_on_complete: str | None = None
    ) -> None:
        self.name = name
        self.output = output
        self.wake_at = wake_at
        self.wake_on_complete = wake_on_complete
        super().__init__(None, "Pause Requested.")
        self.args = (name, output, wake_at, wake_on_complete)


class WorkflowNotFoundError(ExecutionError):
    """`call` named a workflow that no loaded module defines."""

    def __init__(self, name: str = "", module_name: str | None = None) -> None:
        self.workflow_name = name
        self.module_name = module_name
        where = f" in module {module_name}" if module_name else ""
        super().__init__(
            None, f"Workflow '{name}' not found{where}; import the module that defines it before the call"
        )
        self.args = (name, module_name)


class ApprovalRejected(FluxError):
    """A task that needs approval (`requires_approval`) was rejected when the execution was
    resumed: `task_name`, and who rejected it and why when the answer said so."""

    def __init__(
        self,
        task_name: str = "",
        approver_subject: str | None = None,
        approver_provider: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.task_name = task_name
        self.approver_subject = approver_subject
        self.approver_provider = approver_provider
        self.reason = reason
        who = f"{approver_subject}@{approver_provider}" if approver_subject else "<unknown>"
        self.message = f"Approval rejected for task {task_name} by {who}" + (f": {reason}" if reason else "")
        super().__init__(task_name, approver_subject, approver_provider, reason)

    def __str__(self) -> str:
        return self.message


class FallbackError(FluxError):
    """A task failed, then its fallback failed too."""

    def __init__(
        self, original: BaseException | None, fallback_exception: BaseException | None, task: str = ""
    ) -> None:
        self.original = original
        self.fallback_exception = fallback_exception
        self.task = task
        super().__init__(original, fallback_exception, task)

    def __str__(self) -> str:
        return (
            f"task {self.task!r} failed ({_describe(self.original)}) "
            f"and its fallback failed too ({_describe(self.fallback_exception)})"
        )


class RollbackError(FluxError):
    """A task failed, then its rollback failed too."""

    def __init__(
        self, original: BaseException | None, rollback_exception: BaseException | None, task: str = ""
    ) -> None:
        self.original = original
        self.rollback_exception = rollback_exception
        self.task = task
        super().__init__(original, rollback_exception, task)

    def __str__(self) -> str:
        return (
            f"task {self.task!r} failed ({_describe(self.original)}) "
            f"and its rollback failed too ({_describe(self.rollback_exception)})"
        )


class CompensationError(FluxError):
    """A saga step failed and one or more of the compensations that ran for it failed too."""

    def __init__(self, original: BaseException | None, failures: list[BaseException] | None = None) -> None:
        self.original = original
        self.failures = list(failures or [])
        super().__init__(original, self.failures)

    def __str__(self) -> str:
        failed = "; ".join(_describe(f) for f in self.failures)
        return f"saga failed ({_describe(self.original)}); compensations that failed: {failed}"


class EngineError(FluxError):
    """Engine trouble: not a result of the workflow, never recorded in the journal."""


class JournalCorruptError(EngineError):
    """A journal is damaged somewhere other than a torn last line."""

    def __init__(self, path: str, line: int, offset: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.offset = offset
        self.problem = problem
        super().__init__(
            f"{path}:{line}: journal damaged at byte {offset}: {problem}. "
            "Nothing was changed; restore the file from a backup or inspect it with `jq`."
        )


class NondeterminismError(EngineError):
    """The workflow asked for a different call than the journal recorded at that call id."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        line: int = 0,
        call_id: str = "",
        recorded: dict[str, Any] | None = None,
        current: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.call_id = call_id
        self.recorded = recorded  # the journal's record at that call id (None: nothing recorded)
        self.current = current  # what the code asked for: kind, name, args, kwargs, src (None: nothing)
        super().__init__(message)


class ExecutionLockedError(EngineError):
    """Another process owns the execution."""

    def __init__(self, execution_id: str, holder: dict[str, Any]) -> None:
        self.execution_id = execution_id
        self.holder = holder
        pid = holder.get("pid", "?")
        host = holder.get("host", "?")
        super().__init__(
            f"execution {execution_id} is being run by another process (pid {pid} on {host}); "
            "wait for it to finish or stop that process"
        )


class ExecutionNotFoundError(EngineError):
    """No journal exists for the execution id."""

    def __init__(self, execution_id: str, where: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution {execution_id!r} in {where}; `flux list` shows the ones there")


class InvalidExecutionIdError(EngineError):
    """An execution id that is not of the allowed form."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"invalid execution id {execution_id!r}: use 1 to 64 letters, digits, '-' or '_', "
            "not starting with '-' or '_'"
        )


class AmbiguousExecutionIdError(EngineError):
    """An execution id prefix that more than one execution's id starts with."""

    def __init__(self, prefix: str, matches: list[str], where: str) -> None:
        self.prefix = prefix
        self.matches = matches
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        super().__init__(
            f"execution id prefix {prefix!r} matches several executions in {where} ({shown}); give more of the id"
        )


class DurabilityError(EngineError):
    """Writing or syncing the journal failed; what was not synced may be lost."""


class OwnershipLostError(DurabilityError):
    """Another owner took the execution over (a lease ran out, a lock was broken): this writer's
    records are refused, never merged."""


class StoreError(EngineError):
    """The store cannot be used as asked: a path that is not a directory, no permission, a file
    that is not a regular file. The message names the path and what to do."""


class BlobError(EngineError):
    """A stored output (blob) is missing or does not match its digest."""


class SecretError(EngineError):
    """A requested secret is missing, or the secrets file is not private."""


class UnsafePathError(StoreError, OSError):
    """A journal path that is a symbolic link (or otherwise not a plain file): never followed."""


class WorkflowLoadError(EngineError):
    """The workflow's code cannot be found or imported."""


class EncodeError(FluxError):
    """A value that the journal cannot hold exactly."""

    def __init__(self, message: str, *, type_name: str = "", where: str = "") -> None:
        self.type_name = type_name
        self.where = where
        super().__init__(message)


class RecordTooLargeError(EncodeError):
    """A record longer than the journal's limit for one line; large values belong in output
    storage."""


class DecodeError(FluxError):
    """A recorded value that cannot be rebuilt in this process."""


class InvalidOptionError(FluxError, ValueError):
    """A decorator option with a bad value, raised when the decorator runs."""


class GraphError(FluxError, ValueError):
    """An invalid graph: a cycle, an unreachable node, an unknown node, no start or no end."""


class ExecutionStateError(FluxError):
    """The execution's state does not allow the operation (for example resuming a finished one)."""


class ExecutionExistsError(ExecutionStateError):
    """An execution of that id exists already: a store never makes a second one."""

    def __init__(self, execution_id: str, where: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"{where}: execution {execution_id} already exists; a journal is never replaced")


class ScheduleNotFoundError(FluxError):
    """No schedule of that name in the store."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"{where}: no schedule named {name!r}; `flux schedule list` shows the schedules")


class ScheduleExistsError(FluxError):
    """A schedule of that name exists already; delete it first, or choose another name."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"{where}: a schedule named {name!r} exists already; delete it first or choose another name")


class OutsideWorkflowError(FluxError):
    """A call that only means something inside a running workflow (`pause`, `sleep`, `now`,
    `call`, `idempotency_key`, ...) was made outside one."""


class DeterminismError(FluxError, AssertionError):
    """A workflow broke a determinism property. An AssertionError, so test runners show it.

    `report` is the `flux.testing.CheckReport`; `input`, `property` and `seq` (the last record
    kept before the interruption, or None) describe the first failure.
    """

    def __init__(
        self, message: str, *, report: Any = None, input: Any = None, property: str = "", seq: int | None = None
    ) -> None:
        self.report = report
        self.input = input
        self.property = property
        self.seq = seq
        super().__init__(message)


class RecordedError(Exception):
    """Stands in for a recorded exception whose class cannot be found in this process."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text
        super().__init__(f"{type_name}: {message}")


# Users import these from `flux.errors`, and journals name them so (SPEC.md 3).
for _name in __all__:
    globals()[_name].__module__ = "flux.errors"
del _name
