"""The async client: start, watch, resume and cancel executions from a service or a script.

    from flux.client import Client

    async with Client(store) as client:                           # a path, a URL or a store object
        handle = await client.start(wf, input, execution_id=None)  # once the header is written
        ctx = await handle.result()                                # when it finishes or pauses
        view = await client.get(handle.execution_id)               # status, input, output, calls
        page = await client.list(status="paused", limit=50)        # newest first; page.cursor
        await client.resume(execution_id, input, pause=None)
        await client.cancel(execution_id)

Runs started or resumed here run in this process, as tasks of the running event loop; `result`
of an execution run elsewhere waits for its journal to say it finished or paused. Every sync
function of `flux` (`wf.run`, `flux.runner`) is a thin wrapper around this class, and
`asyncio.run` is called only by those wrappers and by the command line.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flux._engine.calls import Outcome, RunRequest
from flux._engine.clock import Clock, iso
from flux._engine.codec import decode, find_class
from flux._engine.errors import (
    BlobError,
    DecodeError,
    ExecutionExistsError,
    ExecutionLockedError,
    ExecutionStateError,
    InvalidOptionError,
    WorkflowLoadError,
)
from flux._engine.executor import Executor
from flux._engine.history import History
from flux._engine.journal import DURABILITY_MODES, JournalRead
from flux._engine.outputs import load_blob
from flux._engine.pauses import WaitingPause, waiting_pauses
from flux._engine.records import Status
from flux._engine.refs import OutputStorageReference
from flux._engine.store import Page, Store, open_store, read_settled, validate_execution_id
from flux.context import ExecutionContext
from flux.timeline import CallRow, error_summary, timeline

if TYPE_CHECKING:
    from flux.workflow import Workflow

__all__ = ["Client", "ExecutionHandle", "ExecutionView", "check_durability"]

log = logging.getLogger("flux")


def check_durability(durability: str | None) -> str:
    """The durability mode to use: the one given, else $FLUX_DURABILITY, else "fsync".

    Raises:
        InvalidOptionError: for a mode that does not exist.
    """
    import os

    durability = durability or os.environ.get("FLUX_DURABILITY") or "fsync"
    if durability not in DURABILITY_MODES:
        raise InvalidOptionError(f"durability={durability!r} must be one of {', '.join(DURABILITY_MODES)}")
    return durability


@dataclass(frozen=True)
class ExecutionView:
    """One execution as its journal tells it, values in their recorded form (SPEC.md 3)."""

    execution_id: str
    workflow: str
    status: str
    input: Any
    created: str
    updated: str
    records: int
    path: str
    output: Any = None  # the recorded output of a completed run
    error: dict[str, Any] | None = None  # {type, message, traceback} of a failed run
    parent: dict[str, Any] | None = None  # {execution_id, call_id} of the calling workflow
    children: dict[str, str] = field(default_factory=dict)  # call id -> sub-workflow execution id
    waiting: tuple[WaitingPause, ...] = ()
    timers: tuple[dict[str, Any], ...] = ()  # durable timers not yet fired: {call_id, wake_at}
    calls: tuple[CallRow, ...] = ()
    forked_from: dict[str, Any] | None = None
    divergence: dict[str, Any] | None = None  # what a worker found when the code no longer replayed it
    schedule: dict[str, Any] | None = None  # {name, at}: the schedule fire that started it (SPEC.md "Schedules")

    def to_json(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "workflow": self.workflow,
            "status": str(self.status),
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "created": self.created,
            "updated": self.updated,
            "records": self.records,
            "path": self.path,
            "parent": self.parent,
            "children": self.children,
            "waiting": [w.to_json() for w in self.waiting],
            "timers": list(self.timers),
            "calls": [row.as_json() for row in self.calls],
            "forked_from": self.forked_from,
            "divergence": self.divergence,
            "schedule": self.schedule,
        }


class ExecutionHandle:
    """An execution started or resumed through a `Client`."""

    def __init__(
        self, client: Client, execution_id: str, task: asyncio.Task[ExecutionContext[Any]] | None = None
    ) -> None:
        self.client = client
        self.execution_id = execution_id
        self._task = task

    def __repr__(self) -> str:
        where = "running here" if self._task is not None and not self._task.done() else "in the store"
        return f"<ExecutionHandle {self.execution_id} ({where})>"

    @property
    def local(self) -> bool:
        """This process runs the execution (the handle holds its run)."""
        return self._task is not None

    async def result(self, timeout: float | None = None) -> ExecutionContext[Any]:
        """The execution once it has finished or paused (an ExecutionContext).

        Raises:
            TimeoutError: when `timeout` seconds pass first (the execution goes on).
            EngineError subclasses: engine trouble of a run made in this process.
        """
        if self._task is not None:
            if timeout is None:
                return await asyncio.shield(self._task)
            return await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return await self.client.result(self.execution_id, timeout=timeout)


class Client:
    """Executions of one store. Use as `async with Client(store) as client:`; leaving the
    block waits for the runs it started in this process.

    Args:
        store: a directory, a store URL, a store object; None: $FLUX_STORE, else $FLUX_HOME,
            else `.flux`.
        durability: default durability of the runs it makes ("fsync" or "os").
        clock: default clock of the runs it makes (`flux.clock.VirtualClock` in tests).
    """

    def __init__(self, store: Any = None, *, durability: str | None = None, clock: Clock | None = None) -> None:
        self.store: Store = open_store(store)
        self.durability = durability
        self.clock = clock
        self._runs: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.wait()

    async def wait(self) -> None:
        """Waits for every run this client started in this process."""
        while self._runs:
            await asyncio.gather(*list(self._runs), return_exceptions=True)

    # -- starting, resuming, cancelling --------------------------------------------------------

    async def start(
        self,
        workflow: Workflow,
        input: Any = None,
        *,
        execution_id: str | None = None,
        durability: str | None = None,
        clock: Clock | None = None,
        observer: Any = None,
        run_here: bool | None = None,
    ) -> ExecutionHandle:
        """Starts a new execution; returns once its header is written (durable, with fsync durability).

        It runs here (a task of the running event loop) on a store of files or memory; on a
        store with a worker fleet (PostgreSQL) it is submitted to the fleet, and `result` reads
        it back from the store. `run_here` chooses: True runs it here, False only submits it
        (`flux exec --detach`; on files, `flux worker` runs it).

        With an `execution_id` of an existing execution nothing new is made: its handle comes
        back (and an interrupted one is continued here when it is to run here), so a start can
        be retried with the same business key.

        Raises:
            InvalidExecutionIdError, ExecutionStateError (the id names another workflow's
            execution), DurabilityError, EncodeError (an input the journal cannot hold).
        """
        from flux.loader import code_of
        from flux.options import uses_output_storage

        new_id = validate_execution_id(execution_id) if execution_id is not None else uuid.uuid4().hex
        request = RunRequest(
            execution_id=new_id,
            workflow_name=workflow.name,
            code=code_of(workflow),
            input=input,
            create=True,
            durability=check_durability(durability or self.durability),
            blob_output=uses_output_storage(workflow.options),
            output_storage=_custom_storage(workflow),
            observer=observer,
        )
        here = run_here if run_here is not None else not has_fleet(self.store)
        if execution_id is not None and self.store.exists(new_id):
            return await self._existing(workflow, new_id, durability, clock, here)
        try:
            if not here:
                return self._submit(request)
            return self._launch(workflow, request, clock)
        except ExecutionExistsError:
            return await self._existing(workflow, new_id, durability, clock, here)

    def _submit(self, request: RunRequest) -> ExecutionHandle:
        """Writes the header and hands the execution to whoever runs the store's work (SPEC.md 13.5)."""
        executor = Executor(self.store, request, self.clock)
        executor.open()
        assert executor.lease is not None
        executor.lease.close()  # unowned and created: runnable by any worker
        return ExecutionHandle(self, request.execution_id)

    async def _existing(
        self, workflow: Workflow, execution_id: str, durability: str | None, clock: Clock | None, here: bool = True
    ) -> ExecutionHandle:
        summary = self.store.summary(execution_id)
        if summary.workflow != workflow.name and summary.status != "damaged":
            raise ExecutionStateError(
                f"execution {execution_id} is of workflow {summary.workflow!r}, not {workflow.name!r}; "
                "an execution id names one execution"
            )
        if here and summary.status in (Status.INTERRUPTED, Status.CREATED) and self.store.owner(execution_id) is None:
            try:
                return await self.continue_(execution_id, workflow=workflow, durability=durability, clock=clock)
            except ExecutionLockedError:
                pass  # another process took it meanwhile: it runs there
        return ExecutionHandle(self, execution_id)

    async def continue_(
        self,
        execution_id: str,
        *,
        workflow: Workflow | None = None,
        durability: str | None = None,
        clock: Clock | None = None,
        file: str | None = None,
        module: str | None = None,
        aliases: dict[str, str] | None = None,
        observer: Any = None,
    ) -> ExecutionHandle:
        """Continues an interrupted execution here (as after a crash); a paused or finished one
        is left as it is, and its handle comes back."""
        wf, found_aliases = self._workflow_of(execution_id, workflow, file, module)
        request = RunRequest(
            execution_id=execution_id,
            workflow_name=wf.name,
            durability=check_durability(durability or self.durability),
            aliases={**found_aliases, **(aliases or {})},
            blob_output=_blob_output(wf),
            output_storage=_custom_storage(wf),
            observer=observer,
        )
        return self._launch(wf, request, clock)

    async def resume(
        self,
        execution_id: str,
        input: Any = None,
        *,
        pause: str | None = None,
        has_input: bool = True,
        workflow: Workflow | None = None,
        durability: str | None = None,
        clock: Clock | None = None,
        file: str | None = None,
        module: str | None = None,
        aliases: dict[str, str] | None = None,
        observer: Any = None,
        run_here: bool = True,
    ) -> ExecutionHandle:
        """Answers a waiting pause with `input` and runs the execution on here (an interrupted
        one is continued; a finished one comes back as it is).

        `pause` names the pause (its name or call id) when several wait; one inside a
        sub-workflow is answered through its parent. `has_input=False` continues a timed pause
        whose time has come without an input. `run_here=False` (`flux resume --detach`) only
        records the answer and leaves the run to the store's workers (an interrupted or diverged
        execution is made runnable); the workflow's code is not needed then.

        Raises:
            ExecutionStateError: several pauses wait and none was named, or none of that name.
            ExecutionLockedError, ExecutionNotFoundError, WorkflowLoadError, EngineError.
        """
        if not run_here:
            hand_off = RunRequest(
                execution_id=execution_id, resume_input=input, resume=True, resume_pause=pause,
                resume_has_input=has_input, durability=check_durability(durability or self.durability), hand_off=True,
            )
            await Executor(self.store, hand_off, self.clock).run(_never_run)
            return ExecutionHandle(self, execution_id)
        wf, found_aliases = self._workflow_of(execution_id, workflow, file, module)
        request = RunRequest(
            execution_id=execution_id,
            workflow_name=wf.name,
            resume_input=input,
            resume=True,
            resume_pause=pause,
            resume_has_input=has_input,
            durability=check_durability(durability or self.durability),
            aliases={**found_aliases, **(aliases or {})},
            blob_output=_blob_output(wf),
            output_storage=_custom_storage(wf),
            observer=observer,
        )
        return self._launch(wf, request, clock)

    async def cancel(
        self,
        execution_id: str,
        *,
        wait: float = 30.0,
        workflow: Workflow | None = None,
        file: str | None = None,
        module: str | None = None,
    ) -> str:
        """Cancels a running, paused or interrupted execution; returns the status it ended in.

        If no process runs it, it is replayed here and the cancellation is delivered where the
        journal ends (or at its waiting pauses): sagas compensate, sub-workflows are cancelled
        too, and WORKFLOW_CANCELLED is recorded. If another process runs it, that process is
        asked to cancel it, and this waits up to `wait` seconds for the journal to say so
        ("cancelling" if it has not yet).

        Raises:
            ExecutionStateError: when the execution has already finished.
        """
        validate_execution_id(execution_id)
        summary = self.store.summary(execution_id)
        if summary.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
            raise ExecutionStateError(
                f"execution {execution_id} has already {summary.status}; there is nothing to cancel"
            )
        if self.store.owner(execution_id) is None:
            try:
                wf, aliases = self._workflow_of(execution_id, workflow, file, module)
            except WorkflowLoadError:
                if not has_fleet(self.store):
                    raise
                # The code is not here: a worker that has it delivers the cancellation.
                return await self._await_cancel(execution_id, wait)
            request = RunRequest(
                execution_id=execution_id, workflow_name=wf.name, cancel=True, aliases=aliases,
                durability=check_durability(self.durability), blob_output=_blob_output(wf),
                output_storage=_custom_storage(wf),
            )
            try:
                handle = self._launch(wf, request, None)
            except ExecutionLockedError:
                pass  # it started running meanwhile: ask its process
            else:
                return str((await handle.result()).status)
        return await self._await_cancel(execution_id, wait)

    async def _await_cancel(self, execution_id: str, wait: float) -> str:
        """Asks whoever runs the execution to cancel it, and waits up to `wait` seconds."""
        self.store.request_cancel(execution_id)
        owner = self.store.owner(execution_id) or {}
        where = ", ".join(f"{k} {owner[k]}" for k in ("pid", "host") if k in owner) or "owner unknown"
        log.info(
            "execution %s runs in another process (%s); asked it to cancel, waiting up to %.3g s",
            execution_id, where, wait,
        )
        deadline = time.monotonic() + wait
        while True:
            status = self.store.summary(execution_id).status
            if status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
                return str(status)
            left = deadline - time.monotonic()
            if left <= 0:
                return "cancelling"
            await self.store.wait_for_change(execution_id, timeout=min(left, 1.0))

    def _launch(self, workflow: Workflow, request: RunRequest, clock: Clock | None) -> ExecutionHandle:
        """Opens the execution (its header durable, its lease taken) and runs it on as a task."""
        executor = Executor(self.store, request, clock or self.clock)
        opened = executor.open()
        task = asyncio.get_running_loop().create_task(workflow._drive(executor, opened))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return ExecutionHandle(self, request.execution_id, task)

    def _workflow_of(
        self, execution_id: str, workflow: Workflow | None, file: str | None, module: str | None
    ) -> tuple[Workflow, dict[str, str]]:
        from flux.loader import load_recorded

        header = self.store.header(validate_execution_id(execution_id))
        name = str(header.get("workflow", ""))
        if workflow is not None:
            if workflow.name != name:
                raise ExecutionStateError(
                    f"{self.store.describe(execution_id)}: execution {execution_id} is of workflow {name!r}, "
                    f"not {workflow.name!r}"
                )
            recorded = (header.get("code") or {}).get("module")
            loaded = workflow.fn.__module__
            return workflow, ({recorded: loaded} if isinstance(recorded, str) and recorded != loaded else {})
        return load_recorded(header.get("code") or {}, name, file, module)

    # -- reading -------------------------------------------------------------------------------

    async def result(self, execution_id: str, *, timeout: float | None = None) -> ExecutionContext[Any]:
        """The execution once its journal says it finished or paused.

        Raises:
            TimeoutError: when `timeout` seconds pass first.
        """
        validate_execution_id(execution_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ctx = self.context(execution_id)
            if ctx.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.PAUSED):
                return ctx
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"execution {execution_id} is still {ctx.status} after {timeout:g} s")
            await self.store.wait_for_change(execution_id, timeout=1.0 if left is None else min(left, 1.0))

    def context(self, execution_id: str) -> ExecutionContext[Any]:
        """The execution as its journal tells it now, as an ExecutionContext (values decoded
        with the classes loaded in this process)."""
        read, history, status = self._settled(execution_id)
        resolve = find_class

        def load(tree: Any) -> Any:
            if type(tree) is dict and "$blob" in tree:
                tree = load_blob(self.store, tree)
            return decode(tree, resolve)

        def at(seq: int, tree: Any, stored: bool = True) -> Any:
            """A value the journal holds at `seq`; one that cannot be rebuilt names the line."""
            try:
                return load(tree) if stored else decode(tree, resolve)
            except (DecodeError, BlobError) as err:
                raise type(err)(f"{read.path}:{seq + 1}: {err}") from err

        header = history.header or {}
        ctx: ExecutionContext[Any] = ExecutionContext._of(
            execution_id, str(header.get("workflow", "")), at(0, header.get("input"))
        )
        ctx.journal_path = read.path
        final = history.final
        output: Any = None
        if final is not None and final["kind"] == "workflow_completed":
            value = final["value"]
            output = (
                OutputStorageReference("local_file", str(value["$blob"]), {"size": value.get("size")})
                if type(value) is dict and "$blob" in value
                else at(final["seq"], value)
            )
        elif final is not None and final["kind"] == "workflow_failed":
            output = at(final["seq"], final["error"], stored=False)
        ctx._settle(str(status), output, read.records, load)
        return ctx

    async def get(self, execution_id: str) -> ExecutionView:
        """The execution: status, input, output or error, times, parent and children, waiting
        pauses and timers, calls.

        Raises:
            ExecutionNotFoundError, InvalidExecutionIdError, JournalCorruptError.
        """
        return self.view(execution_id)

    def view(self, execution_id: str) -> ExecutionView:
        """`get`, for code without an event loop."""
        read, history, status = self._settled(execution_id)
        records = read.records
        header = history.header or {}
        final = history.final
        output = final.get("value") if final is not None and final["kind"] == "workflow_completed" else None
        error = None
        if final is not None and final["kind"] == "workflow_failed":
            tree = final.get("error")
            error = {
                **error_summary(tree), "traceback": str((tree or {}).get("tb", "")) if isinstance(tree, dict) else ""
            }
        timers = tuple(
            {"call_id": call_id, "wake_at": iso(call.start["wake_at"])}
            for call_id, call in history.calls.items()
            if call.kind == "timer" and call.end is None
        )
        last = records[len(records) - 1]
        return ExecutionView(
            execution_id=execution_id,
            workflow=str(header.get("workflow", "")),
            status=str(status),
            input=header.get("input"),
            created=str(header.get("created", "")),
            updated=str(last.get("at") or header.get("created", "")),
            records=len(records),
            path=read.path,
            output=output,
            error=error,
            parent=header.get("parent") if isinstance(header.get("parent"), dict) else None,
            children=history.children(),
            waiting=tuple(waiting_pauses(self.store, history)) if status == Status.PAUSED else (),
            timers=timers,
            calls=tuple(timeline(history)),
            forked_from=header.get("forked_from") if isinstance(header.get("forked_from"), dict) else None,
            divergence=self.store.divergence(execution_id) if status == Status.DIVERGED else None,
            schedule=header.get("schedule") if isinstance(header.get("schedule"), dict) else None,
        )

    async def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int | None = 50,
        cursor: str | None = None,
        prefix: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        schedule: str | None = None,
    ) -> Page:
        """A page of executions, newest first; give `page.cursor` back for the next page.
        `schedule` keeps those a schedule of that name started (its fires and triggers)."""
        return self.store.list(
            status=status, workflow=workflow, limit=limit, cursor=cursor, prefix=prefix,
            created_after=created_after, created_before=created_before, schedule=schedule,
        )

    def _read(self, execution_id: str) -> tuple[JournalRead, History]:
        history = History(self.store.describe(validate_execution_id(execution_id)))
        read = self.store.read(execution_id, visit=history.apply_all)
        history.journal = read.records
        return read, history

    def _settled(self, execution_id: str) -> tuple[JournalRead, History, Status]:
        return read_settled(self.store, execution_id, lambda: self._read(execution_id))


def has_fleet(store: Store) -> bool:
    """Whether the store's executions are run by a fleet of workers (PostgreSQL)."""
    from flux._engine.stores.pg_fleet import FleetMixin

    return isinstance(store, FleetMixin)


def _custom_storage(wf: Workflow) -> Any:
    """A workflow's own OutputStorage subclass, which keeps its output (None: the journal or the
    store's files do)."""
    from flux.output_storage import InlineOutputStorage, LocalFileStorage

    storage = wf.options.get("output_storage")
    if storage in (None, True, False) or isinstance(storage, (LocalFileStorage, InlineOutputStorage)):
        return None
    return storage


def _blob_output(wf: Workflow) -> bool:
    from flux.options import uses_output_storage

    return uses_output_storage(wf.options)


def context_of(executor: Executor, outcome: Outcome, ctx: ExecutionContext[Any] | None) -> ExecutionContext[Any]:
    """The ExecutionContext a run returns: the one the workflow was handed, settled."""
    if ctx is None:
        ctx = ExecutionContext._of(outcome.execution_id, outcome.workflow_name, outcome.input)
    ctx.journal_path = outcome.path
    ctx._settle(str(outcome.status), outcome.output, outcome.records, executor.recorded_value_of)
    return ctx


async def _never_run(_: Any) -> Any:  # pragma: no cover - a hand-off runs no workflow code
    raise AssertionError("a resume left to the workers ran workflow code")
