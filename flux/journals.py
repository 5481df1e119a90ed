"""Journals as working material: compare two (`flux diff`) and fork one (`flux fork`).

Both read journals without changing them; a fork writes only the new execution's journal, with
the checksums of its own execution id (SPEC.md "Debugging").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from flux._engine import journal as _journal
from flux._engine import records as R
from flux._engine.clock import SystemClock, iso
from flux._engine.codec import encode, parse_json
from flux._engine.errors import ExecutionStateError
from flux._engine.history import History, fold
from flux._engine.journal import FORMAT_VERSION, JournalRead, encode_line
from flux._engine.store import open_store, validate_execution_id
from flux.client import Client, check_durability
from flux.context import ExecutionContext
from flux.debug import open_journal
from flux.divergence import ABSENT, arg_diff
from flux.timeline import CallRow, error_summary, timeline
from flux.workflow import run_sync

__all__ = [
    "Difference",
    "ForkResult",
    "JournalDiff",
    "JournalSide",
    "continue_fork",
    "diff_journals",
    "fork_execution",
    "parse_set_result",
]

_RESULT_KINDS = (R.TASK_COMPLETED, R.VALUE)


# -- diff -------------------------------------------------------------------------------------


@dataclass
class JournalSide:
    path: str
    execution_id: str
    workflow: str
    records: int
    status: str


@dataclass
class Difference:
    """One thing two journals record differently; the seqs say where (None: absent on that side)."""

    what: str
    seq_a: int | None
    seq_b: int | None
    a: str
    b: str

    @property
    def first_seq(self) -> int:
        return min(s for s in (self.seq_a, self.seq_b) if s is not None)

    def as_json(self) -> dict[str, Any]:
        return {"what": self.what, "seq_a": self.seq_a, "seq_b": self.seq_b, "a": self.a, "b": self.b}


@dataclass
class JournalDiff:
    a: JournalSide
    b: JournalSide
    differences: list[Difference]

    @property
    def same(self) -> bool:
        return not self.differences

    def as_json(self) -> dict[str, Any]:
        first = self.differences[0] if self.differences else None
        return {
            "a": vars(self.a),
            "b": vars(self.b),
            "same": self.same,
            "first": first.as_json() if first else None,
            "differences": [d.as_json() for d in self.differences],
        }


def _text(value: Any, limit: int = 200) -> str:
    text = orjson.dumps(value, default=repr).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _side(read: JournalRead, execution_id: str, history: History) -> JournalSide:
    return JournalSide(read.path, execution_id, history.workflow, len(read.records), str(history.status))


def diff_journals(ref_a: str, ref_b: str, *, store: Any = None) -> JournalDiff:
    """Compares two journals of the same workflow in substance: the input, then each call aligned
    by call id (kind, name, arguments, outcome, value or error, attempts), the `patched` markers
    and the final status and output. Times, pids, hosts, source lines and tracebacks are ignored.

    Raises:
        ExecutionStateError: when the journals are of different workflows.
        JournalCorruptError, ExecutionNotFoundError, InvalidExecutionIdError.
    """
    read_a, id_a = open_journal(ref_a, store)
    read_b, id_b = open_journal(ref_b, store)
    fold_a, fold_b = fold(read_a.records, read_a.path), fold(read_b.records, read_b.path)
    a, b = _side(read_a, id_a, fold_a), _side(read_b, id_b, fold_b)
    if a.workflow != b.workflow:
        raise ExecutionStateError(
            f"{a.path} is a journal of workflow {a.workflow!r}, {b.path} of {b.workflow!r}; "
            "flux diff compares executions of the same workflow"
        )
    out: list[Difference] = []
    head_a, head_b = read_a.records[0], read_b.records[0]
    if head_a.get("input") != head_b.get("input"):
        out.append(Difference("input", 0, 0, _text(head_a.get("input")), _text(head_b.get("input"))))
    rows_a = {row.call_id: row for row in timeline(fold_a)}
    rows_b = {row.call_id: row for row in timeline(fold_b)}
    for call_id, row in rows_a.items():
        other = rows_b.get(call_id)
        if other is None:
            out.append(Difference(f"call {call_id} {row.name}", row.seq, None, _call_text(row), "(absent)"))
        else:
            out += _compare_calls(row, other)
    for call_id, row in rows_b.items():
        if call_id not in rows_a:
            out.append(Difference(f"call {call_id} {row.name}", None, row.seq, "(absent)", _call_text(row)))
    out += _compare_markers(read_a.records, read_b.records)
    out += _compare_final(fold_a, fold_b, len(read_a.records), len(read_b.records), a.status, b.status)
    out.sort(key=lambda d: d.first_seq)
    return JournalDiff(a, b, out)


def _call_text(row: CallRow) -> str:
    args = [_text(x, 60) for x in row.args or []] + [f"{k}={_text(v, 60)}" for k, v in (row.kwargs or {}).items()]
    return f"{row.kind} {row.name}({', '.join(args)}) {_outcome_text(row)}"


def _outcome_text(row: CallRow) -> str:
    if row.outcome == "failed":
        error = error_summary(row.error)
        return f"failed: {error['type']}: {error['message']}"
    if row.outcome in ("completed", "recorded", "resumed"):
        return f"{row.outcome}: {_text(row.value)}"
    return row.outcome


def _compare_calls(a: CallRow, b: CallRow) -> list[Difference]:
    if a.kind != b.kind or a.name != b.name:
        # Another call altogether: its arguments and outcome are not worth comparing one by one.
        return [Difference(f"call {a.call_id}: another call", a.seq, b.seq, _call_text(a), _call_text(b))]
    out: list[Difference] = []
    label = f"call {a.call_id} {a.name}"
    for d in arg_diff({"args": a.args, "kwargs": a.kwargs}, {"args": b.args, "kwargs": b.kwargs}):
        out.append(Difference(f"{label}: {d.where}", a.seq, b.seq, _arg(d.recorded), _arg(d.current)))
    end_a = a.end_seq if a.end_seq is not None else a.seq
    end_b = b.end_seq if b.end_seq is not None else b.seq
    if _outcome_text(a) != _outcome_text(b):
        out.append(Difference(f"{label}: outcome", end_a, end_b, _outcome_text(a), _outcome_text(b)))
    if a.attempts != b.attempts:
        out.append(Difference(f"{label}: attempts", end_a, end_b, str(a.attempts), str(b.attempts)))
    return out


def _arg(value: Any) -> str:
    return "(absent)" if value is ABSENT else _text(value, 120)


def _compare_markers(
    records_a: Sequence[dict[str, Any]], records_b: Sequence[dict[str, Any]]
) -> list[Difference]:
    def markers(records: Sequence[dict[str, Any]]) -> dict[str, int]:
        return {r["change_id"]: r["seq"] for r in records if r["kind"] == R.PATCHED}

    in_a, in_b = markers(records_a), markers(records_b)
    out = []
    for change_id in [*in_a, *(c for c in in_b if c not in in_a)]:
        if (change_id in in_a) != (change_id in in_b):
            out.append(
                Difference(f"patched {change_id!r}", in_a.get(change_id), in_b.get(change_id),
                           "marked" if change_id in in_a else "(absent)", "marked" if change_id in in_b else "(absent)")
            )
    return out


def _final_text(record: dict[str, Any] | None) -> str:
    if record is None:
        return "(none)"
    if record["kind"] == R.COMPLETED:
        return _text(record.get("value"))
    if record["kind"] == R.FAILED:
        error = error_summary(record.get("error"))
        return f"{error['type']}: {error['message']}"
    return "cancelled"


def _compare_final(
    fold_a: History, fold_b: History, count_a: int, count_b: int, status_a: str, status_b: str
) -> list[Difference]:
    fa, fb = fold_a.final, fold_b.final
    seq_a = fa["seq"] if fa else count_a - 1
    seq_b = fb["seq"] if fb else count_b - 1
    out = []
    if status_a != status_b:
        out.append(Difference("status", seq_a, seq_b, status_a, status_b))
    if fa and fb and _final_text(fa) != _final_text(fb):
        out.append(Difference("output", seq_a, seq_b, _final_text(fa), _final_text(fb)))
    return out


# -- fork -------------------------------------------------------------------------------------


@dataclass
class ForkResult:
    source_id: str
    execution_id: str
    path: str
    at: int  # records with seq < at were copied (the header rewritten)
    copied: int
    replaced: int | None  # seq of the result replaced by --set-result


def parse_set_result(text: str) -> tuple[int, Any]:
    """`SEQ=JSON` of `--set-result`.

    Raises:
        ValueError: naming what is wrong.
    """
    seq_text, sep, value_text = text.partition("=")
    try:
        seq = int(seq_text)
    except ValueError:
        seq = -1
    if not sep or seq < 0:
        raise ValueError(f"set_result {text!r}: expected SEQ=JSON, for example 5='{{\"ok\": true}}'")
    return seq, parse_json(value_text, f"set_result {text!r}: the value")


def fork_execution(
    execution_id: str,
    at: int,
    *,
    set_result: tuple[int, Any] | None = None,
    store: Any = None,
    durability: str | None = None,
    new_id: str | None = None,
) -> ForkResult:
    """Makes a new execution from the first `at` records of another (optionally with one
    recorded result replaced). The original journal is only read.

    Raises:
        ValueError: for an `at` outside the journal (saying how many records it has), or a
            `set_result` seq that is not a result record before `at`.
        JournalCorruptError, ExecutionNotFoundError, EncodeError (a value the journal cannot hold),
        InvalidOptionError (an unknown durability).
    """
    durability = check_durability(durability)
    opened = open_store(store)
    read = opened.read(validate_execution_id(execution_id))
    records = read.records
    count = len(records)
    if not 1 <= at <= count:
        raise ValueError(
            f"at={at}: the journal has {count} records (seq 0 to {count - 1}); "
            f"at=N keeps the first N, so N is 1 to {count}"
        )
    copies = [{k: v for k, v in r.items() if k != "crc"} for r in records[1:at]]
    replaced = None
    if set_result is not None:
        seq, value = set_result
        if seq >= count:
            raise ValueError(f"set_result={seq}: the journal has {count} records (seq 0 to {count - 1})")
        if seq >= at:
            raise ValueError(f"set_result={seq}: at={at} keeps only records 0 to {at - 1}")
        if seq == 0:
            raise ValueError("set_result=0: record 0 is the header, not a result")
        target = copies[seq - 1]
        if target["kind"] not in _RESULT_KINDS:
            raise ValueError(
                f"set_result={seq}: record {seq} is {target['kind']}, not a result "
                "(task_completed or value_recorded)"
            )
        target["value"] = encode(value, f"set_result={seq}")
        line = encode_line(target, 0)
        if len(line) > _journal.MAX_RECORD_BYTES:
            raise ValueError(f"set_result={seq}: the record would be {len(line)} bytes, over the limit")
        replaced = seq
    source = records[0]
    fork_id = validate_execution_id(new_id or uuid.uuid4().hex)
    header: dict[str, Any] = {
        "seq": 0,
        "kind": "header",
        "format": FORMAT_VERSION,
        "execution_id": fork_id,
        "workflow": source.get("workflow", ""),
        "code": source.get("code") or {},
        "input": source.get("input"),
        "created": iso(SystemClock().now()),
        "forked_from": {"execution_id": execution_id, "seq": at},
    }
    lease = opened.create(fork_id, header, durability)
    try:
        for record in copies:
            lease.writer.append(record)
        if lease.writer.is_async:
            run_sync(lease.writer.flush())
        else:
            lease.writer.sync()
    finally:
        lease.close()
    return ForkResult(execution_id, fork_id, opened.describe(fork_id), at, len(copies), replaced)


def continue_fork(
    execution_id: str,
    *,
    store: Any = None,
    file: str | None = None,
    module: str | None = None,
    input: Any = None,
    has_input: bool = False,
    durability: str | None = None,
) -> ExecutionContext[Any]:
    """Runs a forked execution on from where its records end: until it finishes, fails, or
    reaches a pause (which `input` answers when `has_input`)."""

    async def go() -> ExecutionContext[Any]:
        client = Client(store, durability=durability)
        if has_input:
            handle = await client.resume(execution_id, input, file=file, module=module)
        else:
            handle = await client.continue_(execution_id, file=file, module=module)
        return await handle.result()

    return run_sync(go())
