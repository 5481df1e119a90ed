"""Server-Sent Events of a journal as it grows (SPEC.md 11.4).

Each record is one event whose `id:` is its seq and whose data is its journal line, byte for
byte. A client that reconnects with `Last-Event-ID: N` (or asks `?from_seq=N+1`) gets the records
after N: the journal is append-only and its seqs are dense, so nothing is lost or repeated.
The stream ends with an `end` event once the execution has finished (completed, failed,
cancelled); a paused one stays open, since a resume appends to it.

The journal is read again after each change the store reports (`Store.wait_for_change`), so
this works on any store and with writers in other processes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import orjson

from flux._engine import records as R
from flux._engine.history import status_of
from flux._engine.records import Status
from flux.domain.events import events_from_records
from flux.serve.views import journal_bytes

__all__ = ["KEEPALIVE_SECONDS", "flux_events", "parse_last_event_id", "record_events"]

KEEPALIVE_SECONDS = 15.0
_FINAL_KINDS = {R.COMPLETED: "completed", R.FAILED: "failed", R.CANCELLED: "cancelled"}
_BATCH = 1000  # records per chunk written to the socket


def parse_last_event_id(value: str | None) -> int | None:
    """The seq a reconnecting client saw last, or None; raises ValueError for anything but an
    integer >= -1."""
    if value is None or not value.strip():
        return None
    try:
        seq = int(value.strip())
    except ValueError:
        raise ValueError(f"Last-Event-ID {value!r} is not a seq this stream sent") from None
    if seq < -1:
        raise ValueError(f"Last-Event-ID {seq} is not a seq this stream sent")
    return seq


async def record_events(
    store: Any, execution_id: str, after: int, keepalive: float = KEEPALIVE_SECONDS
) -> AsyncIterator[bytes]:
    """The records of one journal with seq > `after`, as SSE events, then new ones as they come."""
    yield b"retry: 1000\n\n"
    next_seq = after + 1
    while True:
        read = await anyio.to_thread.run_sync(store.read, execution_id)
        records = read.records
        count = len(records)
        while count > next_seq:
            stop = min(count, next_seq + _BATCH)
            lines = journal_bytes(read, execution_id, next_seq, stop - next_seq).split(b"\n")
            yield b"".join(
                b"id: %d\nevent: record\ndata: %s\n\n" % (seq, line)
                for seq, line in zip(range(next_seq, stop), lines, strict=False)
            )
            next_seq = stop
        final = _FINAL_KINDS.get(records[count - 1]["kind"])
        if final is not None:
            yield b"event: end\ndata: %s\n\n" % orjson.dumps({"status": final, "records": count})
            return
        began = time.monotonic()
        await store.wait_for_change(execution_id, timeout=keepalive)
        if time.monotonic() - began >= keepalive * 0.99:
            yield b": keepalive\n\n"


def _event_json(event: Any) -> bytes:
    out: dict[str, Any] = {
        "type": event.type.value,
        "source_id": event.source_id,
        "name": event.name,
        "value": event.value,
        "time": event.time.isoformat() if event.time is not None else None,
        "seq": event.seq,
    }
    if event.attempt is not None:
        out["attempt"] = event.attempt
    return orjson.dumps(out, default=str)


async def flux_events(
    store: Any,
    execution_id: str,
    summary: Callable[[], Any],
    stopped: Callable[[], bool],
    keepalive: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[bytes]:
    """Flux's `stream` mode: one event per execution event (TASK_STARTED, ...; values in their
    recorded form, `id:` the record's seq) until the execution finishes or pauses, then a
    `result` event holding what `sync` mode returns (`await summary()`). `stopped()` ends the
    stream early (the run stopped with engine trouble)."""
    sent = 0
    ending = False
    while True:
        read = await anyio.to_thread.run_sync(store.read, execution_id)
        records = list(read.records)
        events = events_from_records(records, load=lambda tree: tree)
        if len(events) > sent:
            yield b"".join(
                b"id: %d\nevent: %s\ndata: %s\n\n" % (e.seq, e.type.value.encode(), _event_json(e))
                for e in events[sent:]
            )
            sent = len(events)
        if ending or status_of(records) in (*R.FINAL_STATUSES, Status.PAUSED):
            yield b"event: result\ndata: %s\n\n" % orjson.dumps(await summary())
            return
        if stopped():
            ending = True  # read once more: what the run wrote before it stopped
            continue
        began = time.monotonic()
        await store.wait_for_change(execution_id, timeout=keepalive)
        if time.monotonic() - began >= keepalive * 0.99:
            yield b": keepalive\n\n"
