"""What a journal says about each call id, built once before the workflow code is replayed.

Each record kind has one `_apply_<kind>` method (SPEC.md, section "Records"). Adding a kind means
a constant in engine/records.py, an `_apply_` method here, the executor code that writes it, and
a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flux._engine import records as R
from flux._engine.errors import JournalCorruptError

__all__ = ["RecordedCall", "ReplayIndex"]


class Source:
    """Where a call's records are parsed from: the journal's records once they are all read.

    Calls refer to this rather than to the index, so that the index and its calls hold no
    reference cycle and are freed as soon as a run lets go of them.
    """

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: Sequence[dict[str, Any]] | None = None

    def record(self, seq: int) -> dict[str, Any]:
        if self.records is None:
            raise RuntimeError("the index was built without its journal")
        return self.records[seq]


class RecordedCall:
    """One call id in the journal: how it started and, if recorded, how it ended.

    Only what replay compares and returns is kept (name, arguments, value); the records
    themselves are parsed again from the journal when asked for (`start`, `outcome`).
    """

    __slots__ = (
        "kind", "seq", "name", "args", "kwargs", "value", "end", "end_seq", "source",
        "resumed", "failures", "retries", "handlers", "cancelled", "visited",
    )

    def __init__(self, source: Source, kind: str, seq: int, name: str, args: Any = None, kwargs: Any = None, value: Any = None) -> None:
        self.source = source  # the journal's records, parsed on demand
        self.kind = kind  # "task", "pause", "value" or "timer"
        self.seq = seq  # of the record that started the call
        self.name = name
        self.args = args  # recorded form, as compared with the call made on replay
        self.kwargs = kwargs
        self.value = value  # recorded form: a task's result, or a recorded value
        self.end: str | None = None  # kind of the record that ended it: task_completed/_failed, timer_fired
        self.end_seq = -1
        self.resumed: dict[str, Any] | None = None  # for a pause: the workflow_resumed record
        self.failures: list[dict[str, Any]] | None = None  # attempt_failed records, in attempt order
        self.retries: set[int] | None = None  # attempts whose retry_started was recorded
        self.handlers: dict[str, dict[str, Any]] | None = None  # fallback_/rollback_ records by kind
        self.cancelled: dict[str, Any] | None = None  # task_cancelled: the workflow cancelled it here
        self.visited = False  # replay has reached this call

    @property
    def start(self) -> dict[str, Any]:
        """The record that started the call."""
        return self.source.record(self.seq)

    @property
    def outcome(self) -> dict[str, Any] | None:
        """The record that ended the call, or None while it is open."""
        return None if self.end is None else self.source.record(self.end_seq)


class ReplayIndex:
    """Call ids to recorded calls, plus the execution's pending pause and final record.

    Built one batch of records at a time (`apply_all`) while the journal is read; `journal` is
    then set to the journal's records, from which a call's records are parsed when asked for.
    """

    def __init__(self, path: str, offsets: Sequence[int] | None = None, journal: Sequence[dict[str, Any]] | None = None) -> None:
        self.path = path
        self.offsets = offsets
        self.source = Source()
        self.source.records = journal
        self.calls: dict[str, RecordedCall] = {}
        self.pending_pause: str | None = None
        self.final: dict[str, Any] | None = None
        self.markers: set[str] = set()  # change ids of `patched` markers
        self.cancel_requested = False  # a cancellation began and has not finished unwinding
        self.status = "created"  # what the records read so far leave the execution in
        self.next_seq = 0  # seq of the next record to index
        self._names: dict[str, str] = {}  # one string per task name, not one per call

    @property
    def journal(self) -> Sequence[dict[str, Any]] | None:
        return self.source.records

    @journal.setter
    def journal(self, records: Sequence[dict[str, Any]]) -> None:
        self.source.records = records

    def apply_all(self, records: list[dict[str, Any]], offsets: Sequence[int] | None = None) -> None:
        """Indexes a batch of records; `offsets` (each line's byte offset) name damage exactly."""
        if offsets is not None:
            self.offsets = offsets
        # The two commonest kinds are indexed inline when well formed; anything else, or
        # anything doubtful, goes through its `_apply_` method, which checks and explains.
        calls = self.calls
        names = self._names
        apply = self.apply
        source = self.source
        for record in records:
            kind = record["kind"]
            if kind == "task_started":
                call_id = record.get("call_id")
                name = record.get("name")
                if type(call_id) is str and call_id not in calls and type(name) is str:
                    name = names.setdefault(name, name)
                    calls[call_id] = RecordedCall(source, "task", record["seq"], name, record.get("args"), record.get("kwargs"))
                    continue
            elif kind == "task_completed":
                call = calls.get(record.get("call_id"))  # type: ignore[arg-type]
                if call is not None and call.kind == "task" and call.end is None and "value" in record:
                    call.end = kind
                    call.end_seq = record["seq"]
                    call.value = record["value"]
                    continue
            apply(record)
        if records:
            self.next_seq = records[-1]["seq"] + 1

    def apply(self, record: dict[str, Any]) -> None:
        kind = record["kind"]
        method = getattr(self, "_apply_" + kind, None)
        if method is None:
            self._corrupt(record, f"unknown record kind {kind!r} (written by a newer Flux?)")
        method(record)
        status = R.LIFECYCLE.get(kind)
        if status is not None:
            self.status = status
        self.next_seq = record["seq"] + 1

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
        elif call.end is not None:
            self._corrupt(record, f"call {record['call_id']!r} already ended at line {call.end_seq + 1}")
        else:
            call.end = record["kind"]
            call.end_seq = record["seq"]
            call.value = record.get("value")

    def _apply_header(self, record: dict[str, Any]) -> None:
        if record["seq"] != 0:
            self._corrupt(record, "a second header")

    def _apply_workflow_started(self, record: dict[str, Any]) -> None:
        pass

    def _apply_task_started(self, record: dict[str, Any]) -> None:
        self._new_call("task", record)

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
        if call.end is not None:  # type: ignore[union-attr]
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
        self._new_call("pause", record)
        self.pending_pause = record["call_id"]

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
        """Indexes the record that starts a call: a task, a pause, a recorded value or a timer."""
        call_id = self._call_id(record)
        if call_id in self.calls:
            self._corrupt(record, f"call {call_id!r} {'started' if kind == 'task' else 'recorded'} twice")
        if type(record.get("name")) is not str:
            self._corrupt(record, f"{record['kind']} without a name")
        self.calls[call_id] = RecordedCall(
            self.source, kind, record["seq"], record["name"], record.get("args"), record.get("kwargs"), record.get("value")
        )

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
        if call is None or call.kind != "timer" or call.end is not None:
            self._corrupt(record, f"timer_fired for call {record.get('call_id')!r}, which is not a waiting timer")
        else:
            call.end = record["kind"]
            call.end_seq = record["seq"]

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
