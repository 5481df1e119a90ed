"""`flux recover`: continues every interrupted execution of a store, safely beside other processes.

An execution is interrupted when its journal says it is running (or only created) and no process
holds its lock: the process that ran it died. Paused and finished executions are left alone, and
so is any execution another process owns; two `flux recover` at once never run one execution
twice, because each resume takes the execution's lock first (SPEC.md 5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flux._engine.errors import ExecutionLockedError, FluxError
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
    process owned it, or `error` when it could not be resumed (`error` says why).
    """

    execution_id: str
    workflow: str
    status: str
    context: ExecutionContext[Any] | None = None
    error: BaseException | None = None


def recover_store(
    store: Any = None, *, durability: str | None = None, file: str | None = None, module: str | None = None
) -> list[Recovered]:
    """Resumes every interrupted execution in a store, one after another.

    `file` or `module` is the workflows' code when it is no longer where the journals recorded
    it (moved, redeployed); code loaded in this process is found by workflow name anyway.

    Returns:
        One `Recovered` per execution that was interrupted when the store was scanned, oldest id
        first. Executions that are paused, finished or owned by a live process are not resumed.
    """
    return run_sync(_recover(store, durability, file, module))


async def _recover(store: Any, durability: str | None, file: str | None, module: str | None) -> list[Recovered]:
    client = Client(store, durability=durability)
    out: list[Recovered] = []
    for execution_id in client.store.list_ids():
        summary = client.store.summary(execution_id)
        if summary.status == "damaged":
            try:
                client.store.read(execution_id)
            except FluxError as err:  # the damage, with its path:line
                out.append(Recovered(execution_id, "?", "error", error=err))
            continue
        if summary.status not in (Status.INTERRUPTED, Status.CREATED, Status.RUNNING):
            continue
        if client.store.owner(execution_id) is not None:
            out.append(Recovered(execution_id, summary.workflow, "locked"))
            continue
        try:
            # Not a resume: if another process ran the execution up to a pause after the scan,
            # it must stay paused; only a user's input may continue it.
            handle = await client.continue_(execution_id, file=file, module=module)
            ctx = await handle.result()
        except ExecutionLockedError:
            out.append(Recovered(execution_id, summary.workflow, "locked"))
        except FluxError as err:
            out.append(Recovered(execution_id, summary.workflow, "error", error=err))
        else:
            log.info("recovered execution %s of workflow %r: %s", execution_id, summary.workflow, ctx.status)
            out.append(Recovered(execution_id, summary.workflow, str(ctx.status), context=ctx))
    return out

