"""What the API and the console show of executions and schedules, read from the store through
its protocol.

Everything here is read-only and synchronous (the server runs it in worker threads): an
execution's fold, its calls with the segments the waterfall draws, what is pending now, the
details a list row shows, the journal's exact lines, and a schedule with its next fires. Values
stay in their recorded form.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flux._engine import records as R
from flux._engine.clock import iso
from flux._engine.errors import FluxError
from flux._engine.executor import waiting_pauses
from flux._engine.history import CallHistory, History
from flux._engine.journal import JournalRead, Records, encode_line, seed_for
from flux._engine.records import Status
from flux._engine.store import Store, read_settled, validate_execution_id
from flux.schedules import upcoming
from flux.timeline import CallRow, error_summary, row_of

__all__ = [
    "Folded",
    "call_rows",
    "execution_json",
    "fold_execution",
    "journal_bytes",
    "pending_of",
    "row_details",
    "schedule_json",
]

FINAL = frozenset(str(s) for s in R.FINAL_STATUSES)


class Folded:
    """One execution read and folded: its journal, its history and its status now."""

    __slots__ = ("execution_id", "read", "history", "status")

    def __init__(self, execution_id: str, read: JournalRead, history: History, status: str) -> None:
        self.execution_id = execution_id
        self.read = read
        self.history = history
        self.status = status


def fold_execution(store: Store, execution_id: str, keep: bool = False) -> Folded:
    """Reads and folds one journal (running without an owner is `interrupted`). With `keep`,
    the records parsed while the journal was checked are kept as dicts, for readers that look
    at all of them (the calls of a 10,000-call execution) instead of parsing them again.

    Raises:
        ExecutionNotFoundError, InvalidExecutionIdError, JournalCorruptError.
    """
    validate_execution_id(execution_id)

    def read_once() -> tuple[JournalRead, History]:
        history = History(store.describe(execution_id))
        kept: list[dict[str, Any]] = []

        def visit(records: list[dict[str, Any]], offsets: Any) -> None:
            history.apply_all(records, offsets)
            kept.extend(records)

        read = store.read(execution_id, visit=visit if keep else history.apply_all)
        history.journal = kept if keep and len(kept) == len(read.records) else read.records
        return read, history

    read, history, status = read_settled(store, execution_id, read_once)
    return Folded(execution_id, read, history, str(status))


def _raw(read: JournalRead) -> Records | None:
    """The records when they are all the journal's own bytes (as every store's `read` gives)."""
    records = read.records
    return records if isinstance(records, Records) and records.read_count == len(records) else None


def journal_bytes(read: JournalRead, execution_id: str, start: int = 0, limit: int | None = None) -> bytes:
    """The journal's lines from seq `start` on (at most `limit` of them), byte for byte as
    stored."""
    count = len(read.records)
    start = min(max(start, 0), count)
    stop = count if limit is None else min(count, start + limit)
    raw = _raw(read)
    if raw is not None:
        return raw.raw(start, stop)
    # Records kept otherwise: written again, which gives back their exact bytes (SPEC.md 2: a
    # line is accepted only if writing its parsed record again gives back its bytes).
    seed = seed_for(execution_id)
    return b"".join(encode_line(read.records[seq], seed) for seq in range(start, stop))


def _epoch(at: Any) -> float | None:
    if not isinstance(at, str):
        return None
    try:
        return dt.datetime.fromisoformat(at).timestamp()
    except ValueError:
        return None


def _segments(call: CallHistory, row: CallRow) -> list[dict[str, Any]] | None:
    """The pieces of a call with retries or handlers, in time order: each attempt, the wait
    before each retry (until its `retry_at`), and a fallback or rollback. None for a call made
    of one piece (its bar is the row's start and end)."""
    if not call.failures and not call.handlers:
        return None
    out: list[dict[str, Any]] = []
    start = row.started_at
    for failure in call.failures or ():
        out.append(
            {
                "kind": "attempt",
                "attempt": failure.get("attempt", 0),
                "start": start,
                "end": failure.get("at"),
                "outcome": "failed",
            }
        )
        retry_at = failure.get("retry_at")
        if isinstance(retry_at, (int, float)):
            out.append({"kind": "wait", "start": failure.get("at"), "end": iso(retry_at)})
            start = iso(retry_at)
        else:
            start = None
    if start is not None:
        last = len(call.failures or ())
        outcome = row.outcome if row.outcome != "open" else "running"
        out.append({"kind": "attempt", "attempt": last, "start": start, "end": row.ended_at, "outcome": outcome})
    handlers = call.handlers or {}
    for kind, started, ended in (
        ("fallback", R.FALLBACK_STARTED, R.FALLBACK_FAILED),
        ("rollback", R.ROLLBACK_STARTED, None),
    ):
        begin = handlers.get(started)
        if begin is None:
            continue
        if kind == "rollback":
            end = handlers.get(R.ROLLBACK_COMPLETED) or handlers.get(R.ROLLBACK_FAILED)
            outcome = "completed" if R.ROLLBACK_COMPLETED in handlers else "failed" if end is not None else "running"
        else:
            end = handlers.get(ended) if ended else None
            outcome = "failed" if end is not None else ("completed" if row.outcome == "completed" else "running")
            if end is None and row.ended_at is not None:
                end = {"at": row.ended_at}
        out.append({"kind": kind, "start": begin.get("at"), "end": (end or {}).get("at"), "outcome": outcome})
    return out


def call_rows(history: History) -> list[dict[str, Any]]:
    """The calls of a fold as `flux show` rows (SPEC.md 4.12), in the order they were first
    recorded; a call with retries or handlers also has `segments`."""
    out = []
    for call_id, call in sorted(history.calls.items(), key=lambda item: item[1].seq):
        row = row_of(call_id, call)
        data = row.as_json()
        segments = _segments(call, row)
        if segments is not None:
            data["segments"] = segments
        out.append(data)
    return out


def _retry_wait(call: CallHistory) -> float | None:
    """When a call waiting before a retry runs again (epoch seconds), or None."""
    if call.end is not None or not call.failures:
        return None
    last = call.failures[-1]
    retry_at = last.get("retry_at")
    attempt = last.get("attempt", 0)
    if isinstance(retry_at, (int, float)) and attempt + 1 not in (call.retries or ()):
        return float(retry_at)
    return None


def pending_of(folded: Folded) -> dict[str, Any]:
    """What the execution waits on now: bodies that started and have not ended (running in its
    owner, or to run again when an interrupted execution is continued), durable timers and
    retry waits with their wake-up times, and the pauses that wait for an input."""
    running, timers, retries = [], [], []
    finished = folded.status in FINAL
    for call_id, call in sorted(folded.history.calls.items(), key=lambda item: item[1].seq):
        if finished or call.cancelled is not None:
            continue
        if call.kind == "timer" and call.end is None:
            timers.append(
                {
                    "call_id": call_id,
                    "name": call.name,
                    "wake_at": call.start.get("wake_at"),
                    "started_at": call.start.get("at"),
                }
            )
        elif call.kind == "task" and call.end is None:
            retry_at = _retry_wait(call)
            if retry_at is not None:
                retries.append(
                    {"call_id": call_id, "name": call.name, "retry_at": retry_at, "attempt": len(call.failures or ())}
                )
            else:
                running.append(
                    {
                        "call_id": call_id,
                        "name": call.name,
                        "started_at": call.start.get("at"),
                        "attempts": call.attempts,
                        "child": call.child,
                    }
                )
    return {"running": running, "timers": timers, "retries": retries}


def execution_json(folded: Folded, store: Store) -> dict[str, Any]:
    """`Client.view(id).to_json()` without its calls (their own route serves them), from the
    fold already made: a 10,000-call execution is read and folded once, not twice."""
    history = folded.history
    records = folded.read.records
    header = history.header or {}
    final = history.final
    error = None
    if final is not None and final["kind"] == R.FAILED:
        tree = final.get("error")
        error = {**error_summary(tree), "traceback": str(tree.get("tb", "")) if isinstance(tree, dict) else ""}
    last = records[len(records) - 1]
    parent, forked = header.get("parent"), header.get("forked_from")
    waiting = waiting_pauses(store, history) if folded.status == str(Status.PAUSED) else []
    return {
        "execution_id": folded.execution_id,
        "workflow": str(header.get("workflow", "")),
        "status": folded.status,
        "input": header.get("input"),
        "output": final.get("value") if final is not None and final["kind"] == R.COMPLETED else None,
        "error": error,
        "created": str(header.get("created", "")),
        "updated": str(last.get("at") or header.get("created", "")),
        "records": len(records),
        "path": folded.read.path,
        "parent": parent if isinstance(parent, dict) else None,
        "children": history.children(),
        "waiting": [w.to_json() for w in waiting],
        "timers": [
            {"call_id": call_id, "wake_at": iso(call.start["wake_at"])}
            for call_id, call in history.calls.items()
            if call.kind == "timer" and call.end is None
        ],
        "forked_from": forked if isinstance(forked, dict) else None,
        "divergence": store.divergence(folded.execution_id) if folded.status == str(Status.DIVERGED) else None,
        "schedule": header.get("schedule") if isinstance(header.get("schedule"), dict) else None,
    }


def row_details(folded: Folded) -> dict[str, Any]:
    """What a list row shows beyond the store's summary: the last record's time, the number of
    calls, and the earliest wake-up (a durable timer, a retry wait or a timed pause)."""
    history = folded.history
    records = folded.read.records
    last = records[len(records) - 1] if len(records) else {}
    header = history.header or {}
    wake: list[float] = []
    if folded.status not in FINAL:
        for call in history.calls.values():
            if call.cancelled is not None:
                continue
            if call.kind == "timer" and call.end is None and isinstance(call.start.get("wake_at"), (int, float)):
                wake.append(float(call.start["wake_at"]))
            elif call.kind == "task" and call.end is None:
                retry_at = _retry_wait(call)
                if retry_at is not None:
                    wake.append(retry_at)
        for call in history.waiting.values():
            if isinstance(call.start.get("wake_at"), (int, float)):
                wake.append(float(call.start["wake_at"]))
    updated = last.get("at") or header.get("created")
    started, ended = _epoch(header.get("created")), _epoch(updated)
    return {
        "updated": updated,
        "duration_ms": round((ended - started) * 1000, 3) if started is not None and ended is not None else None,
        "calls": len(history.calls),
        "wake_at": min(wake) if wake else None,
        "waiting": [call.name for call in history.waiting.values()],
    }


def schedule_json(state: dict[str, Any], store: Store, fires: int = 5) -> dict[str, Any]:
    """A schedule as the store keeps it (SPEC.md 14.2; times in epoch seconds, as stored), without
    the hash of an automatic schedule's declaration, plus `next_fire_at` (the journal's time
    format), `next_fires` (the next `fires` fire times, as `flux.schedules.upcoming` computes
    them from the stored `next_fire`; none while paused) and `last_execution_status` (None when
    that execution is gone)."""
    out = {k: v for k, v in state.items() if k != "declared"}
    nxt = state.get("next_fire")
    try:
        out["next_fire_at"] = iso(nxt) if isinstance(nxt, (int, float)) else None
    except (ValueError, OverflowError, OSError):
        out["next_fire_at"] = None  # beyond what a date can show (a once(at=) of epoch seconds far out)
    out["next_fires"] = upcoming(state, fires)
    status = None
    last = state.get("last_execution")
    if isinstance(last, str):
        try:
            status = str(store.summary(last).status)
        except FluxError:
            status = None  # deleted, pruned or unreadable: the schedule still names it
    out["last_execution_status"] = status
    return out
