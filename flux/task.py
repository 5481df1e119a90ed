"""`@task`: functions whose calls inside a workflow are recorded and replayed."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from engine import traps
from engine.executor import TaskSpec
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


def _caller_src(depth: int = 2) -> str:
    frame = sys._getframe(depth)
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
