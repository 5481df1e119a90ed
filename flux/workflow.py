"""`@workflow`: the entry point of an execution, and the ways to run, resume and replay one.

`run`, `resume` and `cancel` are the sync forms, for scripts; each calls `asyncio.run` on the
async form (`run_async`, or `flux.client.Client` for services).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from flux._engine import traps
from flux._engine.calls import Outcome, RunRequest, TaskSpec, child_execution_id
from flux._engine.clock import Clock
from flux._engine.errors import ExecutionStateError, InvalidOptionError, OutsideWorkflowError
from flux._engine.executor import Executor
from flux._engine.history import History
from flux._engine.journal import JournalRead
from flux.context import ExecutionContext
from flux.loader import code_of, register
from flux.options import check_options

__all__ = ["Workflow", "workflow"]

_WORKFLOW_OPTIONS = {"name", "output_storage"}
T = TypeVar("T")


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


class Workflow:
    """An async function `fn(ctx)` made into a durable workflow."""

    def __init__(self, fn: Callable[..., Awaitable[Any]], **options: Any) -> None:
        check_options("workflow", options, _WORKFLOW_OPTIONS)
        if not asyncio.iscoroutinefunction(fn):
            raise InvalidOptionError(f"@workflow needs an `async def` function; {fn.__qualname__} is not one")
        self.fn = fn
        self.options = options
        self.name: str = options.get("name") or fn.__name__
        functools.update_wrapper(self, fn)
        register(self)

    def __call__(self, ctx: ExecutionContext[Any]) -> Awaitable[Any]:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"

    # -- sync forms ------------------------------------------------------------------------------

    def run(
        self,
        input: Any = None,
        *,
        execution_id: str | None = None,
        store: Any = None,
        durability: str | None = None,
        clock: Clock | None = None,
    ) -> ExecutionContext[Any]:
        """Runs a new execution until it finishes, fails or pauses. With `execution_id`, an
        execution of that id is made if none exists; an existing one is continued if it was
        interrupted, and returned as it is if it is paused or finished.

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
    ) -> ExecutionContext[Any]:
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
        input: Any = None,
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
    ) -> ExecutionContext[Any]:
        """`run` (or, with `resume=True`, `resume`) for code that already runs an event loop.

        `observer` watches the run (SPEC.md "Observers").
        """
        from flux.client import Client

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
            handle = await client.continue_(execution_id, workflow=self, aliases=aliases, observer=observer)
        else:
            handle = await client.start(self, input, execution_id=execution_id, observer=observer, run_here=True)
        return await handle.result()

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
            ctx: ExecutionContext[Any] = ExecutionContext(executor.execution_id, self.name, workflow_input)
            box.append(ctx)
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
        raise TypeError(f"call() needs a workflow, not {type(workflow).__name__}")
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

    from flux.loader import workflows_in

    module = sys.modules.get((parent.records[0].get("code") or {}).get("module", ""))
    found = workflows_in(module) if module is not None else {}
    for attr, wf in found.items():
        if name in (attr, wf.name):
            return wf
    raise ExecutionStateError(f"call({name!r}): no workflow of that name in the calling workflow's module")


class _WorkflowDecorator:
    """`@workflow` and `@workflow.with_options(...)`."""

    def __call__(self, fn: Callable[..., Awaitable[Any]]) -> Workflow:
        return Workflow(fn)

    def with_options(self, **options: Any) -> Callable[[Callable[..., Awaitable[Any]]], Workflow]:
        check_options("workflow", options, _WORKFLOW_OPTIONS)
        return lambda fn: Workflow(fn, **options)


workflow = _WorkflowDecorator()
