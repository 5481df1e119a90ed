"""`@task`: functions whose calls inside a workflow are recorded and replayed."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from flux._engine import traps
from flux._engine.executor import TaskSpec
from flux.options import check_options, task_options, uses_output_storage

__all__ = ["TaskFunction", "task"]

_TASK_OPTIONS = {
    "name",
    "retry_max_attempts",
    "retry_delay",
    "retry_backoff",
    "timeout",
    "fallback",
    "rollback",
    "secret_requests",
    "output_storage",
    "cache",
}


_basenames: dict[str, str] = {}
_FLUX_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep

# Where a call made by Flux's own helpers (a Graph node) comes from in user code.
call_site: contextvars.ContextVar[str | None] = contextvars.ContextVar("flux_call_site", default=None)


def _caller_src(depth: int = 2) -> str:
    return _src_of(sys._getframe(depth))


def _src_of(frame: Any) -> str:
    """`file:line` of the first frame outside Flux, from `frame` outwards."""
    start = frame
    while frame is not None and frame.f_code.co_filename.startswith(_FLUX_DIR):
        frame = frame.f_back
    if frame is None or frame.f_code.co_filename.startswith(_ASYNCIO_DIR):
        # The chain ends in the event loop: a Flux helper runs this call in a task of its own.
        return call_site.get() or f"{_basename(start.f_code.co_filename)}:{start.f_lineno}"
    return f"{_basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _basename(filename: str) -> str:
    name = _basenames.get(filename)
    if name is None:
        name = _basenames[filename] = os.path.basename(filename)
    return name


class TaskFunction:
    """A function made into a task. Calling it returns an awaitable that runs through the engine.

    Outside a workflow the function simply runs.
    """

    def __init__(self, fn: Callable[..., Any], **options: Any) -> None:
        check_options("task", options, _TASK_OPTIONS)
        self.fn = fn
        self.options = options
        self.name: str = options.get("name") or fn.__name__
        self.task_options = task_options(options)
        self.spec = TaskSpec.of(fn, self.name, self.task_options, **_extras(options))
        functools.update_wrapper(self, fn)
        self.__flux_task__ = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        frame = sys._getframe(1)
        filename = frame.f_code.co_filename
        if filename.startswith(_FLUX_DIR):  # called by pipeline, map, a Graph node: find the user's line
            return traps.call_task(self.spec, args, kwargs, _src_of(frame))
        base = _basenames.get(filename) or _basename(filename)
        return traps.call_task(self.spec, args, kwargs, f"{base}:{frame.f_lineno}")

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return _BoundTask(self, obj)

    def map(self, items: Any) -> Any:
        """`self(item)` for each item, concurrently; awaits to the results in order."""
        from flux.tasks import map_task

        return map_task(self, items)

    def with_options(self, **options: Any) -> TaskFunction:
        """A new task with these options changed and the others kept.

        Raises:
            InvalidOptionError: for an unknown option or a bad value.
        """
        return TaskFunction(self.fn, **{**self.options, **options})

    def __repr__(self) -> str:
        return f"<task {self.name}>"


def _extras(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "secrets": tuple(options.get("secret_requests") or ()),
        "blob": uses_output_storage(options),
        "cache": bool(options.get("cache", False)),
    }


class _BoundTask:
    """A task defined as a method, bound to its instance; the instance is not recorded."""

    def __init__(self, task: TaskFunction, obj: Any) -> None:
        self.task = task
        self.spec = TaskSpec.of(functools.partial(task.fn, obj), task.name, task.task_options, **_extras(task.options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return traps.call_task(self.spec, args, kwargs, _caller_src())


class _TaskDecorator:
    """`@task` and `@task.with_options(...)`."""

    def __call__(self, fn: Callable[..., Any]) -> TaskFunction:
        return TaskFunction(fn)

    def with_options(self, **options: Any) -> Callable[[Callable[..., Any]], TaskFunction]:
        check_options("task", options, _TASK_OPTIONS)
        return lambda fn: TaskFunction(fn, **options)


task = _TaskDecorator()
