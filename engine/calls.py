"""The shapes the executor works with: task specs, run requests, outcomes, and call ids.

Nothing here runs anything; engine/executor.py does.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flux._engine.core import EndOfJournal, format_call
from flux._engine.handling import TaskOptions
from flux._engine.history import History
from flux._engine.journal import JournalRead
from flux._engine.sites import user_frame

__all__ = [
    "EndOfJournal",
    "Outcome",
    "Parked",
    "RunRequest",
    "TaskSpec",
    "child_execution_id",
    "format_call",
    "user_frame",
]


@dataclass(frozen=True, eq=False)
class TaskSpec:
    """What the engine needs to know of a task: its name (maybe a format string) and its body."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    signature: inspect.Signature | None = None  # only when `name` is a format string
    options: TaskOptions | None = None  # None: no retries, timeout, fallback or rollback
    child: bool = False  # the body runs a sub-workflow; its execution id is recorded
    secrets: tuple[str, ...] = ()  # secret names handed to the body as `secrets=`
    blob: bool = False  # output storage: the result goes to a blob, the journal keeps its digest
    cache: bool = False  # reuse the result of an identical earlier call (same task, same arguments)
    # Keyword arguments handed to the body that are not recorded (metadata, config), made from
    # the call id and the task's name.
    inject: Callable[[str, str], dict[str, Any]] | None = None
    storage: Any = None  # a user's OutputStorage: it keeps the result, the journal its reference
    sensitive: bool = False  # arguments and result recorded redacted; the body runs again on replay
    inline: bool = field(init=False, default=False)  # the hot path: an async body with nothing added
    # A replayed result goes back as recorded: no secrets to restore, not redacted, not kept by
    # a user's OutputStorage.
    plain: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inline", self.is_async and not self.secrets and self.inject is None)
        object.__setattr__(self, "plain", not self.secrets and not self.sensitive and self.storage is None)

    @property
    def identity(self) -> str:
        fn = getattr(self.fn, "func", self.fn)  # a bound method's partial
        return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', self.name)}"

    @classmethod
    def of(
        cls,
        fn: Callable[..., Any],
        name: str,
        options: TaskOptions | None = None,
        *,
        secrets: tuple[str, ...] = (),
        blob: bool = False,
        cache: bool = False,
        inject: Callable[[str, str], dict[str, Any]] | None = None,
        storage: Any = None,
        sensitive: bool = False,
    ) -> TaskSpec:
        is_async = inspect.iscoroutinefunction(fn)
        sig = inspect.signature(fn) if "{" in name else None
        handled = None if options is None or options.plain else options
        return cls(name, fn, is_async, sig, handled, False, tuple(secrets), blob, cache, inject, storage, sensitive)

    def display_name(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self.signature is None:
            return self.name
        # Partial: the `secrets`, `metadata` and `config` a task asks for are handed to it later,
        # never part of its name.
        bound = self.signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        return self.name.format(**bound.arguments)

    async def invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(*args, **kwargs)
        # A plain function runs in a worker thread so it cannot stall other branches.
        import anyio.to_thread  # here: a workflow of async tasks never needs it

        return await anyio.to_thread.run_sync(lambda: self.fn(*args, **kwargs))


@dataclass
class RunRequest:
    """One run of an execution: a new one (`create`), a continuation, or a read-only replay."""

    execution_id: str
    workflow_name: str = ""
    code: dict[str, Any] = field(default_factory=dict)
    input: Any = None
    resume_input: Any = None
    resume: bool = False  # give `resume_input` to a waiting pause; without it a paused run stays paused
    resume_pause: str | tuple[str, ...] | None = None  # which pause: a name or call id, or a route of call ids
    resume_has_input: bool = True  # False: `flux resume` without --input (a timed pause may go on)
    cancel: bool = False  # cancel the execution: deliver CancelledError at its first live point
    hand_off: bool = False  # record the resume's answer only: whoever runs the store's work runs it
    parent: dict[str, Any] | None = None  # for a sub-workflow: the parent's execution_id and call_id
    create: bool = False
    durability: str = "fsync"
    replay_only: bool = False
    journal: JournalRead | None = None  # replay_only: the journal to replay
    history: History | None = None  # replay_only: the fold of `journal`, if built already
    blob_output: bool = False  # the workflow's output goes to output storage
    output_storage: Any = None  # a user's OutputStorage that keeps the workflow's output
    observer: Any = None  # optional hooks for debuggers and checkers (SPEC.md "Observers")
    aliases: dict[str, str] = field(default_factory=dict)  # recorded module -> module loaded now
    schedule: dict[str, Any] | None = None  # a fire of a schedule: its name and fire time (SPEC.md "Schedules")


@dataclass
class Outcome:
    """Where a run left the execution."""

    execution_id: str
    path: str
    status: str  # paused, completed, failed, cancelled; "replayed" for a replay that reached the journal's end
    output: Any
    records: Sequence[dict[str, Any]]
    workflow_name: str = ""
    input: Any = None
    load: Callable[[Any], Any] | None = None  # decodes a recorded value (reads output storage)
    history: History | None = None


class _Suspend(BaseException):
    """Unwinds the workflow at a pause; BaseException so `except Exception` in user code keeps out."""


class Parked(_Suspend):
    """Unwinds a run whose every branch waits on the clock (engine/parking.py); nothing is
    written for it: the journal already holds every wake-up time."""


def child_execution_id(parent_id: str, call_id: str) -> str:
    """The execution id of the sub-workflow started at `call_id`: the same on every replay."""
    candidate = f"{parent_id}-{call_id.replace('.', '_')}"
    if len(candidate) <= 64:
        return candidate
    return "c" + hashlib.sha256(f"{parent_id}:{call_id}".encode()).hexdigest()[:40]
