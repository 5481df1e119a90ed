"""What a journal says about each call id, built once before the workflow code is replayed.

Each record kind has one `_apply_<kind>` method (SPEC.md, section "Records"). Adding a kind means
a constant in engine/records.py, an `_apply_` method here, the executor code that writes it, and
a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import JournalCorruptError

__all__ = ["RecordedCall", "ReplayIndex"]


@dataclass(eq=False, slots=True)
class RecordedCall:
    """One call id in the journal: how it started and, if recorded, how it ended."""

    kind: str  # "task", "pause", "value" or "timer"
    start: dict[str, Any]
    outcome: dict[str, Any] | None = None  # task_completed / task_failed record
    resumed: dict[str, Any] | None = None  # for a pause: the workflow_resumed record
    failures: list[dict[str, Any]] | None = None  # attempt_failed records, in attempt order
    retries: set[int] | None = None  # attempts whose retry_started was recorded
    handlers: dict[str, dict[str, Any]] | None = None  # fallback_/rollback_ records by kind
    cancelled: dict[str, Any] | None = None  # task_cancelled: the workflow cancelled it here

    def handler(self, kind: str) -> dict[str, Any] | None:
        return None if self.handlers is None else self.handlers.get(kind)

    @property
    def name(self) -> str:
        return self.start["name"]

    @property
    def seq(self) -> int:
        return self.start["seq"]


class ReplayIndex:
    """Call ids to recorded calls, plus the execution's pending pause and final record."""

    def __init__(self, path: str, offsets: list[int] | None = None) -> None:
        self.path = path
        self.offsets = offsets
        self.calls: dict[str, RecordedCall] = {}
        self.pending_pause: str | None = None
        self.final: dict[str, Any] | None = None
        self.markers: set[str] = set()  # change ids of `patched` markers
        self.cancel_requested = False  # a cancellation began and has not finished unwinding

    def apply_all(self, records: list[dict[str, Any]]) -> None:
        # The two commonest kinds are indexed inline when well formed; anything else, or
        # anything doubtful, goes through its `_apply_` method, which checks and explains.
        calls = self.calls
        apply = self.apply
        for record in records:
            kind = record["kind"]
            if kind == "task_started":
                call_id = record.get("call_id")
                if type(call_id) is str and call_id not in calls and type(record.get("name")) is str:
                    calls[call_id] = RecordedCall("task", record)
                    continue
            elif kind == "task_completed":
                call = calls.get(record.get("call_id"))  # type: ignore[arg-type]
                if call is not None and call.kind == "task" and call.outcome is None and "value" in record:
                    call.outcome = record
                    continue
            apply(record)

    def apply(self, record: dict[str, Any]) -> None:
        method = getattr(self, "_apply_" + record["kind"], None)
        if method is None:
            self._corrupt(record, f"unknown record kind {record['kind']!r} (written by a newer Flux?)")
        method(record)

    def _corrupt(self, record: dict[str, Any], problem: str) -> None:
        seq = record.get("seq", 0)
        offset = self.offsets[seq] if self.offsets and seq < len(self.offsets) else -1
        raise JournalCorruptError(self.path, seq + 1, offset, problem)

    def _call_id(self, record: dict[str, Any]) -> str:
        call_id = record.get("call_id")
        if type(call_id) is not str:
            self._corrupt(record, "record has no call_id")
        return call_id  # type: ignore[return-value]

    def _ended(self, record: dict[str, Any]) -> None:
        call = self.calls.get(self._call_id(record))
        if call is None or call.kind != "task":
            self._corrupt(record, f"{record['kind']} for call {record.get('call_id')!r}, which never started")
        elif call.outcome is not None:
            self._corrupt(record, f"call {record['call_id']!r} already ended at line {call.outcome['seq'] + 1}")
        else:
            call.outcome = record

    def _apply_header(self, record: dict[str, Any]) -> None:
        if record["seq"] != 0:
            self._corrupt(record, "a second header")

    def _apply_workflow_started(self, record: dict[str, Any]) -> None:
        pass

    def _apply_task_started(self, record: dict[str, Any]) -> None:
        call_id = self._call_id(record)
        if call_id in self.calls:
            self._corrupt(record, f"call {call_id!r} started twice")
        if type(record.get("name")) is not str:
            self._corrupt(record, "task_started without a name")
        self.calls[call_id] = RecordedCall("task", record)

    def _apply_task_completed(self, record: dict[str, Any]) -> None:
        if "value" not in record:
            self._corrupt(record, "task_completed without a value")
        self._ended(record)

    def _apply_task_failed(self, record: dict[str, Any]) -> None:
        if "error" not in record:
            self._corrupt(record, "task_failed without an error")
        self._ended(record)

    def _open_task(self, record: dict[str, Any]) -> RecordedCall:
        call = self.calls.get(self._call_id(record))
        if call is None or call.kind != "task":
            self._corrupt(record, f"{record['kind']} for call {record.get('call_id')!r}, which never started")
        if call.outcome is not None:  # type: ignore[union-attr]
            self._corrupt(record, f"{record['kind']} for call {record['call_id']!r}, which already ended")
        return call  # type: ignore[return-value]

    def _apply_attempt_failed(self, record: dict[str, Any]) -> None:
        call = self._open_task(record)
        failures = call.failures if call.failures is not None else []
        if record.get("attempt") != len(failures) or "error" not in record:
            self._corrupt(record, f"attempt_failed out of order for call {record['call_id']!r}")
        failures.append(record)
        call.failures = failures

    def _apply_retry_started(self, record: dict[str, Any]) -> None:
        call = self._open_task(record)
        attempt = record.get("attempt")
        if type(attempt) is not int or attempt < 1 or attempt != len(call.failures or ()):
            self._corrupt(record, f"retry_started out of order for call {record['call_id']!r}")
        call.retries = (call.retries or set()) | {attempt}  # type: ignore[operator]

    def _apply_handler(self, record: dict[str, Any]) -> None:
        call = self._open_task(record)
        handlers = call.handlers if call.handlers is not None else {}
        if record["kind"] in handlers:
            self._corrupt(record, f"{record['kind']} recorded twice for call {record['call_id']!r}")
        handlers[record["kind"]] = record
        call.handlers = handlers

    _apply_fallback_started = _apply_handler
    _apply_fallback_failed = _apply_handler
    _apply_rollback_started = _apply_handler
    _apply_rollback_completed = _apply_handler
    _apply_rollback_failed = _apply_handler

    def _apply_workflow_paused(self, record: dict[str, Any]) -> None:
        call_id = self._call_id(record)
        if call_id in self.calls:
            self._corrupt(record, f"call {call_id!r} recorded twice")
        self.calls[call_id] = RecordedCall("pause", record)
        self.pending_pause = call_id

    def _apply_workflow_resumed(self, record: dict[str, Any]) -> None:
        call_id = record.get("call_id")
        if call_id is None:
            return
        call = self.calls.get(call_id)
        if call is None or call.kind != "pause" or call.resumed is not None:
            self._corrupt(record, f"resumes call {call_id!r}, which is not a waiting pause")
        else:
            call.resumed = record
            self.pending_pause = None

    def _apply_task_cancelled(self, record: dict[str, Any]) -> None:
        self._open_task(record).cancelled = record

    def _new_call(self, kind: str, record: dict[str, Any]) -> None:
        call_id = self._call_id(record)
        if call_id in self.calls:
            self._corrupt(record, f"call {call_id!r} recorded twice")
        self.calls[call_id] = RecordedCall(kind, record)

    def _apply_value_recorded(self, record: dict[str, Any]) -> None:
        if "value" not in record or type(record.get("name")) is not str:
            self._corrupt(record, "value_recorded without a name or a value")
        self._new_call("value", record)

    def _apply_timer_started(self, record: dict[str, Any]) -> None:
        if not isinstance(record.get("wake_at"), (int, float)):
            self._corrupt(record, "timer_started without a wake_at time")
        self._new_call("timer", record)

    def _apply_timer_fired(self, record: dict[str, Any]) -> None:
        call = self.calls.get(self._call_id(record))
        if call is None or call.kind != "timer" or call.outcome is not None:
            self._corrupt(record, f"timer_fired for call {record.get('call_id')!r}, which is not a waiting timer")
        else:
            call.outcome = record

    def _apply_patched(self, record: dict[str, Any]) -> None:
        change_id = record.get("change_id")
        if type(change_id) is not str:
            self._corrupt(record, "patched record without a change_id")
        self.markers.add(change_id)  # type: ignore[arg-type]

    def _apply_cancel_requested(self, record: dict[str, Any]) -> None:
        self.cancel_requested = True

    def _apply_workflow_cancelled(self, record: dict[str, Any]) -> None:
        self.final = record

    def _apply_workflow_completed(self, record: dict[str, Any]) -> None:
        self.final = record

    def _apply_workflow_failed(self, record: dict[str, Any]) -> None:
        self.final = record
