"""Replay snapshots: a journal's replay index saved when a run pauses (SPEC.md 2.3).

Resuming a long execution would otherwise check, parse and index every line of its journal
again. A snapshot holds what the index kept of each call, plus the size, record count and CRC-32
of the journal prefix it was built from. It is an accelerator only: when it is missing, damaged,
of another format, or the journal no longer starts with exactly those bytes, the journal is read
whole as if there were none, and deleting it changes nothing but speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from flux._engine.history import CallHistory, History
from flux._engine.journal import Known, checks_out, encode_line_body, seed_for
from flux._engine.records import Status

__all__ = ["SNAPSHOT_FORMAT", "Snapshot", "known_prefix", "snapshot_of"]

SNAPSHOT_FORMAT = 2
_KINDS = {"task": "task", "pause": "pause", "value": "value", "timer": "timer"}
_ENDS = {"task_completed": "task_completed", "task_failed": "task_failed", "timer_fired": "timer_fired", None: None}


def snapshot_of(index: History, execution_id: str, size: int, records: int, crc: int) -> bytes:
    """The snapshot of `index`, which must hold every record of the `size`-byte journal prefix."""
    calls = []
    for call_id, call in index.calls.items():
        rare = None
        if call.rare is not None and (
            call.resumed or call.failures or call.retries or call.handlers or call.cancelled or call.child
        ):
            rare = {
                "resumed": call.resumed,
                "failures": call.failures,
                "retries": sorted(call.retries) if call.retries else None,
                "handlers": call.handlers,
                "cancelled": call.cancelled,
                "child": call.child,
            }
        calls.append(
            [call_id, call.kind, call.seq, call.name, call.args, call.kwargs, call.value, call.end, call.end_seq, rare]
        )
    body = orjson.dumps(
        {
            "snapshot": SNAPSHOT_FORMAT,
            "execution_id": execution_id,
            "size": size,
            "records": records,
            "prefix_crc": crc,
            "status": str(index.status),
            "waiting": list(index.waiting),
            "waiting_children": index.waiting_children,
            "final": index.final,
            "markers": sorted(index.markers),
            "cancel_requested": index.cancel_requested,
            "calls": calls,
        }
    )
    # Sealed like a journal line: a checksum of every byte before it, seeded with the execution
    # id, so a damaged or foreign snapshot is never taken for a good one.
    return encode_line_body(body, seed_for(execution_id))


def known_prefix(data: bytes | None, execution_id: str, index: History) -> Known | None:
    """The journal prefix the snapshot in `data` vouches for (None when there is no usable
    snapshot); when the journal still starts with it, reading fills `index` from the snapshot."""
    snapshot = Snapshot.parse(data, execution_id) if data else None
    if snapshot is None:
        return None
    return Known(snapshot.size, snapshot.records, snapshot.crc, lambda: snapshot.restore(index))


@dataclass
class Snapshot:
    """A snapshot read back, its shape checked; `restore` fills an empty index from it."""

    size: int
    records: int
    crc: int
    state: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes, execution_id: str) -> Snapshot | None:
        """The snapshot in `data`, or None when it is not one this engine wrote for this execution."""
        if not checks_out(data, seed_for(execution_id)):
            return None
        try:
            state = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not (
            type(state) is dict
            and state.get("snapshot") == SNAPSHOT_FORMAT
            and state.get("execution_id") == execution_id
            and all(type(state.get(k)) is int for k in ("size", "records", "prefix_crc"))
            and type(state.get("calls")) is list
            and type(state.get("markers")) is list
            and all(type(m) is str for m in state["markers"])
            and type(state.get("status")) is str
            and type(state.get("cancel_requested")) is bool
            and state.get("status") in {str(s) for s in Status}
            and type(state.get("waiting")) is list
            and all(type(w) is str for w in state["waiting"])
            and type(state.get("waiting_children")) is dict
            and all(type(v) is str for v in state["waiting_children"].values())
            and (state.get("final") is None or type(state["final"]) is dict)
        ):
            return None
        records = state["records"]
        return cls(state["size"], records, state["prefix_crc"], state)

    def restore(self, index: History) -> bool:
        """Fills `index`, which has seen no record, with the calls and state of the snapshot.
        Returns False, leaving `index` as it was, when a call's row is not of the shape this
        engine writes: the journal is then read whole. (Rows are checked here, as they are
        built, rather than in a pass of their own.)"""
        state = self.state
        source = index.source
        names = index._names
        kinds = _KINDS
        ends = _ENDS
        records = self.records
        new = CallHistory.__new__
        calls: dict[str, CallHistory] = {}
        rows = state["calls"]
        state["calls"] = None
        try:
            for i in range(len(rows)):
                row = rows[i]
                rows[i] = None  # each row is freed once its call is built, so both are never held whole
                if type(row) is not list:
                    return False
                call_id, kind, seq, name, args, kwargs, value, end, end_seq, rare = row
                ended = ends[end]
                if not (
                    type(call_id) is str
                    and type(seq) is int
                    and 0 < seq < records
                    and type(name) is str
                    and type(end_seq) is int
                    and (end_seq == -1 if ended is None else seq < end_seq < records)
                ):
                    return False
                # Every slot set here rather than through CallHistory(): one frame less per call.
                call = new(CallHistory)
                call.source = source
                call.kind = kinds[kind]
                call.seq = seq
                call.name = names.setdefault(name, name)
                call.args = args
                call.kwargs = kwargs
                call.value = value
                call.end = ended
                call.end_seq = end_seq
                call.rare = None
                call.visited = False
                if rare is not None:
                    call.resumed = rare.get("resumed")
                    call.failures = rare.get("failures")
                    call.retries = set(rare["retries"]) if rare.get("retries") else None
                    call.handlers = rare.get("handlers")
                    call.cancelled = rare.get("cancelled")
                    call.child = rare.get("child")
                calls[call_id] = call
        except (ValueError, TypeError, KeyError, AttributeError):
            return False  # a row of another length, an unknown kind or end, `rare` not an object
        index.calls.update(calls)
        index.waiting = {call_id: calls[call_id] for call_id in state["waiting"] if call_id in calls}
        index.waiting_children = dict(state["waiting_children"])
        index.final = state["final"]
        index.markers = set(state["markers"])
        index.cancel_requested = state["cancel_requested"]
        index.status = Status(state["status"])
        index.next_seq = self.records
        return True
