"""`@workflow`: the entry point of an execution, and the ways to run, resume and replay one."""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from flux._engine.errors import ExecutionStateError, InvalidOptionError, OutsideWorkflowError
from flux._engine.executor import Executor, Outcome, RunRequest, TaskSpec, child_execution_id
from flux._engine.journal import DURABILITY_MODES, JournalRead
from flux._engine.store import FileStore, validate_execution_id
from flux._engine.clock import Clock
from flux.context import ExecutionContext
from flux.loader import code_of
from flux.options import check_options, uses_output_storage

__all__ = ["Workflow", "default_home", "workflow"]

_WORKFLOW_OPTIONS = {"name", "output_storage"}


def default_home(home: str | None = None) -> str:
    """The store directory: `home`, else $FLUX_HOME, else `.flux` in the current directory."""
    return home or os.environ.get("FLUX_HOME") or ".flux"


def _check_durability(durability: str | None) -> str:
    durability = durability or os.environ.get("FLUX_DURABILITY") or "fsync"
    if durability not in DURABILITY_MODES:
        raise InvalidOptionError(f"durability={durability!r} must be one of {', '.join(DURABILITY_MODES)}")
    return durability


def _run_sync(coro: Awaitable[ExecutionContext[Any]]) -> ExecutionContext[Any]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    if running:
        coro.close()  # type: ignore[attr-defined]
        raise RuntimeError("run() cannot be called inside a running event loop; use `await wf.run_async(...)`")
    return asyncio.run(coro)  # type: ignore[arg-type]


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

    def __call__(self, ctx: ExecutionContext[Any]) -> Awaitable[Any]:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"

    def run(
        self,
        input: Any = None,
        *,
        execution_id: str | None = None,
        home: str | None = None,
        durability: str | None = None,
        clock: Clock | None = None,
    ) -> ExecutionContext[Any]:
        """Runs a new execution, or continues `execution_id`, until it finishes, fails or pauses.

        Returns:
            The ExecutionContext of the execution as the run left it.

        Raises:
            EngineError subclasses for engine trouble (divergence, damage, a lock held elsewhere).
        """
        return _run_sync(
            self.run_async(input, execution_id=execution_id, home=home, durability=durability, clock=clock)
        )

    def resume(
        self, execution_id: str, input: Any = None, *, home: str | None = None, durability: str | None = None,
        clock: Clock | None = None,
    ) -> ExecutionContext[Any]:
        """Continues a paused or interrupted execution; `input` is what the waiting pause returns."""
        return _run_sync(
            self.run_async(input, execution_id=execution_id, home=home, durability=durability, clock=clock, resume=True)
        )

    async def run_async(
        self,
        input: Any = None,
        *,
        execution_id: str | None = None,
        home: str | None = None,
        durability: str | None = None,
        clock: Clock | None = None,
        aliases: dict[str, str] | None = None,
        resume: bool = False,
        resume_has_input: bool = True,
        observer: Any = None,
    ) -> ExecutionContext[Any]:
        """`run` (or, with `resume=True`, `resume`) for code that already runs an event loop.

        Without `resume`, a paused execution is returned as it is; with it, `input` is what the
        waiting pause returns. `observer` watches the run (SPEC.md "Observers").
        """
        store = FileStore(default_home(home))
        mode = _check_durability(durability)
        if execution_id is None:
            request = RunRequest(
                execution_id=uuid.uuid4().hex,
                workflow_name=self.name,
                code=code_of(self),
                input=input,
                create=True,
                durability=mode,
                blob_output=uses_output_storage(self.options),
                observer=observer,
            )
        else:
            validate_execution_id(execution_id)
            request = RunRequest(
                execution_id=execution_id,
                workflow_name=self.name,
                resume_input=input,
                resume=resume,
                resume_has_input=resume_has_input,
                durability=mode,
                aliases=aliases or {},
                blob_output=uses_output_storage(self.options),
                observer=observer,
            )
        return await self._execute(store, request, clock)

    def cancel(self, execution_id: str, *, home: str | None = None) -> ExecutionContext[Any]:
        """Cancels an execution that no process is running (a paused or interrupted one):
        replays it, delivers the cancellation where the journal ends, lets sagas compensate
        and records WORKFLOW_CANCELLED. For one running elsewhere use `flux cancel`."""
        return _run_sync(self.cancel_async(execution_id, home=home))

    async def cancel_async(
        self, execution_id: str, *, home: str | None = None, aliases: dict[str, str] | None = None
    ) -> ExecutionContext[Any]:
        validate_execution_id(execution_id)
        request = RunRequest(
            execution_id=execution_id, workflow_name=self.name, cancel=True, aliases=aliases or {},
            durability=_check_durability(None),
        )
        return await self._execute(FileStore(default_home(home)), request, None)

    async def replay_async(
        self, journal: JournalRead, execution_id: str, *, aliases: dict[str, str] | None = None
    ) -> tuple[ExecutionContext[Any], Outcome]:
        """Re-runs the workflow over a journal without running any task body or writing anything."""
        request = RunRequest(execution_id=execution_id, replay_only=True, journal=journal, aliases=aliases or {})
        executor = Executor(FileStore(os.path.dirname(os.path.dirname(journal.path)) or "."), request)
        ctx_box: list[ExecutionContext[Any]] = []
        outcome = await executor.run(self._body(executor, ctx_box))
        ctx = self._context(executor, outcome, ctx_box)
        return ctx, outcome

    def _body(self, executor: Executor, ctx_box: list[ExecutionContext[Any]]) -> Callable[[Any], Awaitable[Any]]:
        async def body(workflow_input: Any) -> Any:
            ctx: ExecutionContext[Any] = ExecutionContext(executor.execution_id, self.name, workflow_input)
            ctx_box.append(ctx)
            return await self.fn(ctx)

        return body

    def _context(self, executor: Executor, outcome: Outcome, ctx_box: list[ExecutionContext[Any]]) -> ExecutionContext[Any]:
        ctx = ctx_box[0] if ctx_box else ExecutionContext(outcome.execution_id, outcome.workflow_name, outcome.input)
        ctx.journal_path = outcome.path
        ctx._settle(outcome.status, outcome.output, outcome.records, executor.value_of)
        return ctx

    async def _execute(self, store: FileStore, request: RunRequest, clock: Clock | None) -> ExecutionContext[Any]:
        executor = Executor(store, request, clock)
        ctx_box: list[ExecutionContext[Any]] = []
        outcome = await executor.run(self._body(executor, ctx_box))
        return self._context(executor, outcome, ctx_box)


async def run_child(workflow: Workflow | str, input: Any, src: str) -> Any:
    """Runs (or, on replay, continues) a sub-workflow as one task call of the running workflow."""
    from flux._engine import traps

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
        exists = os.path.exists(store.journal_path(child_id)) if isinstance(store, FileStore) else False
        request = RunRequest(
            execution_id=child_id,
            workflow_name=child_wf.name,
            code=code_of(child_wf),
            input=child_input,
            create=not exists,
            durability=parent.request.durability,
            parent={"execution_id": parent.execution_id, "call_id": call_id},
            aliases=parent.request.aliases,
        )
        executor = Executor(store, request, parent.clock)
        outcome = await executor.run(child_wf._body(executor, []))
        if outcome.status == "completed":
            return outcome.output
        if outcome.status == "failed":
            raise outcome.output
        raise ExecutionStateError(
            f"sub-workflow {child_wf.name!r} (execution {child_id}) ended {outcome.status}; "
            "pauses and cancellations inside sub-workflows are not carried to the parent"
        )

    spec = TaskSpec(child_wf.name, body, True, None, None, True)
    return await traps.call_task(spec, (input,), {}, src)


def _find_sibling(parent: Executor, name: str) -> Workflow:
    from flux.loader import workflows_in
    import sys

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
