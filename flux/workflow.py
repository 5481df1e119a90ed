"""`@workflow`: the entry point of an execution, and the ways to run, resume and replay one.

`run`, `resume` and `cancel` are the sync forms, for scripts; each calls `asyncio.run` on the
async form (`run_async`, or `flux.client.Client` for services).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Never

if sys.version_info >= (3, 13):
    from typing import TypeVar
else:  # TypeVar defaults (PEP 696)
    from typing_extensions import TypeVar

from flux._engine import completion, traps
from flux._engine.calls import Outcome, RunRequest, TaskSpec, child_execution_id
from flux._engine.clock import Clock
from flux._engine.errors import ExecutionStateError, InvalidOptionError, OutsideWorkflowError
from flux._engine.executor import Executor
from flux._engine.history import History
from flux._engine.journal import JournalRead
from flux.context import ExecutionContext
from flux.loader import code_of, register
from flux.options import UNSET, _given, check_options

if TYPE_CHECKING:
    from flux.domain.resource_request import ResourceRequest
    from flux.domain.schedule import Schedule
    from flux.output_storage import OutputStorage

__all__ = ["Workflow", "workflow"]

_WORKFLOW_OPTIONS = {
    "name",
    "namespace",
    "secret_requests",
    "output_storage",
    "requests",
    "affinity",
    "schedule",
    "durability",
    "runner",
    "runner_options",
    "routing",
    "hooks",
}
T = TypeVar("T")
In = TypeVar("In", default=Any)  # the workflow's input type
Out = TypeVar("Out", default=Any)  # its output type

_WORKFLOW_HELP = """
Options (all keyword-only; checked when the decorator runs, InvalidOptionError otherwise):

    name: str | None = None
        The workflow's name in journals and on the command line. Default: the function's name.
    namespace: str | None = None
        Groups workflows ("default" when not given): `qualified_name` is "namespace/name", and
        `call("namespace/name")` finds it.
    output_storage: OutputStorage | bool | None = None
        Where the output goes instead of the journal (LocalFileStorage() or True: the store's
        files; or your own OutputStorage subclass); the run's `ctx.output` is then an
        OutputStorageReference.
    durability: "durable" | "transient" = "durable"
        "transient" runs write their records without fsync (as `durability="os"`): they survive
        a crash of the process, not a power loss.
    secret_requests, requests, affinity, schedule, runner, runner_options, routing, hooks
        Checked and kept as attributes for programs and tools that read them. This engine runs
        workflows in the calling process and has no server or workers: nothing places, routes,
        schedules or hooks runs by them. A schedule says when it would run next
        (`wf.schedule.next_run_time()`); something outside starts the runs.
"""


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to its end from code that has no event loop running.

    Raises:
        RuntimeError: inside a running event loop (use the async form there).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    if not running:
        # Outside the `except` block: errors of the run are not chained to "no running event loop".
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError(
        "this sync function cannot be called inside a running event loop; "
        "use its async form (`await wf.run_async(...)`, or flux.client.Client)"
    )


class Workflow(Generic[In, Out]):
    """An async function `fn(ctx)` made into a durable workflow."""

    def __init__(self, fn: Callable[[ExecutionContext[In]], Awaitable[Out]], **options: Any) -> None:
        check_options("workflow", options, _WORKFLOW_OPTIONS)
        if options.get("durability") == "transient" and options.get("schedule") is not None:
            raise InvalidOptionError("durability='transient' cannot be combined with a schedule")
        if not asyncio.iscoroutinefunction(fn):
            raise InvalidOptionError(f"@workflow needs an `async def` function; {fn.__qualname__} is not one")
        options = {k: v for k, v in options.items() if v is not UNSET}
        self.fn = fn
        self.options = options
        self.name: str = options.get("name") or fn.__name__
        self.namespace: str = options.get("namespace") or "default"
        self.secret_requests: list[str] = list(options.get("secret_requests") or [])
        self.output_storage: OutputStorage | None = options.get("output_storage")
        self.requests: ResourceRequest | None = options.get("requests")
        self.affinity: dict[str, str] | list[dict[str, Any]] | None = options.get("affinity")
        self.schedule: Schedule | None = options.get("schedule")
        self.durability: str = options.get("durability") or "durable"
        self.runner: str | None = options.get("runner")
        self.runner_options: dict[str, Any] | None = options.get("runner_options")
        self.routing: dict[str, Any] | None = options.get("routing")
        self.hooks: list[dict[str, Any]] | None = options.get("hooks")
        functools.update_wrapper(self, fn)
        completion.adopt(fn.__globals__)  # `from asyncio import wait` made before Flux was imported
        register(self)

    @property
    def qualified_name(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

    @property
    def func(self) -> Callable[[ExecutionContext[In]], Awaitable[Out]]:
        return self.fn

    def __call__(self, ctx: ExecutionContext[In], *args: Any) -> Awaitable[Any]:
        """Inside a running workflow, runs this workflow's code with `ctx` (as a plain function
        call); elsewhere runs the whole execution `ctx` describes (a new one, or the one of its
        execution id: a paused one is resumed, a finished one returned) and returns `ctx`, filled
        in."""
        if traps.in_workflow():
            return self.fn(ctx)
        return self._run_context(ctx)

    async def _run_context(self, ctx: ExecutionContext[In]) -> ExecutionContext[In]:
        if ctx.has_finished:
            return ctx
        done = await self.run_async(ctx.input, execution_id=ctx.execution_id)
        ctx.journal_path = done.journal_path
        ctx._settle(done.status, done.output, done._records, done._resolve)
        return ctx

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"

    # -- sync forms ------------------------------------------------------------------------------

    def run(
        self,
        input: In | None = None,
        *,
        execution_id: str | None = None,
        store: Any = None,
        durability: str | None = None,
        clock: Clock | None = None,
    ) -> ExecutionContext[In, Out]:
        """Runs a new execution until it finishes, fails or pauses. With `execution_id`, an
        execution of that id is made if none exists; an existing one is continued if it was
        interrupted, resumed if it is paused (its pause returns `input`, None when not given),
        and returned as it is if it has finished.

        Args:
            store: a directory, a store URL or a store object (default: $FLUX_STORE, else
                $FLUX_HOME, else `.flux`).

        Returns:
            The ExecutionContext of the execution as the run left it.

        Raises:
            EngineError subclasses for engine trouble (divergence, damage, a lock held elsewhere).
        """
        return run_sync(
            self.run_async(input, execution_id=execution_id, store=store, durability=durability, clock=clock)
        )

    def resume(
        self,
        execution_id: str,
        input: Any = None,
        *,
        pause: str | None = None,
        store: Any = None,
        durability: str | None = None,
        clock: Clock | None = None,
    ) -> ExecutionContext[In, Out]:
        """Continues a paused or interrupted execution; `input` is what the waiting pause
        returns (`pause` names it when several wait)."""
        return run_sync(
            self.run_async(
                input,
                execution_id=execution_id,
                store=store,
                durability=durability,
                clock=clock,
                resume=True,
                pause=pause,
            )
        )

    def cancel(self, execution_id: str, *, store: Any = None) -> ExecutionContext[Any]:
        """Cancels an execution that no process is running (a paused or interrupted one):
        replays it, delivers the cancellation where the journal ends, lets sagas compensate
        and records WORKFLOW_CANCELLED. For one running elsewhere use `flux cancel`."""
        return run_sync(self.cancel_async(execution_id, store=store))

    # -- async forms -----------------------------------------------------------------------------

    async def run_async(
        self,
        input: In | None = None,
        *,
        execution_id: str | None = None,
        store: Any = None,
        durability: str | None = None,
        clock: Clock | None = None,
        aliases: dict[str, str] | None = None,
        resume: bool = False,
        pause: str | None = None,
        resume_has_input: bool = True,
        observer: Any = None,
    ) -> ExecutionContext[In, Out]:
        """`run` (or, with `resume=True`, `resume`) for code that already runs an event loop.

        `observer` watches the run (SPEC.md "Observers").
        """
        from flux.client import Client

        if durability is None and self.durability == "transient":
            durability = "os"
        client = Client(store, durability=durability, clock=clock)
        if resume:
            if execution_id is None:
                raise InvalidOptionError("resume needs the execution_id of the execution to resume")
            handle = await client.resume(
                execution_id,
                input,
                pause=pause,
                has_input=resume_has_input,
                workflow=self,
                aliases=aliases,
                observer=observer,
            )
        elif execution_id is not None and client.store.exists(execution_id):
            if client.store.summary(execution_id).status == "paused":
                handle = await client.resume(
                    execution_id, input, workflow=self, aliases=aliases, observer=observer
                )
            else:
                handle = await client.continue_(execution_id, workflow=self, aliases=aliases, observer=observer)
        else:
            handle = await client.start(self, input, execution_id=execution_id, observer=observer, run_here=True)
        done: ExecutionContext[In, Out] = await handle.result()
        return done

    async def cancel_async(self, execution_id: str, *, store: Any = None) -> ExecutionContext[Any]:
        from flux.client import Client

        client = Client(store)
        await client.cancel(execution_id, workflow=self)
        return client.context(execution_id)

    async def replay_async(
        self,
        journal: JournalRead,
        execution_id: str,
        *,
        aliases: dict[str, str] | None = None,
        observer: Any = None,
        history: History | None = None,
        store: Any = None,
    ) -> tuple[ExecutionContext[Any], Outcome, Executor]:
        """Re-runs the workflow over a journal without running any task body or writing anything.

        Returns the context, the outcome ("replayed" when the journal ended first) and the
        executor, whose `core` holds the replay's decisions and its verdict.
        """
        from flux._engine.store import open_store

        request = RunRequest(
            execution_id=execution_id, replay_only=True, journal=journal, history=history, aliases=aliases or {},
            observer=observer,
        )
        executor = Executor(open_store(store), request)
        box: list[ExecutionContext[Any]] = []
        outcome = await executor.run(self._body(executor, box))
        from flux.client import context_of

        return context_of(executor, outcome, box[0] if box else None), outcome, executor

    # -- running ---------------------------------------------------------------------------------

    def _body(
        self, executor: Executor, box: list[ExecutionContext[Any]]
    ) -> Callable[[Any], Coroutine[Any, Any, Any]]:
        async def body(workflow_input: Any) -> Any:
            ctx: ExecutionContext[Any] = ExecutionContext._of(
                executor.execution_id, self.name, workflow_input, self.namespace
            )
            fired = executor.records[0].get("schedule") if executor.records else None
            if isinstance(fired, dict):
                ctx._schedule = fired
            ctx._attach(executor)
            box.append(ctx)
            ExecutionContext.set(ctx)  # this task's context, copied into every branch it starts
            return await self.fn(ctx)

        return body

    async def _drive(self, executor: Executor, opened: Any = None) -> ExecutionContext[Any]:
        """Runs an opened execution to its end or its pause; its ExecutionContext."""
        from flux.client import context_of

        box: list[ExecutionContext[Any]] = []
        outcome = await executor.run(self._body(executor, box), opened)
        return context_of(executor, outcome, box[0] if box else None)


async def run_child(workflow: Workflow | str, input: Any, src: str) -> Any:
    """Runs (or, on replay, continues) a sub-workflow as one task call of the running workflow."""
    parent = traps.current_executor()
    if parent is None:
        raise OutsideWorkflowError("call() can only be awaited inside a running workflow")
    if isinstance(workflow, str):
        workflow = _find_sibling(parent, workflow)
    if not isinstance(workflow, Workflow):
        raise TypeError(f"call() needs a workflow or a workflow's name, not {type(workflow).__name__}")
    child_wf = workflow

    async def body(child_input: Any) -> Any:
        call_id = traps.current_call_id()
        assert call_id is not None
        child_id = child_execution_id(parent.execution_id, call_id)
        store = parent.store
        route = parent.child_resumes.pop(child_id, None)
        request = RunRequest(
            execution_id=child_id,
            workflow_name=child_wf.name,
            code=code_of(child_wf),
            input=child_input,
            create=not store.exists(child_id),
            resume=route is not None,
            resume_pause=route[0] if route is not None else None,
            resume_input=route[1] if route is not None else None,
            resume_has_input=route[2] if route is not None else True,
            cancel=child_id in parent.child_cancels,
            durability=parent.request.durability,
            parent={"execution_id": parent.execution_id, "call_id": call_id},
            aliases=parent.request.aliases,
        )
        executor = Executor(store, request, parent.clock, parent=parent)
        parent.children[call_id] = executor
        try:
            outcome = await executor.run(child_wf._body(executor, []))
        finally:
            parent.children.pop(call_id, None)
        if outcome.status == "completed":
            return outcome.output
        if outcome.status == "failed":
            raise outcome.output
        if outcome.status == "completed" and child_wf.output_storage is not None:
            return outcome.output
        if outcome.status == "paused":
            # The child waits at a pause: so does this call, and the parent ends paused once
            # nothing else runs; resuming the parent answers the child's pause (SPEC.md 4.5).
            return await parent.wait_for_child(call_id, child_id)
        if outcome.status == "cancelled" and parent.cancelling:
            raise asyncio.CancelledError()
        raise ExecutionStateError(f"sub-workflow {child_wf.name!r} (execution {child_id}) ended {outcome.status}")

    spec = TaskSpec(child_wf.name, body, True, None, None, True)
    return await traps.call_task(spec, (input,), {}, src)


def _find_sibling(parent: Executor, name: str) -> Workflow:
    import sys

    from flux._engine.errors import WorkflowNotFoundError
    from flux.loader import registered, workflows_in

    module_name = (parent.records[0].get("code") or {}).get("module", "")
    module = sys.modules.get(module_name)
    found = workflows_in(module) if module is not None else {}
    for attr, wf in found.items():
        if name in (attr, wf.name, wf.qualified_name):
            return wf
    namespace, _, short = name.rpartition("/")
    for wf in registered():
        if wf.name == short and (not namespace or wf.namespace == namespace):
            return wf
    raise WorkflowNotFoundError(name, module_name or None)


class _WorkflowDecorator:
    __doc__ = (
        "`@workflow` makes an `async def wf(ctx: ExecutionContext[T])` a durable workflow; "
        "`@workflow.with_options(...)` does so with options. `wf.run(input)` runs it.\n" + _WORKFLOW_HELP
    )

    def __call__(self, fn: Callable[[ExecutionContext[In]], Awaitable[Out]]) -> Workflow[In, Out]:
        return Workflow(fn)

    def with_options(
        self,
        *,
        name: str | None = UNSET,
        namespace: str | None = UNSET,
        secret_requests: list[str] | None = UNSET,
        output_storage: OutputStorage | bool | None = UNSET,
        requests: ResourceRequest | None = UNSET,
        affinity: dict[str, str] | list[dict[str, Any]] | None = UNSET,
        schedule: Schedule | None = UNSET,
        durability: str = UNSET,
        runner: str | None = UNSET,
        runner_options: dict[str, Any] | None = UNSET,
        routing: dict[str, Any] | None = UNSET,
        hooks: list[dict[str, Any]] | None = UNSET,
        **unknown: Never,
    ) -> _DecorateWorkflow:
        options = _given(locals())
        check_options("workflow", options, _WORKFLOW_OPTIONS)
        if options.get("durability") == "transient" and options.get("schedule") is not None:
            raise InvalidOptionError("durability='transient' cannot be combined with a schedule")
        return _DecorateWorkflow(options)


_WorkflowDecorator.with_options.__doc__ = "A decorator that makes a workflow with these options.\n" + _WORKFLOW_HELP


class _DecorateWorkflow:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def __call__(self, fn: Callable[[ExecutionContext[In]], Awaitable[Out]]) -> Workflow[In, Out]:
        return Workflow(fn, **self.options)


workflow = _WorkflowDecorator()
