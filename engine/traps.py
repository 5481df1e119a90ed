"""The only awaits that reach the engine. The executor is the only code that interprets them.

Workflow code and `flux` call these; each finds the running execution through a context
variable that holds the current *branch* (SPEC.md, section "Call ids"). A branch hands out call
slots in program order; an asyncio task created inside a branch takes the next slot as its own
branch, so ids follow the structure of the program, never the order in which things finished.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flux._engine.errors import OutsideWorkflowError
from flux._engine.sites import site_of, user_frame

if TYPE_CHECKING:
    from flux._engine.executor import Executor, TaskSpec

T = TypeVar("T")

__all__ = [
    "Branch",
    "call_task",
    "cancelling",
    "creation_site",
    "current_call_id",
    "current_executor",
    "idempotency_key",
    "in_workflow",
    "install_task_factory",
    "now_seconds",
    "patched",
    "pause",
    "record_value",
    "replaying",
    "sleep",
    "takes_site",
]


@dataclass(eq=False, slots=True)
class Branch:
    """One line of control in a workflow: the prefix of its call ids and its slot counter."""

    executor: Executor
    prefix: str
    slots: int = 0
    call_id: str | None = None  # set inside a task body: the call that runs it
    site: str | None = None  # for a task made from a built-in's coroutine: the line that made it

    def next_id(self) -> str:
        self.slots += 1
        return f"{self.prefix}{self.slots}"


_branch: contextvars.ContextVar[Branch | None] = contextvars.ContextVar("flux_branch", default=None)


# The branch running here, or None outside a workflow (the context variable's own `get`: it is
# asked on every call a workflow makes).
current_branch: Callable[[], Branch | None] = _branch.get


# enter(branch) makes `branch` current and returns a token; leave(token) restores the one before.
enter = _branch.set
leave = _branch.reset


def in_workflow() -> bool:
    """True inside a running workflow or one of its tasks."""
    return _branch.get() is not None


def call_task(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], src: str) -> Awaitable[Any]:
    """A task call through the engine, or the body itself outside any workflow (an awaitable).

    The branch, and so the call id, is taken when the call is awaited, in the asyncio task that
    awaits it: a coroutine made in one branch and awaited in another takes its slot where it
    runs. Inside a workflow the engine's coroutine is returned as it is, with no other around it.
    """
    branch = _branch.get()
    if branch is None:
        return _outside(spec, args, kwargs, src)
    return branch.executor.call_task(None, spec, args, kwargs, src)


async def _outside(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], src: str) -> Any:
    branch = _branch.get()  # made outside a workflow; it may be awaited inside one
    if branch is None:
        return await spec.invoke(args, kwargs)
    return await branch.executor.call_task(branch, spec, args, kwargs, src)


def _need_branch(what: str) -> Branch:
    branch = _branch.get()
    if branch is None:
        raise OutsideWorkflowError(f"{what} can only be awaited inside a running workflow or one of its tasks")
    return branch


async def pause(
    name: str, src: str, wake_at: float | None = None, output: Any = None, on_complete: str | None = None
) -> Any:
    """Pauses the execution at this point; returns the input given when it is resumed."""
    branch = _need_branch("pause()")
    return await branch.executor.pause(branch, name, src, wake_at, output, on_complete)


async def record_value(name: str, produce: Callable[[], T], src: str) -> T:
    """Returns `produce()` the first time and the recorded value on every replay."""
    branch = _need_branch(f"{name}()")
    # On replay the value comes back from the journal as the type it was recorded as (the codec
    # keeps types exactly), so it is a T either way.
    value: T = await branch.executor.record_value(branch, name, produce, src)
    return value


async def sleep(seconds: float, src: str) -> None:
    """A durable timer of `seconds` on the engine's clock."""
    branch = _need_branch("sleep()")
    await branch.executor.sleep(branch, seconds, src)


def patched(change_id: str) -> bool:
    """Whether the running execution takes the new path of change `change_id`."""
    branch = _branch.get()
    if branch is None:
        raise OutsideWorkflowError("patched() can only be called inside a running workflow")
    return branch.executor.patched(branch, change_id)


def now_seconds() -> float | None:
    """The engine clock's time inside a workflow, or None outside one."""
    branch = _branch.get()
    return None if branch is None else branch.executor.clock.now()


def replaying() -> bool:
    """True while the running workflow goes through recorded history (its code runs again over
    what the journal holds); False in a task body, which only ever runs live, and outside a
    workflow."""
    branch = _branch.get()
    if branch is None or branch.call_id is not None:
        return False
    return branch.executor.replaying()


def cancelling() -> bool:
    """True while a requested cancellation unwinds the workflow."""
    branch = _branch.get()
    return branch is not None and branch.executor.cancelling


def current_executor() -> Executor | None:
    branch = _branch.get()
    return None if branch is None else branch.executor


def current_call_id() -> str | None:
    """The call id of the task body running here, or None outside a task."""
    branch = _branch.get()
    return None if branch is None else branch.call_id


def idempotency_key() -> str:
    """A key for the current task call, the same on every attempt and every replay."""
    branch = _branch.get()
    if branch is None or branch.call_id is None:
        raise OutsideWorkflowError("idempotency_key() can only be called inside a task that runs in a workflow")
    return f"{branch.executor.execution_id}:{branch.call_id}"


# The code of the built-ins (`pause`, `sleep`, ...) that take their call's `src` when they run:
# made into a task of its own (`gather(pause(...))`, `TaskGroup.create_task(sleep(...))`), such
# a coroutine runs under the event loop, far from the line that made it, so the task factory
# notes that line on the new branch (`site`). Looked up by the coroutine's qualified name, then
# compared by identity: the factory looks at every task, and hashing a code object hashes all
# of it.
_SITE_CODES: dict[str, Any] = {}


def takes_site(*codes: Any) -> None:
    """Built-ins whose coroutines (`codes`) name the line that made them when made into tasks."""
    for code in codes:
        _SITE_CODES[code.co_qualname] = code


def creation_site() -> str | None:
    """The line a built-in's coroutine was made on, when it runs as a task of its own."""
    branch = _branch.get()
    return None if branch is None else branch.site


def _factory_for(previous: Any) -> Any:
    copy_context = contextvars.copy_context
    new_task = asyncio.Task
    site_codes = _SITE_CODES

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Any, context: contextvars.Context | None = None, **kwargs: Any
    ) -> asyncio.Task[Any]:
        parent = _branch.get() if context is None else context.get(_branch)
        if parent is not None:
            # The child takes the parent's next slot: creation order within a parent is program
            # order, so the same code gives the same ids however the children later interleave.
            parent.slots += 1
            # A task body's own tasks stay in its call (idempotency key, progress, live waits).
            child = Branch(parent.executor, f"{parent.prefix}{parent.slots}.", call_id=parent.call_id)
            code = site_codes.get(getattr(coro, "__qualname__", None))  # type: ignore[arg-type]
            if code is not None and coro.cr_code is code:
                frame = user_frame(2)
                child.site = None if frame is None else site_of(frame)
            context = copy_context() if context is None else context.copy()
            context.run(_branch.set, child)
        task: asyncio.Task[Any]
        if previous is not None:
            if context is not None:
                kwargs["context"] = context
            task = previous(loop, coro, **kwargs)
            if parent is not None and kwargs.get("name") is None:
                task.set_name(child.prefix)
        elif parent is not None:
            # Named after its branch: the key by which a recorded `asyncio.wait` knows it
            # (engine/completion.py); a name the code gives wins.
            if kwargs.get("name") is None:
                kwargs["name"] = child.prefix
            task = new_task(coro, loop=loop, context=context, **kwargs)
        else:
            task = new_task(coro, loop=loop, context=context, **kwargs)
        if parent is not None:
            parent.executor.track_task(task)
        return task

    factory.__flux__ = True  # type: ignore[attr-defined]  # a mark on the function, read back below
    return factory


def install_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Makes tasks created on `loop` inherit call-id branches (idempotent; keeps any factory)."""
    current = loop.get_task_factory()
    if current is not None and getattr(current, "__flux__", False):
        return
    loop.set_task_factory(_factory_for(current))
