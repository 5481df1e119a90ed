"""`@task`: functions whose calls inside a workflow are recorded and replayed."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, Unpack, overload

from flux._engine import traps
from flux._engine.errors import InvalidOptionError
from flux._engine.executor import TaskSpec
from flux.domain.events import register_task_function
from flux.options import UNSET, check_options, task_options, uses_output_storage

if TYPE_CHECKING:
    from flux.output_storage import OutputStorage

__all__ = ["TaskFunction", "TaskMetadata", "task"]

P = ParamSpec("P")
R = TypeVar("R")

_TASK_OPTIONS = {
    "name",
    "retry_max_attempts",
    "retry_delay",
    "retry_backoff",
    "retry_max_delay",
    "retry_jitter",
    "retry_on",
    "non_retryable",
    "timeout",
    "fallback",
    "rollback",
    "secret_requests",
    "config_requests",
    "output_storage",
    "cache",
    "metadata",
    "auth_exempt",
    "digest_exclude",
    "requires_approval",
    "approval_target",
    "risk",
    "sensitive",
}

# Flux's defaults, so that every option is an attribute of a task.
_DEFAULTS: dict[str, Any] = {
    "name": None,
    "fallback": None,
    "rollback": None,
    "retry_max_attempts": 0,
    "retry_delay": 1,
    "retry_backoff": 2,
    "retry_max_delay": 600,
    "retry_jitter": 0.0,
    "retry_on": (),
    "non_retryable": (),
    "timeout": 0,
    "secret_requests": [],
    "config_requests": [],
    "output_storage": None,
    "cache": False,
    "metadata": False,
    "auth_exempt": False,
    "digest_exclude": (),
    "requires_approval": False,
    "approval_target": None,
    "risk": None,
    "sensitive": False,
}

_OPTIONS_HELP = """
Options (all keyword-only; checked when the decorator runs, InvalidOptionError otherwise):

    name: str | None = None
        The task's name in the journal and events; may name arguments as a format string
        ("charge_{order_id}"). Default: the function's name.
    retry_max_attempts: int = 0
        How many times a failed call is tried again (0: never). A task with 3 runs at most 4
        times: the first attempt and 3 retries.
    retry_delay: float = 1
        Seconds before the first retry.
    retry_backoff: float = 2
        Each further wait is the previous one times this: retry k waits
        retry_delay * retry_backoff ** (k - 1) seconds.
    retry_max_delay: float | None = 600
        No wait is longer than this (None: no limit).
    retry_jitter: float = 0.0
        0 to 1: each wait is drawn at random from [wait * (1 - jitter), wait]; the wait drawn is
        recorded, so a resumed run waits what the first one chose.
    retry_on: type | tuple[type, ...] = ()
        When given, only failures of these exception types are retried.
    non_retryable: type | tuple[type, ...] = ()
        Failures of these exception types are never retried.
    timeout: float = 0
        Seconds an attempt may run (0: no limit); past it the attempt fails with
        ExecutionTimeoutError. A plain function with a timeout runs in a child process that is
        killed at the limit.
    fallback: callable | None = None
        Called with the call's arguments when every attempt failed; its result is the task's.
    rollback: callable | None = None
        Called with the call's arguments when every attempt failed (and no fallback is given);
        the failure is then raised.
    secret_requests: list[str] = []
        Secrets handed to the body as `secrets={name: value}`; their values never reach the
        journal (recorded as [secret:NAME]).
    config_requests: list[str] = []
        Configuration handed to the body as `config={name: value}` (from the environment, then
        the JSON file $FLUX_CONFIG_FILE); names may be format strings over the arguments.
    output_storage: OutputStorage | bool | None = None
        Where the result goes instead of the journal: LocalFileStorage() (or True) for files
        in the store, or your own OutputStorage subclass.
    cache: bool = False
        Reuse the result of an identical earlier call (same task, same arguments).
    metadata: bool = False
        Hand the body `metadata=TaskMetadata(task_id, task_name)` (task_id is the call id).
    requires_approval: bool | callable = False
        The workflow pauses before the task runs until a resume answers: True or
        {"approved": True} approves, anything else rejects (ApprovalRejected). A callable gets
        the call's arguments and says whether this call needs approval (it may be async).
    approval_target: str | None = None
        The parameter whose value the approval is about (shown with the approval request).
    risk: "read" | "write" | "exec" | "external" | None = None
        What kind of side effect the task has; kept for tools that read it.
    sensitive: bool = False
        Arguments and result are recorded as [REDACTED:sensitive], and the body runs again on
        replay to give the result back. Cannot be combined with cache.
    auth_exempt: bool = False, digest_exclude: tuple[str, ...] = ()
        Accepted for programs that set them: this engine has no server to authorise calls,
        and identifies calls by their place in the program, not by a digest of arguments.
"""

class TaskOptions(TypedDict, total=False):
    """The options of `task.with_options(...)` and `TaskFunction.with_options(...)`, each
    optional, typed for checkers (see `help(flux.task)`); an unknown one is refused by name."""

    name: str | None
    fallback: Callable[..., Any] | None
    rollback: Callable[..., Any] | None
    retry_max_attempts: int
    retry_delay: float
    retry_backoff: float
    retry_max_delay: float | None
    retry_jitter: float
    retry_on: type[BaseException] | tuple[type[BaseException], ...]
    non_retryable: type[BaseException] | tuple[type[BaseException], ...]
    timeout: float | None
    secret_requests: Sequence[str] | None
    config_requests: Sequence[str] | None
    output_storage: OutputStorage | bool | None
    cache: bool
    metadata: bool
    auth_exempt: bool
    digest_exclude: tuple[str, ...]
    requires_approval: bool | Callable[..., bool | Awaitable[bool]]
    approval_target: str | None
    risk: Literal["read", "write", "exec", "external"] | None
    sensitive: bool


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


# The `file:line` of each call site in user code, by (id of its code object, offset of its last
# instruction): a line number is costly to work out from a frame, and a call site is the same
# line every time. Each entry keeps its code object, so that the id is not another's meanwhile.
_sites: dict[tuple[int, int], tuple[Any, str]] = {}
_MAX_SITES = 100_000  # code made at run time (exec) could add sites without end


def _site_of(frame: Any) -> str:
    """`file:line` of the call being made in `frame`."""
    code = frame.f_code
    key = (id(code), frame.f_lasti)
    known = _sites.get(key)
    if known is not None:
        return known[1]
    filename = code.co_filename
    if filename.startswith(_FLUX_DIR):  # called by pipeline, map, a Graph node: find the user's line
        return _src_of(frame)  # (not kept: it depends on the frames outside)
    src = f"{_basename(filename)}:{frame.f_lineno}"
    if len(_sites) >= _MAX_SITES:
        _sites.clear()
    _sites[key] = (code, src)
    return src


class TaskMetadata:
    """What a task with `metadata=True` is handed as `metadata=`: its call id (`task_id`, the same
    on every attempt and replay) and its name."""

    def __init__(self, task_id: str, task_name: str) -> None:
        self.task_id = task_id
        self.task_name = task_name

    def __repr__(self) -> str:
        return f"TaskMetadata(task_id={self.task_id}, task_name={self.task_name})"


def _check_parameter(fn: Callable[..., Any], option: str, name: str) -> None:
    """An option naming an argument must name one of `fn`'s parameters (or `fn` takes **kwargs)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    raise InvalidOptionError(
        f"{option}={name!r} names no parameter of {getattr(fn, '__qualname__', fn)!r}; "
        f"use one of: {', '.join(parameters) or '(it takes none)'}"
    )


class TaskFunction(Generic[P, R]):
    """A function made into a task. Calling it returns an awaitable that runs through the engine
    (outside a workflow the function simply runs). Every option is an attribute (`t.timeout`,
    `t.retry_max_attempts`, ...); `t.func` is the function."""

    fallback: Callable[..., Any] | None
    rollback: Callable[..., Any] | None
    retry_max_attempts: int
    retry_delay: float
    retry_backoff: float
    retry_max_delay: float | None
    retry_jitter: float
    retry_on: type[BaseException] | tuple[type[BaseException], ...]
    non_retryable: type[BaseException] | tuple[type[BaseException], ...]
    timeout: float
    secret_requests: list[str]
    config_requests: list[str]
    output_storage: OutputStorage | bool | None
    cache: bool
    metadata: bool
    auth_exempt: bool
    digest_exclude: tuple[str, ...]
    requires_approval: bool | Callable[..., bool | Awaitable[bool]]
    approval_target: str | None
    risk: str | None
    sensitive: bool

    def __init__(self, fn: Callable[P, Awaitable[R]] | Callable[P, R], **options: Any) -> None:
        check_options("task", options, _TASK_OPTIONS)
        given = {k: v for k, v in options.items() if v is not UNSET}
        self.fn = fn
        self.options = given
        for key, default in _DEFAULTS.items():
            value = given.get(key, default)
            setattr(self, key, list(value) if isinstance(value, list) else value)
        self.name: str = given.get("name") or fn.__name__
        if given.get("approval_target"):
            _check_parameter(fn, "approval_target", given["approval_target"])
        self.description: str | None = None
        self.task_options = task_options(given)
        self.spec = _spec_of(self, fn)
        register_task_function(self.name, fn)
        functools.update_wrapper(self, fn)
        self.__flux_task__ = True

    @property
    def func(self) -> Callable[..., Any]:
        """The wrapped function."""
        return self.fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        frame = sys._getframe(1)
        if self.requires_approval is not False:
            return _gated(self, self.spec, args, kwargs, _src_of(frame))
        known = _sites.get((id(frame.f_code), frame.f_lasti))
        src = known[1] if known is not None else _site_of(frame)
        return traps.call_task(self.spec, args, kwargs, src)  # type: ignore[return-value]

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return _BoundTask(self, obj)

    def map(self, items: Iterable[Any]) -> Awaitable[list[R]]:
        """`self(item)` for each item, concurrently; awaits to the results in order."""
        from flux.tasks import map_task

        return map_task(self, items)

    def with_options(self, **options: Unpack[TaskOptions]) -> TaskFunction[P, R]:
        """A new task with these options changed and the others kept (see `help(flux.task)`).

        Raises:
            InvalidOptionError: for a bad value.
        """
        return TaskFunction(self.fn, **{**self.options, **options})

    def __repr__(self) -> str:
        return f"<task {self.name}>"


def _spec_of(t: TaskFunction[Any, Any], fn: Callable[..., Any], bound: Any = None) -> TaskSpec:
    body = fn if bound is None else functools.partial(fn, bound)
    inject = _injector(t)
    storage = t.output_storage
    from flux.output_storage import InlineOutputStorage, LocalFileStorage

    custom = storage if storage not in (None, True, False) and not isinstance(
        storage, (LocalFileStorage, InlineOutputStorage)
    ) else None
    return TaskSpec.of(
        body,
        t.name,
        t.task_options,
        secrets=tuple(t.secret_requests or ()),
        blob=uses_output_storage(t.options),
        cache=bool(t.cache),
        inject=inject,
        storage=custom,
        sensitive=bool(t.sensitive),
    )


def _injector(t: TaskFunction[Any, Any]) -> Callable[[str, str], dict[str, Any]] | None:
    wants_metadata = bool(t.metadata)
    configs = list(t.config_requests or ())
    if not wants_metadata and not configs:
        return None

    def inject(call_id: str, name: str) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if wants_metadata:
            extra["metadata"] = TaskMetadata(call_id, name)
        if configs:
            extra["config"] = _config_values(configs)
        return extra

    return inject


def _config_values(names: list[str]) -> dict[str, Any]:
    """Configuration values: the environment first, then the JSON object in $FLUX_CONFIG_FILE.

    Raises:
        ValueError: `The following configs were not found: [...]`.
    """
    import json

    found: dict[str, Any] = {}
    from_file: dict[str, Any] | None = None
    missing = []
    for name in names:
        if name in os.environ:
            found[name] = os.environ[name]
            continue
        if from_file is None:
            path = os.environ.get("FLUX_CONFIG_FILE")
            from_file = {}
            if path and os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    loaded = json.load(fh)
                from_file = loaded if isinstance(loaded, dict) else {}
        if name in from_file:
            found[name] = from_file[name]
        else:
            missing.append(name)
    if missing:
        raise ValueError(f"The following configs were not found: {missing}")
    return found


async def _gated(t: TaskFunction[Any, Any], spec: TaskSpec, args: Any, kwargs: Any, src: str) -> Any:
    """A call of a task with `requires_approval`: when it needs approval, the workflow pauses at
    a pause named `approval:<task name>` (its output says what is asked) until a resume answers;
    an approval lets the call run, anything else raises ApprovalRejected (SPEC.md 4.5)."""
    from flux._engine.errors import ApprovalRejected

    needed = t.requires_approval
    if callable(needed):
        decided = needed(*args, **kwargs)
        needed = await decided if inspect.isawaitable(decided) else decided
    if needed:
        target = None
        if t.approval_target:
            try:
                bound = inspect.signature(t.fn).bind_partial(*args, **kwargs)
                target = bound.arguments.get(t.approval_target)
            except TypeError:
                target = None
        request = {"type": "approval_required", "task_name": t.name, "target_value": target}
        answer = await traps.pause(f"approval:{t.name}", src, None, request)
        approved = answer is True or (isinstance(answer, dict) and answer.get("approved") is True)
        if not approved:
            info = answer if isinstance(answer, dict) else {}
            raise ApprovalRejected(
                t.name, info.get("approver_subject"), info.get("approver_provider"), info.get("reason")
            )
    return await traps.call_task(spec, args, kwargs, src)


class _BoundTask:
    """A task defined as a method, bound to its instance; the instance is not recorded."""

    def __init__(self, task: TaskFunction[Any, Any], obj: Any) -> None:
        self.task = task
        self.spec = _spec_of(task, task.fn, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.task.requires_approval is not False:
            return _gated(self.task, self.spec, args, kwargs, _caller_src())
        return traps.call_task(self.spec, args, kwargs, _caller_src())


class _TaskDecorator:
    __doc__ = (
        "`@task` makes a function a task; `@task.with_options(...)` does so with options.\n\n"
        "A task called in a workflow is recorded (its arguments, its result or its failure) and, "
        "on replay, its recorded outcome is handed back without running it again. A plain (non-"
        "async) function runs in a worker thread. The task keeps the function's signature: "
        "`await charge('x', 3)` is type-checked against it and gives its return type.\n" + _OPTIONS_HELP
    )

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> TaskFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> TaskFunction[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> TaskFunction[P, Any]:
        return TaskFunction(fn)

    def with_options(self, **options: Unpack[TaskOptions]) -> _Decorate:
        given = dict(options)
        check_options("task", given, _TASK_OPTIONS)
        return _Decorate(given)


_TaskDecorator.with_options.__doc__ = "A decorator that makes a task with these options.\n" + _OPTIONS_HELP


class _Decorate:
    """What `@task.with_options(...)` returns: applied to a function, it makes the task."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> TaskFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> TaskFunction[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> TaskFunction[P, Any]:
        return TaskFunction(fn, **self.options)


task = _TaskDecorator()
