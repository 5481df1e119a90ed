"""`ExecutionContext`: what a workflow receives, and what a run returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from flux.domain.events import ExecutionEvent, events_from_records

__all__ = ["ExecutionContext"]

T = TypeVar("T")


class ExecutionContext(Generic[T]):
    """The state of one execution.

    Inside a running workflow it carries the execution id, name and input; the context a run
    returns also carries the status, the output (the result, or the exception of a failed run)
    and the events read from the journal.
    """

    def __init__(self, execution_id: str, name: str, input: T, *, journal_path: str = "") -> None:
        self._execution_id = execution_id
        self._name = name
        self._input = input
        self._status = "running"
        self._output: Any = None
        self._records: Sequence[dict[str, Any]] = []
        self._events: list[ExecutionEvent] | None = None
        self._resolve: Any = None
        self.journal_path = journal_path

    def _settle(self, status: str, output: Any, records: Sequence[dict[str, Any]], resolve: Any) -> None:
        self._status = status
        self._output = output
        self._records = records
        self._events = None
        self._resolve = resolve

    @property
    def execution_id(self) -> str:
        return self._execution_id

    @property
    def name(self) -> str:
        return self._name

    @property
    def input(self) -> T:
        return self._input

    @property
    def status(self) -> str:
        """One of running, paused, completed, failed, cancelled."""
        return self._status

    @property
    def events(self) -> list[ExecutionEvent]:
        if self._events is None:
            self._events = events_from_records(self._records, self._resolve) if self._records else []
        return self._events

    @property
    def has_finished(self) -> bool:
        return self._status in ("completed", "failed", "cancelled")

    @property
    def has_succeeded(self) -> bool:
        return self._status == "completed"

    @property
    def has_failed(self) -> bool:
        return self._status == "failed"

    @property
    def is_cancelled(self) -> bool:
        return self._status == "cancelled"

    @property
    def is_paused(self) -> bool:
        return self._status == "paused"

    @property
    def output(self) -> Any:
        return self._output

    def patched(self, change_id: str) -> bool:
        """True when this execution should take the new code path of change `change_id`.

        New executions (and executions that reach this point after the change was deployed)
        get True, and a marker in the journal keeps it so on every replay. Executions recorded
        before the change replay the old path (False). See SPEC.md "Versioning" for the life
        cycle: introduce, wait for old executions to finish, remove.
        """
        from flux._engine import traps

        return traps.patched(change_id)

    def __repr__(self) -> str:
        return f"ExecutionContext(execution_id={self._execution_id!r}, name={self._name!r}, status={self._status!r})"
