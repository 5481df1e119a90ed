"""`flux recover`: continues every interrupted execution of a store, safely beside other processes.

An execution is interrupted when its journal says it is running (or only created) and no process
holds its lock: the process that ran it died. Paused and finished executions are left alone, and
so is any execution another process owns; two `flux recover` at once never run one execution
twice, because each resume takes the execution's lock first (SPEC.md 5).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from flux._engine.errors import ExecutionLockedError, FluxError, JournalCorruptError
from flux._engine.records import status_of
from flux._engine.store import FileStore
from flux.context import ExecutionContext
from flux.loader import load_recorded
from flux.workflow import default_home

__all__ = ["Recovered", "recover_store"]

_INTERRUPTED = ("running", "created")


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


def recover_store(home: str | None = None, *, durability: str | None = None) -> list[Recovered]:
    """Resumes every interrupted execution in a store, one after another.

    Returns:
        One `Recovered` per execution that was interrupted when the store was scanned, oldest id
        first. Executions that are paused, finished or owned by a live process are not resumed.
    """
    store = FileStore(default_home(home))
    out: list[Recovered] = []
    for execution_id in store.list_ids():
        try:
            records = store.read(execution_id).records
        except (JournalCorruptError, OSError) as err:  # OSError: a symbolic link, never followed
            out.append(Recovered(execution_id, "?", "error", error=err))
            continue
        if status_of(records) not in _INTERRUPTED:
            continue
        workflow_name = records[0].get("workflow", "")
        if store.is_locked(execution_id):
            out.append(Recovered(execution_id, workflow_name, "locked"))
            continue
        try:
            ctx = _continue(store, execution_id, records[0], durability)
        except ExecutionLockedError:
            out.append(Recovered(execution_id, workflow_name, "locked"))
        except FluxError as err:
            out.append(Recovered(execution_id, workflow_name, "error", error=err))
        else:
            out.append(Recovered(execution_id, workflow_name, ctx.status, context=ctx))
    return out


def _continue(store: FileStore, execution_id: str, header: dict[str, Any], durability: str | None) -> ExecutionContext[Any]:
    wf, aliases = load_recorded(header.get("code") or {}, header.get("workflow", ""))
    # Not `resume=True`: if another process ran the execution up to a pause after the scan, it
    # must stay paused; only a user's input may continue it.
    return asyncio.run(
        wf.run_async(execution_id=execution_id, home=store.home, durability=durability, aliases=aliases)
    )
