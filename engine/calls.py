"""The shapes the executor works with: task specs, run requests, outcomes, and call ids.

Nothing here runs anything; engine/executor.py does.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import orjson

from flux._engine.handling import TaskOptions
from flux._engine.journal import JournalRead
from flux._engine.replay import RecordedCall, ReplayIndex

__all__ = [
    "EndOfJournal",
    "Outcome",
    "RunRequest",
    "TaskSpec",
    "child_execution_id",
    "format_call",
    "user_frame",
]

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FLUX_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flux") + os.sep


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
    ) -> TaskSpec:
        is_async = inspect.iscoroutinefunction(fn)
        sig = inspect.signature(fn) if "{" in name else None
        handled = None if options is None or options.plain else options
        return cls(name, fn, is_async, sig, handled, False, tuple(secrets), blob, cache)

    def display_name(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self.signature is None:
            return self.name
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return self.name.format(**bound.arguments)

    async def invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(*args, **kwargs)
        # A plain function runs in a worker thread so it cannot stall other branches.
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
    resume_has_input: bool = True  # False: `flux resume` without --input (a timed pause may go on)
    cancel: bool = False  # cancel the execution: deliver CancelledError at its first live point
    parent: dict[str, Any] | None = None  # for a sub-workflow: the parent's execution_id and call_id
    create: bool = False
    durability: str = "fsync"
    replay_only: bool = False
    journal: JournalRead | None = None  # replay_only: the journal to replay
    index: ReplayIndex | None = None  # replay_only: the replay index of `journal`, if built already
    blob_output: bool = False  # the workflow's output goes to output storage
    observer: Any = None  # optional hooks for debuggers and checkers (SPEC.md "Observers")
    aliases: dict[str, str] = field(default_factory=dict)  # recorded module -> module loaded now


@dataclass
class Outcome:
    """Where a run left the execution."""

    execution_id: str
    path: str
    status: str  # paused, completed, failed; "replayed" for a replay that reached the journal's end
    output: Any
    records: list[dict[str, Any]]
    workflow_name: str = ""
    input: Any = None
    load: Callable[[Any], Any] | None = None  # decodes a recorded value (reads output storage)


class EndOfJournal(BaseException):
    """Raised inside a read-only replay when the code reaches what the journal has not recorded."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        super().__init__(call_id)


class _Suspend(BaseException):
    """Unwinds the workflow at a pause; BaseException so `except Exception` in user code keeps out."""


def user_frame() -> Any:
    """The innermost frame of user code (outside engine/ and flux/), for debuggers."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_ENGINE_DIR) or name.startswith(_FLUX_DIR) or "asyncio" in name):
            return frame
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _all_slots(calls: dict[str, RecordedCall]) -> set[str]:
    """Every call id and branch prefix the journal used ("3.2.1" gives "3", "3.2", "3.2.1")."""
    slots: set[str] = set()
    for call_id in calls:
        parts = call_id.split(".")
        for i in range(1, len(parts) + 1):
            slots.add(".".join(parts[:i]))
    return slots


def child_execution_id(parent_id: str, call_id: str) -> str:
    """The execution id of the sub-workflow started at `call_id`: the same on every replay."""
    candidate = f"{parent_id}-{call_id.replace('.', '_')}"
    if len(candidate) <= 64:
        return candidate
    return "c" + hashlib.sha256(f"{parent_id}:{call_id}".encode()).hexdigest()[:40]


def format_call(name: str, args: Any, kwargs: Any) -> str:
    """`name(arg, key=value)` with arguments in their recorded JSON form."""
    parts = [orjson.dumps(a).decode() for a in (args or [])]
    parts += [f"{k}={orjson.dumps(v).decode()}" for k, v in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"
