"""The one fold of a journal: what it says about each call id, and where the execution stands.

Every reader of journals goes through this fold: replay (engine/core.py), snapshots, the
timeline of `flux show` and `flux replay`, events, `flux diff`, `flux.testing` and the store's
summaries. Each record kind has one `_apply_<kind>` step (SPEC.md 2.1); adding a kind means a
class in engine/records.py, a step here, the code that writes it, and a test.

The fold keeps of each call only what replay compares and returns (name, encoded arguments,
recorded value, the seqs of its records); the records themselves stay as the journal's bytes and
are parsed again when asked for (`CallHistory.start`, `.outcome`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, NoReturn, TypeVar, overload

from flux._engine import records as R
from flux._engine.errors import JournalCorruptError
from flux._engine.records import Status

__all__ = ["CallHistory", "History", "fold", "status_of"]

T = TypeVar("T")


class Source:
    """Where a call's records are parsed from: the journal's records once they are all read.

    Calls refer to this rather than to the history, so that the history and its calls hold no
    reference cycle and are freed as soon as a run lets go of them.
    """

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: Sequence[dict[str, Any]] | None = None

    def record(self, seq: int) -> dict[str, Any]:
        if self.records is None:
            raise RuntimeError("the history was built without its journal")
        return self.records[seq]


class _Rare:
    """The fields of a call that few calls have (a pause's answer, retries, handlers, a
    cancellation, a sub-workflow): kept apart, so that the many plain task calls of a long
    journal are smaller and quicker to make and for the cycle collector to traverse."""

    __slots__ = ("resumed", "failures", "retries", "handlers", "cancelled", "child")

    def __init__(self) -> None:
        self.resumed: dict[str, Any] | None = None
        self.failures: list[dict[str, Any]] | None = None
        self.retries: set[int] | None = None
        self.handlers: dict[str, dict[str, Any]] | None = None
        self.cancelled: dict[str, Any] | None = None
        self.child: str | None = None


class _RareField(Generic[T]):
    """A field of `CallHistory` kept in its `_Rare` part: None until set."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, call: None, owner: type) -> _RareField[T]: ...
    @overload
    def __get__(self, call: CallHistory, owner: type) -> T | None: ...
    def __get__(self, call: CallHistory | None, owner: type) -> _RareField[T] | T | None:
        if call is None:
            return self
        rare = call.rare
        return None if rare is None else getattr(rare, self.name)

    def __set__(self, call: CallHistory, value: T | None) -> None:
        rare = call.rare
        if rare is None:
            if value is None:
                return
            rare = call.rare = _Rare()
        setattr(rare, self.name, value)


class CallHistory:
    """One call id in the journal: how it started and, if recorded, how it ended.

    `kind` is "task" (a sub-workflow call has `child`), "pause", "value" or "timer".
    """

    __slots__ = ("kind", "seq", "name", "args", "kwargs", "value", "end", "end_seq", "source", "rare", "visited")

    resumed = _RareField[dict[str, Any]]()  # for a pause: the workflow_resumed record
    failures = _RareField[list[dict[str, Any]]]()  # attempt_failed records, in attempt order
    retries = _RareField[set[int]]()  # attempts whose retry_started was recorded
    handlers = _RareField[dict[str, dict[str, Any]]]()  # fallback_/rollback_ records by kind
    cancelled = _RareField[dict[str, Any]]()  # task_cancelled: the workflow cancelled it here
    child = _RareField[str]()  # the sub-workflow's execution id, for `call`

    def __init__(
        self, source: Source, kind: str, seq: int, name: str, args: Any = None, kwargs: Any = None, value: Any = None,
        child: str | None = None,
    ) -> None:
        self.source = source  # the journal's records, parsed on demand
        self.kind = kind
        self.seq = seq  # of the record that started the call
        self.name = name
        self.args = args  # recorded form, as compared with the call made on replay
        self.kwargs = kwargs
        self.value = value  # recorded form: a task's result, or a recorded value
        self.end: str | None = None  # kind of the record that ended it: task_completed/_failed, timer_fired
        self.end_seq = -1
        self.rare: _Rare | None = None
        if child is not None:
            self.child = child
        self.visited = False  # replay has reached this call

    @property
    def start(self) -> dict[str, Any]:
        """The record that started the call."""
        return self.source.record(self.seq)

    @property
    def outcome(self) -> dict[str, Any] | None:
        """The record that ended the call, or None while it is open."""
        return None if self.end is None else self.source.record(self.end_seq)

    @property
    def done(self) -> bool:
        """The call has a recorded outcome (a pause: it was resumed)."""
        return self.end is not None or self.resumed is not None or self.kind == "value"

    @property
    def attempts(self) -> int:
        """1 + the retries recorded."""
        return 1 + len(self.retries or ())

    def __repr__(self) -> str:
        return f"<CallHistory {self.kind} {self.name!r} seq={self.seq} end={self.end}>"


class History:
    """Call ids to their histories, plus where the execution stands.

    Built one batch of records at a time (`apply_all`) while the journal is read; `journal` is
    then set to the journal's records, from which a call's records are parsed when asked for.
    """

    def __init__(
        self, path: str, offsets: Sequence[int] | None = None, journal: Sequence[dict[str, Any]] | None = None
    ) -> None:
        self.path = path
        self.offsets = offsets
        self.source = Source()
        self.source.records = journal
        self.calls: dict[str, CallHistory] = {}
        self.waiting: dict[str, CallHistory] = {}  # pauses reached and not resumed, in the order reached
        self.waiting_children: dict[str, str] = {}  # call id of a sub-workflow call -> its id: it waits at a pause
        self.final: dict[str, Any] | None = None  # workflow_completed/_failed/_cancelled
        self.markers: set[str] = set()  # change ids of `patched` markers
        self.cancel_requested = False  # a cancellation began and has not finished unwinding
        self.status = Status.CREATED  # what the records read so far leave the execution in
        self.next_seq = 0  # seq of the next record to fold
        self._header: dict[str, Any] | None = None
        self._names: dict[str, str] = {}  # one string per task name, not one per call

    @property
    def journal(self) -> Sequence[dict[str, Any]] | None:
        return self.source.records

    @journal.setter
    def journal(self, records: Sequence[dict[str, Any]]) -> None:
        self.source.records = records

    @property
    def header(self) -> dict[str, Any] | None:
        """The journal's header (parsed from the journal when the fold began from a snapshot)."""
        if self._header is None and self.source.records is not None and len(self.source.records):
            self._header = self.source.records[0]
        return self._header

    @property
    def workflow(self) -> str:
        return str((self.header or {}).get("workflow", ""))

    @property
    def pending_pause(self) -> str | None:
        """The call id of the one pause that waits, if exactly one does."""
        return next(iter(self.waiting)) if len(self.waiting) == 1 else None

    def children(self) -> dict[str, str]:
        """Call id -> execution id of every sub-workflow call."""
        return {
            call_id: call.child
            for call_id, call in self.calls.items()
            if call.rare is not None and call.child is not None
        }

    def apply_all(self, records: Iterable[dict[str, Any]], offsets: Sequence[int] | None = None) -> None:
        """Folds a batch of records; `offsets` (each line's byte offset) name damage exactly."""
        if offsets is not None:
            self.offsets = offsets
        # The two commonest kinds are folded inline when well formed; anything else, or
        # anything doubtful, goes through its `_apply_` step, which checks and explains.
        calls = self.calls
        names = self._names
        apply = self.apply
        source = self.source
        str_, list_, dict_ = str, list, dict
        last = None
        for record in records:
            last = record
            kind = record["kind"]
            if kind == "task_started":
                # Inline only when every field is of the type its class declares and no other
                # field is there (a sub-workflow call, with `child`, takes the checked step).
                call_id = record.get("call_id")
                name = record.get("name")
                args = record.get("args")
                kwargs = record.get("kwargs")
                if (
                    type(call_id) is str_
                    and type(name) is str_
                    and type(record.get("at")) is str_
                    and type(record.get("src")) is str_
                    and (args is None or type(args) is list_)
                    and (kwargs is None or type(kwargs) is dict_)
                    # seq, kind, at, call_id, name, src and the arguments given: no other field
                    # (an `"args": null` is counted here and not above, and takes the checked step)
                    and len(record) == 6 + (args is not None) + (kwargs is not None)
                    and call_id not in calls
                ):
                    name = names.setdefault(name, name)
                    calls[call_id] = CallHistory(source, "task", record["seq"], name, args, kwargs)
                    continue
            elif kind == "task_completed":
                call_id = record.get("call_id")
                if len(record) == 5 and type(call_id) is str_:  # seq, kind, at, call_id, value: nothing rarer
                    call = calls.get(call_id)
                    if (
                        call is not None
                        and call.kind == "task"
                        and call.end is None
                        and "value" in record
                        and type(record.get("at")) is str
                    ):
                        call.end = kind
                        call.end_seq = record["seq"]
                        call.value = record["value"]
                        continue
            apply(record)
        if last is not None:
            self.next_seq = last["seq"] + 1

    def apply(self, record: dict[str, Any]) -> None:
        kind = record["kind"]
        step = _STEPS.get(kind)
        problem = R.field_problem(record)
        if step is None or problem is not None:
            self._corrupt(record, problem or f"unknown record kind {kind!r} (written by a newer Flux?)")
        step(self, record)
        status = R.LIFECYCLE.get(kind)
        if status is not None:
            self.status = status
        self.next_seq = record["seq"] + 1

    def _corrupt(self, record: dict[str, Any], problem: str) -> NoReturn:
        seq = record.get("seq", 0)
        offset = self.offsets[seq] if self.offsets and type(seq) is int and seq < len(self.offsets) else -1
        raise JournalCorruptError(self.path, seq + 1 if type(seq) is int else 0, offset, problem)

    def _ended(self, record: dict[str, Any]) -> None:
        call = self.calls.get(record["call_id"])
        if call is None or call.kind != "task":
            self._corrupt(record, f"{record['kind']} for call {record['call_id']!r}, which never started")
        elif call.end is not None:
            self._corrupt(record, f"call {record['call_id']!r} already ended at line {call.end_seq + 1}")
        else:
            call.end = record["kind"]
            call.end_seq = record["seq"]
            call.value = record.get("value")

    def _apply_header(self, record: dict[str, Any]) -> None:
        if record["seq"] != 0:
            self._corrupt(record, "a second header")
        self._header = record

    def _apply_workflow_started(self, record: dict[str, Any]) -> None:
        pass

    def _apply_task_started(self, record: dict[str, Any]) -> None:
        self._new_call("task", record)

    def _apply_task_completed(self, record: dict[str, Any]) -> None:
        self._ended(record)

    def _apply_task_failed(self, record: dict[str, Any]) -> None:
        self._ended(record)

    def _open_task(self, record: dict[str, Any]) -> CallHistory:
        call = self.calls.get(record["call_id"])
        if call is None or call.kind != "task":
            self._corrupt(record, f"{record['kind']} for call {record['call_id']!r}, which never started")
        if call.end is not None:
            self._corrupt(record, f"{record['kind']} for call {record['call_id']!r}, which already ended")
        return call

    def _apply_attempt_failed(self, record: dict[str, Any]) -> None:
        call = self._open_task(record)
        failures = call.failures if call.failures is not None else []
        if record["attempt"] != len(failures):
            self._corrupt(record, f"attempt_failed out of order for call {record['call_id']!r}")
        failures.append(record)
        call.failures = failures

    def _apply_retry_started(self, record: dict[str, Any]) -> None:
        call = self._open_task(record)
        attempt = record["attempt"]
        if attempt < 1 or attempt != len(call.failures or ()):
            self._corrupt(record, f"retry_started out of order for call {record['call_id']!r}")
        call.retries = (call.retries or set()) | {attempt}

    def _apply_handler_record(self, record: dict[str, Any]) -> None:
        call = self._open_task(record)
        handlers = call.handlers if call.handlers is not None else {}
        if record["kind"] in handlers:
            self._corrupt(record, f"{record['kind']} recorded twice for call {record['call_id']!r}")
        handlers[record["kind"]] = record
        call.handlers = handlers

    def _apply_workflow_paused(self, record: dict[str, Any]) -> None:
        call = self._new_call("pause", record)
        self.waiting[record["call_id"]] = call

    def _apply_workflow_suspended(self, record: dict[str, Any]) -> None:
        for entry in record["waiting"]:
            if type(entry) is str:
                call = self.calls.get(entry)
                if call is None or call.kind != "pause" or entry not in self.waiting:
                    self._corrupt(record, f"waits at call {entry!r}, which is not a waiting pause")
            elif type(entry) is dict and type(entry.get("call_id")) is str and type(entry.get("child")) is str:
                call = self.calls.get(entry["call_id"])
                if call is None or call.child != entry["child"] or call.end is not None:
                    self._corrupt(record, f"waits in sub-workflow {entry.get('child')!r}, which is not an open call")
                self.waiting_children[entry["call_id"]] = entry["child"]
            else:
                self._corrupt(record, f"a waiting entry that is neither a call id nor a sub-workflow: {entry!r}")

    def _apply_workflow_resumed(self, record: dict[str, Any]) -> None:
        self.waiting_children.clear()  # a run has begun: it finds its children's state again
        call_id = record.get("call_id")
        if call_id is None:
            return
        call = self.calls.get(call_id)
        if record.get("child") is not None:
            if call is None or call.child != record["child"]:
                self._corrupt(record, f"resumes sub-workflow {record['child']!r} at call {call_id!r}, which is not one")
            return
        if call is None or call.kind != "pause" or call.resumed is not None:
            self._corrupt(record, f"resumes call {call_id!r}, which is not a waiting pause")
        else:
            call.resumed = record
            self.waiting.pop(call_id, None)

    def _apply_task_cancelled(self, record: dict[str, Any]) -> None:
        self._open_task(record).cancelled = record

    def _new_call(self, kind: str, record: dict[str, Any]) -> CallHistory:
        """Folds the record that starts a call: a task, a pause, a recorded value or a timer."""
        call_id = record["call_id"]
        if call_id in self.calls:
            self._corrupt(record, f"call {call_id!r} {'started' if kind == 'task' else 'recorded'} twice")
        call = self.calls[call_id] = CallHistory(
            self.source, kind, record["seq"], self._names.setdefault(record["name"], record["name"]),
            record.get("args"), record.get("kwargs"), record.get("value"), record.get("child"),
        )
        return call

    def _apply_value_recorded(self, record: dict[str, Any]) -> None:
        self._new_call("value", record)

    def _apply_timer_started(self, record: dict[str, Any]) -> None:
        self._new_call("timer", record)

    def _apply_timer_fired(self, record: dict[str, Any]) -> None:
        call = self.calls.get(record["call_id"])
        if call is None or call.kind != "timer" or call.end is not None:
            self._corrupt(record, f"timer_fired for call {record['call_id']!r}, which is not a waiting timer")
        else:
            call.end = record["kind"]
            call.end_seq = record["seq"]

    def _apply_patched(self, record: dict[str, Any]) -> None:
        self.markers.add(record["change_id"])

    def _apply_cancel_requested(self, record: dict[str, Any]) -> None:
        self.cancel_requested = True

    def _apply_workflow_cancelled(self, record: dict[str, Any]) -> None:
        self.final = record

    def _apply_workflow_completed(self, record: dict[str, Any]) -> None:
        self.final = record

    def _apply_workflow_failed(self, record: dict[str, Any]) -> None:
        self.final = record



# One fold step per kind, found by the kind's name: a name that is not a kind (a helper of
# History's) can never be reached from a journal.
_STEPS = {
    kind: getattr(History, f"_apply_{kind}")
    for kind in R.KINDS
    if kind not in (R.FALLBACK_STARTED, R.FALLBACK_FAILED, R.ROLLBACK_STARTED, R.ROLLBACK_COMPLETED, R.ROLLBACK_FAILED)
}
for _kind in (R.FALLBACK_STARTED, R.FALLBACK_FAILED, R.ROLLBACK_STARTED, R.ROLLBACK_COMPLETED, R.ROLLBACK_FAILED):
    _STEPS[_kind] = History._apply_handler_record
del _kind


def fold(records: Sequence[dict[str, Any]], path: str = "") -> History:
    """The history of a list of records (all of them kept, for readers that show them)."""
    history = History(path, journal=records)
    history.apply_all(records)
    return history


def status_of(records: Sequence[dict[str, Any]]) -> Status:
    """The status the records leave the execution in (RUNNING if it has not ended)."""
    for record in reversed(records):
        status = R.LIFECYCLE.get(record["kind"])
        if status is not None:
            return status
    return Status.CREATED
