"""`progress`: a task reports how far it got, to whoever watches the run. Never recorded."""

from __future__ import annotations

from typing import Any

from flux._engine import traps

__all__ = ["progress"]


async def progress(value: Any) -> None:
    """Reports progress from inside a running task: a `TASK_PROGRESS` event (source: the task's
    call id, name: the task's name, value: `value`) goes to the run's progress callback
    (`ExecutionContext.set_progress_callback`) and to the run's observer (`progress(event)`).

    Progress is not recorded in the journal and not replayed: it is absent from
    `ExecutionContext.events`, and nothing is reported while a call's recorded outcome is
    replayed (its body does not run). Outside a task it does nothing.
    """
    branch = traps.current_branch()
    if branch is None or branch.call_id is None:
        return
    await branch.executor.report_progress(branch.call_id, value)
