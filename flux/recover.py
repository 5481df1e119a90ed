"""`flux recover`: continues every interrupted execution of a store, safely beside other processes.

An execution is interrupted when its journal says it is running (or only created) and no process
holds its lock: the process that ran it died. Paused and finished executions are left alone, and
so is any execution another process owns; two `flux recover` at once never run one execution
twice, because each resume takes the execution's lock first (SPEC.md 5).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from flux._engine.clock import Clock, SystemClock
from flux._engine.errors import ExecutionLockedError, FluxError, InvalidOptionError
from flux._engine.records import Status
from flux.client import Client
from flux.context import ExecutionContext
from flux.workflow import run_sync

__all__ = ["Recovered", "recover_store"]

log = logging.getLogger("flux")


@dataclass
class Recovered:
    """What `recover_store` did with one execution.

    `status` is where the run left it (completed, failed, paused), or `locked` when another
    process owned it, or `waiting` when it waits on a durable timer or backoff not due yet
    (`wake_at`), or `error` when it could not be resumed (`error` says why).
    """

    execution_id: str
    workflow: str
    status: str
    context: ExecutionContext[Any] | None = None
    error: BaseException | None = None
    wake_at: float | None = None  # for `waiting`: when its first durable wait is due


def recover_store(
    store: Any = None,
    *,
    durability: str | None = None,
    file: str | None = None,
    module: str | None = None,
    concurrency: int = 8,
    clock: Clock | None = None,
) -> list[Recovered]:
    """Resumes every interrupted execution in a store, up to `concurrency` at a time.

    `file` or `module` is the workflows' code when it is no longer where the journals recorded
    it (moved, redeployed); code loaded in this process is found by workflow name anyway. An
    execution whose every unfinished call waits on a durable timer or a retry's backoff that is
    not due yet is left for later (`waiting`), so that no wait holds up the rest.

    Returns:
        One `Recovered` per execution that was interrupted when the store was scanned, by
        execution id. Executions that are paused, finished or owned by a live process are not
        resumed.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidOptionError(f"concurrency={concurrency!r} must be an int >= 1")
    return run_sync(_recover(store, durability, file, module, concurrency, clock or SystemClock()))


async def _recover(
    store: Any, durability: str | None, file: str | None, module: str | None, concurrency: int, clock: Clock
) -> list[Recovered]:
    client = Client(store, durability=durability, clock=clock)
    limit = asyncio.Semaphore(concurrency)
    rows: dict[str, Recovered] = {}

    async def one(execution_id: str, workflow: str) -> None:
        async with limit:
            try:
                # Not a resume: if another process ran the execution up to a pause after the
                # scan, it must stay paused; only a user's input may continue it.
                handle = await client.continue_(execution_id, file=file, module=module)
                ctx = await handle.result()
            except ExecutionLockedError:
                rows[execution_id] = Recovered(execution_id, workflow, "locked")
            except FluxError as err:
                rows[execution_id] = Recovered(execution_id, workflow, "error", error=err)
            else:
                log.info("recovered execution %s of workflow %r: %s", execution_id, workflow, ctx.status)
                rows[execution_id] = Recovered(execution_id, workflow, str(ctx.status), context=ctx)

    runs = []
    for execution_id in client.store.list_ids():
        summary = client.store.summary(execution_id)
        if summary.status == "damaged":
            try:
                client.view(execution_id)
            except FluxError as err:  # the damage, with its path:line
                rows[execution_id] = Recovered(execution_id, "?", "error", error=err)
            continue
        if summary.status not in (Status.INTERRUPTED, Status.CREATED, Status.RUNNING):
            continue
        if client.store.owner(execution_id) is not None:
            rows[execution_id] = Recovered(execution_id, summary.workflow, "locked")
            continue
        due = _due_at(client, execution_id, clock.now())
        if due is not None:
            rows[execution_id] = Recovered(execution_id, summary.workflow, "waiting", wake_at=due)
            continue
        runs.append(one(execution_id, summary.workflow))
    await asyncio.gather(*runs)
    return [rows[execution_id] for execution_id in sorted(rows)]


def _due_at(client: Client, execution_id: str, now: float) -> float | None:
    """When an interrupted execution can next go on, if every call it left unfinished waits on
    a durable timer or a retry's backoff that is not due yet; None when something can go on now."""
    _, history = client._read(execution_id)
    waits: list[float] = []
    for call in history.calls.values():
        if call.end is not None or call.cancelled is not None or call.kind in ("value", "pause"):
            continue
        if call.kind == "timer":
            waits.append(float(call.start["wake_at"]))
            continue
        failures = call.failures or []
        retry_at = failures[-1].get("retry_at") if failures else None
        if retry_at is None or len(failures) in (call.retries or set()):
            return None  # a body that was running: it runs again now
        waits.append(float(retry_at))
    if not waits or min(waits) <= now:
        return None
    return min(waits)
