"""The pauses an execution waits at, its own and those of its sub-workflows, and which of them a
resume answers (SPEC.md 4.2, 4.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flux._engine.clock import iso
from flux._engine.errors import ExecutionNotFoundError, ExecutionStateError, JournalCorruptError
from flux._engine.history import History
from flux._engine.records import Status
from flux._engine.store import Store

__all__ = ["WaitingPause", "pick_pause", "waiting_pauses"]


@dataclass(frozen=True)
class WaitingPause:
    """A pause that waits for an answer: in this execution, or in one of its sub-workflows.

    `route` is the call ids from this execution down to the pause: one for a pause of its own,
    `(call of the sub-workflow, ..., pause)` for one inside a sub-workflow.
    """

    route: tuple[str, ...]
    name: str
    execution_id: str  # the execution whose journal holds the pause
    wake_at: float | None = None
    on_complete: str | None = None  # an execution whose end lets the pause go on without input

    @property
    def call_id(self) -> str:
        return ".".join(self.route) if len(self.route) == 1 else "/".join(self.route)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "call_id": self.call_id, "execution_id": self.execution_id}
        if self.wake_at is not None:
            out["wake_at"] = iso(self.wake_at)
        if self.on_complete is not None:
            out["on_complete"] = self.on_complete
        return out


def waiting_pauses(store: Store, history: History, route: tuple[str, ...] = ()) -> list[WaitingPause]:
    """Every pause that waits in an execution (its history) and, through its open sub-workflow
    calls, in its sub-workflows that are paused."""
    execution_id = str((history.header or {}).get("execution_id", ""))
    out = [
        WaitingPause(
            route + (call_id,), call.name, execution_id, call.start.get("wake_at"), call.start.get("on_complete")
        )
        for call_id, call in history.waiting.items()
    ]
    for call_id, call in history.calls.items():
        if call.rare is None or call.child is None or call.end is not None or call.cancelled is not None:
            continue
        child = History(store.describe(call.child))
        try:
            read = store.read(call.child, visit=child.apply_all)
        except (ExecutionNotFoundError, JournalCorruptError):
            continue
        child.journal = read.records
        if child.status == Status.PAUSED:
            out += waiting_pauses(store, child, route + (call_id,))
    return out


def pick_pause(waiting: list[WaitingPause], which: str | tuple[str, ...] | None, execution_id: str) -> WaitingPause:
    """The waiting pause that a resume answers: the one named (by name, call id or route), or
    the only one.

    Raises:
        ExecutionStateError: when none waits, the name matches none or several, or several
            wait and none was named.
    """
    if not waiting:
        raise ExecutionStateError(f"execution {execution_id} waits at no pause")
    listed = ", ".join(f"{w.name!r} (call {w.call_id})" for w in waiting)
    if which is None:
        if len(waiting) == 1:
            return waiting[0]
        raise ExecutionStateError(
            f"execution {execution_id} waits at {len(waiting)} pauses: {listed}; name the one to answer "
            "with pause=NAME"
        )
    if isinstance(which, tuple):
        found = [w for w in waiting if w.route == which]
    else:
        found = [w for w in waiting if which in (w.call_id, w.name)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ExecutionStateError(f"execution {execution_id} waits at no pause {which!r}; it waits at {listed}")
    raise ExecutionStateError(
        f"execution {execution_id} waits at {len(found)} pauses named {which!r}: {listed}; name one by its call id"
    )


