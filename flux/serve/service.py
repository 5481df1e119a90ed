"""What the server does, behind its routes: one `Client` of one store, the served workflows, and
what it learnt by replaying (divergences). Routes parse and render; this acts.

Schedules are the store's (SPEC.md 14), read and changed through `flux.schedules`, the same
functions `flux schedule ...` calls, so every store that keeps schedules serves them alike.

Runs started or resumed here are tasks of the server's event loop (flux.client). Reading a
journal and replaying one are synchronous and run in worker threads, so that a long journal does
not stall the runs and the other requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

import anyio

from flux import schedules
from flux._engine.codec import decode
from flux._engine.errors import (
    DecodeError,
    ExecutionLockedError,
    ExecutionStateError,
    FluxError,
    NondeterminismError,
    WorkflowLoadError,
)
from flux._engine.pauses import pick_pause
from flux._engine.records import Status
from flux._engine.store import ExecutionSummary, validate_execution_id
from flux.client import Client, ExecutionHandle, check_durability
from flux.divergence import Divergence
from flux.domain.schedule import Schedule
from flux.serve.problems import BadRequest
from flux.serve.views import (
    Folded,
    call_rows,
    execution_json,
    fold_execution,
    pending_of,
    row_details,
    schedule_json,
)
from flux.workflow import Workflow

__all__ = ["Service", "status_values"]

log = logging.getLogger("flux.serve")

_RESUMABLE = {str(Status.PAUSED), str(Status.INTERRUPTED), str(Status.CREATED)}


def _decode_input(tree: Any) -> Any:
    """A value sent in its recorded form (SPEC.md 3) as the Python value it stands for; classes
    are looked up among the modules already loaded, nothing is imported."""
    return decode(tree)


class Service:
    """The served store and workflows; every route goes through one instance."""

    def __init__(self, client: Client, workflows: dict[str, Workflow]) -> None:
        self.client = client
        self.store = client.store
        self.workflows = workflows
        self.divergences: dict[str, dict[str, Any]] = {}  # execution id -> the divergence a replay or a run found
        self._details: dict[str, tuple[int, dict[str, Any]]] = {}  # execution id -> (records, row details)
        self._lock = threading.Lock()
        self._runs: dict[str, asyncio.Task[Any]] = {}  # execution id -> the watcher of its latest run here
        self._warming: asyncio.Task[Any] | None = None

    # -- workflows ------------------------------------------------------------------------------

    def workflow(self, name: str) -> Workflow:
        wf = self.workflows.get(name)
        if wf is None:
            served = ", ".join(sorted(self.workflows)) or "none"
            raise WorkflowLoadError(
                f"no workflow named {name!r} is served here (served: {served}); give its file to flux serve"
            )
        return wf

    def workflow_list(self) -> list[dict[str, Any]]:
        out = []
        for name, wf in sorted(self.workflows.items()):
            doc = (wf.fn.__doc__ or "").strip().splitlines()
            out.append(
                {"name": name, "module": wf.fn.__module__, "qualname": wf.fn.__qualname__, "doc": doc[0] if doc else ""}
            )
        return out

    # -- reading ----------------------------------------------------------------------------------

    async def folded(self, execution_id: str) -> Folded:
        validate_execution_id(execution_id)
        return await anyio.to_thread.run_sync(fold_execution, self.store, execution_id)

    async def execution(self, execution_id: str, calls: bool = False) -> dict[str, Any]:
        """GET /executions/{id}: the execution, with its calls (the `flux show` rows) if asked."""
        validate_execution_id(execution_id)
        return await anyio.to_thread.run_sync(self._execution, execution_id, calls)

    def _execution(self, execution_id: str, calls: bool) -> dict[str, Any]:
        folded = fold_execution(self.store, execution_id, keep=calls)
        data = execution_json(folded, self.store)
        data["call_count"] = len(folded.history.calls)
        if calls:
            data["calls"] = call_rows(folded.history)
        details = row_details(folded)
        data["duration_ms"] = details["duration_ms"]
        data["pending"] = pending_of(folded)
        data["owner"] = self._owner(execution_id)
        data["divergence"] = self.divergences.get(execution_id)
        data["diverged"] = execution_id in self.divergences
        return data

    def _owner(self, execution_id: str) -> dict[str, Any] | None:
        owner = self.store.owner(execution_id)
        return None if owner is None else {k: v for k, v in owner.items() if k in ("pid", "host", "since")}

    async def calls(self, execution_id: str, outcome: str | None = None) -> list[dict[str, Any]]:
        validate_execution_id(execution_id)
        rows = await anyio.to_thread.run_sync(
            lambda: call_rows(fold_execution(self.store, execution_id, keep=True).history)
        )
        if outcome is not None:
            rows = [row for row in rows if row["outcome"] == outcome]
        return rows

    async def page(self, **filters: Any) -> dict[str, Any]:
        """A page of executions, newest first, each with its row details."""
        return await anyio.to_thread.run_sync(lambda: self._page(filters))

    def _page(self, filters: dict[str, Any]) -> dict[str, Any]:
        page = self.store.list(**filters)
        return {"items": [self._row(item) for item in page.items], "cursor": page.cursor}

    def _row(self, summary: ExecutionSummary) -> dict[str, Any]:
        row = summary.to_json()
        row["diverged"] = summary.execution_id in self.divergences
        if summary.status == "damaged":
            return row
        with self._lock:
            cached = self._details.get(summary.execution_id)
        if cached is not None and cached[0] == summary.records:
            details = cached[1]
        else:
            try:
                folded = fold_execution(self.store, summary.execution_id)
            except FluxError:
                return row  # changed or removed since it was listed: shown as listed
            details = row_details(folded)
            with self._lock:
                self._details[summary.execution_id] = (len(folded.read.records), details)
        row.update(details)
        return row

    # -- acting -----------------------------------------------------------------------------------

    async def start(
        self, name: str, input_tree: Any, execution_id: str | None, wait: float | None
    ) -> tuple[dict[str, Any], bool]:
        """Starts an execution (an existing `execution_id` gives back that execution); returns it
        and whether this call made it."""
        wf = self.workflow(name)
        value = _decode_input(input_tree)
        existed = execution_id is not None and self.store.exists(validate_execution_id(execution_id))
        # The server runs what it starts, on a PostgreSQL store too (where the fleet takes a run
        # over only if the server dies, SPEC.md 13.5).
        handle = await self.client.start(wf, value, execution_id=execution_id, run_here=True)
        self.watch(handle)
        await self._wait(handle, wait)
        return await self.execution(handle.execution_id), not existed

    async def resume(
        self,
        execution_id: str,
        input_tree: Any,
        has_input: bool,
        pause: str | None,
        wait: float | None,
        detach: bool = False,
    ) -> dict[str, Any]:
        summary = await anyio.to_thread.run_sync(self.store.summary, validate_execution_id(execution_id))
        owner = self._owner(execution_id) if str(summary.status) == str(Status.RUNNING) else None
        if owner is not None:
            raise ExecutionLockedError(execution_id, owner)
        if detach and str(summary.status) in _RESUMABLE | {"diverged"}:
            # Only the answer is recorded here; whoever runs the store's work runs it (SPEC.md 13.5).
            await self.client.resume(
                execution_id, _decode_input(input_tree), pause=pause, has_input=has_input, run_here=False
            )
            return await self.execution(execution_id)
        if str(summary.status) not in _RESUMABLE:
            raise ExecutionStateError(
                f"execution {execution_id} is {summary.status}; only a paused or interrupted execution can be resumed"
            )
        if str(summary.status) == str(Status.PAUSED):
            # The run would find the same, but only once it runs: tell the caller now.
            view = await anyio.to_thread.run_sync(self.client.view, execution_id)
            pick_pause(list(view.waiting), pause, execution_id)
        handle = await self.client.resume(execution_id, _decode_input(input_tree), pause=pause, has_input=has_input)
        self.watch(handle)
        await self._wait(handle, wait)
        return await self.execution(execution_id)

    async def cancel(self, execution_id: str, wait: float) -> dict[str, Any]:
        validate_execution_id(execution_id)
        await self.client.cancel(execution_id, wait=wait)
        return await self.execution(execution_id)

    async def fork(
        self,
        execution_id: str,
        at: int,
        set_result: tuple[int, Any] | None,
        input_tree: Any,
        has_input: bool,
        run: bool,
        wait: float | None,
    ) -> dict[str, Any]:
        from flux.journals import fork_execution

        validate_execution_id(execution_id)
        replaced = None if set_result is None else (set_result[0], _decode_input(set_result[1]))
        try:
            made = await anyio.to_thread.run_sync(
                lambda: fork_execution(
                    execution_id, at, set_result=replaced, store=self.store, durability=self.client.durability
                )
            )
        except ValueError as err:
            if isinstance(err, FluxError):
                raise
            raise BadRequest(str(err).replace("--set-result", "set_result").replace("--at", "at")) from None
        if run:
            if has_input:
                handle = await self.client.resume(made.execution_id, _decode_input(input_tree))
            else:
                handle = await self.client.continue_(made.execution_id)
            self.watch(handle)
            await self._wait(handle, wait)
        return await self.execution(made.execution_id)

    async def replay(self, execution_id: str, calls: bool) -> dict[str, Any]:
        """Replays the journal against the code this server loaded; remembers a divergence."""
        from flux.debug import replay

        validate_execution_id(execution_id)
        result = await anyio.to_thread.run_sync(lambda: replay(execution_id, store=self.store, calls=calls))
        data = result.as_json()
        if result.divergence is not None:
            self.divergences[execution_id] = result.divergence.as_json()
        else:
            self.divergences.pop(execution_id, None)
        return data

    async def diff(self, a: str, b: str) -> dict[str, Any]:
        from flux.journals import diff_journals

        validate_execution_id(a)
        validate_execution_id(b)
        found = await anyio.to_thread.run_sync(lambda: diff_journals(a, b, store=self.store))
        return found.as_json()

    # -- schedules --------------------------------------------------------------------------------

    async def schedules(self, fires: int) -> list[dict[str, Any]]:
        """Every schedule of the store, by name, each with its next `fires` fire times."""
        return await anyio.to_thread.run_sync(
            lambda: [schedule_json(state, self.store, fires) for state in schedules.list_schedules(self.store)]
        )

    async def schedule(self, name: str, fires: int) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(
            lambda: schedule_json(schedules.get_schedule(self.store, name), self.store, fires)
        )

    async def create_schedule(
        self, name: str, workflow: str, schedule: Schedule, input_tree: Any, paused: bool, fires: int
    ) -> dict[str, Any]:
        """Stores a new schedule, as `flux schedule create` does (a worker that loads `workflow`
        fires it)."""
        try:
            value = _decode_input(input_tree)
        except DecodeError as err:
            raise DecodeError(f"input: {err}") from None

        def create() -> dict[str, Any]:
            state = schedules.create_schedule(
                self.store, name, workflow, schedule, value, paused=paused, clock=self.client.clock
            )
            return schedule_json(state, self.store, fires)

        return await anyio.to_thread.run_sync(create)

    async def pause_schedule(self, name: str, fires: int) -> dict[str, Any]:
        """Pauses it (a paused schedule stays paused: pausing again changes nothing)."""
        return await anyio.to_thread.run_sync(
            lambda: schedule_json(schedules.pause_schedule(self.store, name), self.store, fires)
        )

    async def resume_schedule(self, name: str, fires: int) -> dict[str, Any]:
        """Resumes it from the first fire after now (resuming one not paused changes nothing)."""
        return await anyio.to_thread.run_sync(
            lambda: schedule_json(
                schedules.resume_schedule(self.store, name, clock=self.client.clock), self.store, fires
            )
        )

    async def delete_schedule(self, name: str) -> None:
        await anyio.to_thread.run_sync(schedules.delete_schedule, self.store, name)

    async def trigger_schedule(self, name: str, wait: float | None) -> dict[str, Any]:
        """Starts one execution of the schedule now, as `flux schedule trigger` does (its id ends
        in `-now`, its header records the schedule), and runs it here as the server runs what it
        starts; a worker that took it first runs it there. Returns the execution."""
        state = await anyio.to_thread.run_sync(schedules.get_schedule, self.store, name)
        wf = self.workflow(str(state["workflow"]))  # its code goes into the header: it must be served
        execution_id = await anyio.to_thread.run_sync(
            lambda: schedules.trigger_schedule(
                self.store, name, [wf], clock=self.client.clock, durability=check_durability(self.client.durability)
            )
        )
        try:
            handle = await self.client.continue_(execution_id, workflow=wf)
        except ExecutionLockedError:
            pass  # a worker took it meanwhile: it runs there
        else:
            self.watch(handle)
            await self._wait(handle, wait)
        return await self.execution(execution_id)

    # -- runs of this process -----------------------------------------------------------------------

    def watch(self, handle: ExecutionHandle) -> asyncio.Task[Any] | None:
        """Follows a run made here to its end, so that its engine trouble is logged (and a
        divergence remembered) rather than lost in a task nobody awaits. Returns the task that
        ends with the run (None for an execution run elsewhere)."""
        if not handle.local:
            return None
        execution_id = handle.execution_id
        task = asyncio.get_running_loop().create_task(self._follow(handle))
        self._runs[execution_id] = task

        def forget(done: asyncio.Task[Any]) -> None:
            if self._runs.get(execution_id) is done:
                del self._runs[execution_id]

        task.add_done_callback(forget)
        return task

    def stopped(self, execution_id: str) -> bool:
        """Nothing runs the execution any more: its run here has ended, or (for one run
        elsewhere) no process owns it."""
        task = self._runs.get(execution_id)
        if task is not None:
            return task.done()
        return self.store.owner(execution_id) is None

    async def _follow(self, handle: ExecutionHandle) -> None:
        try:
            await handle.result()
            self.divergences.pop(handle.execution_id, None)  # the code replayed its journal after all
        except NondeterminismError as err:
            self.divergences[handle.execution_id] = Divergence.of(err).as_json()
            log.warning("execution %s diverged: %s", handle.execution_id, err)
        except FluxError as err:
            log.warning("execution %s stopped: %s: %s", handle.execution_id, type(err).__name__, err)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a run's own failure is recorded; this is anything else
            log.error("execution %s: %s: %s", handle.execution_id, type(err).__name__, err)

    async def result(self, execution_id: str) -> None:
        """Waits until the execution has finished or paused, or its run here has stopped."""
        task = self._runs.get(execution_id)
        if task is not None:
            await asyncio.shield(task)
            return
        await self.client.result(execution_id)

    async def _wait(self, handle: ExecutionHandle, wait: float | None) -> None:
        """Waits up to `wait` seconds for the run to finish or pause; engine trouble of the run is
        raised (a divergence found while resuming, a failed write)."""
        if not wait:
            await asyncio.sleep(0)  # let the run take its first steps
            return
        try:
            await handle.result(timeout=wait)
        except TimeoutError:
            pass

    def warm(self) -> None:
        """Lists the store once in the background when the server starts, so that the first
        page a person asks for does not wait for every header to be read (file store)."""
        self._warming = asyncio.get_running_loop().create_task(anyio.to_thread.run_sync(self._warm))

    def _warm(self) -> None:
        try:
            self.store.list(limit=1)
        except FluxError as err:
            log.warning("listing the store failed: %s: %s", type(err).__name__, err)

    async def close(self) -> None:
        for task in list(self._runs.values()):
            task.cancel()


def status_values(status: str | Sequence[str] | None) -> list[str] | None:
    """`status=a,b` or repeated `status=` parameters as one list."""
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    out = [part.strip() for item in items for part in item.split(",") if part.strip()]
    return out or None
